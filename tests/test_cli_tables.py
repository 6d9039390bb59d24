"""The plain table writer of the command line (``cli.report.plain_grid``, used for tables of 500
rows or more written to a file or a pipe) against rich itself, the reference it imitates: the very
characters rich prints for the same table on a console as wide as the table, without colour."""
from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from lcnrun.cli.report import plain_grid, plain_table


def rich_text(title, headers, right, rows) -> str:
    table = Table(title=title, title_justify="left")
    for h, r in zip(headers, right):
        table.add_column(h, justify="right" if r else "left")
    for row in rows:
        table.add_row(*row)
    out = io.StringIO()
    Console(file=out, width=100_000, color_system=None, highlight=False).print(table, crop=False)
    return out.getvalue()


ASCII = [(str(i), f"{i * 7919 % 100000:06x}ab12cd", "pending" if i % 3 else "completed",
          f"init.seed={i} dynamics.lr={0.001 * (i % 7 + 1):g}") for i in range(40)]
WIDE = [("1", "éèê", "完成", "model.strides=[2, 2, 1]"), ("22", "x", "ok", "data.noise=0.1 ✓")]


@pytest.mark.parametrize("rows", [ASCII, WIDE, ASCII[:1]], ids=["ascii", "wide-characters", "one-row"])
def test_plain_grid_writes_what_rich_prints(rows):
    headers, right = ["index", "run id", "state", "overrides"], [True, False, False, False]
    title = "sweep-demo: 40 points -> results/sweep-demo"
    assert plain_grid(title, headers, right, rows) == rich_text(title, headers, right, rows)


def test_plain_table_of_a_rich_table_is_rich_output():
    table = Table(title="t", title_justify="left")
    table.add_column("a", justify="right")
    table.add_column("b")
    for row in ASCII[:5]:
        table.add_row(row[0], row[3])
    out = io.StringIO()
    Console(file=out, width=100_000, color_system=None, highlight=False).print(table, crop=False)
    assert plain_table(table) == out.getvalue()


@pytest.mark.parametrize("title", ["a title far wider than the table itself",
                                   "sweep: 100000 points -> /tmp/lcnrun-bench-cli-x1y2z3/results-dry/bench-cli",
                                   "/a/path/without/any/space/that/is/much/longer/than/the/table/is/wide"])
def test_a_title_wider_than_the_table_is_wrapped_as_rich_wraps_it(title):
    rows = ASCII[:3]
    headers, right = ["index", "run id"], [True, False]
    rows = [r[:2] for r in rows]
    assert plain_grid(title, headers, right, rows) == rich_text(title, headers, right, rows)


def test_plain_grid_declines_what_it_cannot_draw():
    assert plain_grid(None, ["a"], [False], [("two\nlines",)]) is None
