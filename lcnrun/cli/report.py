"""``lcnrun status DIR``, ``lcnrun summary DIR`` and ``lcnrun diff A B``: render what
:mod:`lcnrun.report` computes."""
from __future__ import annotations

import csv
import functools
import io
import json
import math
import sys
from pathlib import Path
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, List, Optional

import typer

from ..report.tolerance import DEFAULT_ATOL, DEFAULT_RTOL
from .app import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, STATE_STYLE, ResultsOption, app, console, err_console,
                  escape, handle_errors, is_terminal)

if TYPE_CHECKING:  # the report layer and rich are imported by the verbs that use them (start-up)
    from rich.table import Table

    from ..report.diff import DiffReport
    from ..report.summary import SummaryTable


def _is_report_error(err: BaseException) -> bool:
    """A :class:`~lcnrun.report.source.SourceError` or :class:`~lcnrun.report.summary.QueryError`
    (looked up where raised: a verb that never imported the module cannot have raised it)."""
    for module, name in (("lcnrun.report.source", "SourceError"), ("lcnrun.report.summary", "QueryError")):
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(err, getattr(loaded, name)):
            return True
    return False

def __getattr__(name: str) -> Any:
    """``STATUS_PROBES``: what `lcnrun status` asks about live work beyond the claims (the Slurm
    array tasks), made on first use (the Slurm probe is not imported at start-up)."""
    if name == "STATUS_PROBES":
        from ..schedule.slurm.probe import slurm_states  # noqa: PLC0415
        globals()[name] = [slurm_states]
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def status_probes() -> list:
    """:data:`STATUS_PROBES` (a test may have replaced it)."""
    return sys.modules[__name__].STATUS_PROBES


def report_errors(fn):
    """:class:`SourceError` / :class:`QueryError` -> one message, exit code 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            if not _is_report_error(err):
                raise
            fail_line(str(err), EXIT_USAGE)
    return wrapper


def fail_line(message: str, code: int) -> None:
    """An error message on one line (never wrapped: a log file stays greppable), then exit."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


#: from this many rows on, a table for a file or a pipe is written by :func:`plain_table` (rich
#: lays out 100,000 rows in ~80 s; this writes the same characters in well under a second)
PLAIN_FROM_ROWS = 500


def print_table(table: Table) -> None:
    if is_terminal():
        console.print(table)
    elif table.row_count >= PLAIN_FROM_ROWS and (text := plain_table(table)) is not None:
        sys.stdout.write(text)
    else:  # a file or a pipe: never squeeze a table to 80 columns
        from rich.console import Console  # noqa: PLC0415
        Console(file=sys.stdout, width=100_000, color_system=None, highlight=False).print(table, crop=False)


def plain_table(table: Table) -> str | None:
    """What rich prints for ``table`` without colour on a console as wide as the table (its
    default heavy-head box, a left-justified title, one line per row), or ``None`` when the table
    uses anything else (a footer, another box, a cell of several lines ...), which rich then lays
    out itself."""
    from rich import box  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    if (table.box is not box.HEAVY_HEAD or table.show_footer or not table.show_header or table.caption
            or table.show_edge is False or table.padding != (0, 1, 0, 1) or table.expand
            or (table.title is not None and table.title_justify != "left") or table.show_lines
            or not table.columns):
        return None
    columns, right = [], []
    for col in table.columns:
        cells = [c.plain if isinstance(c, Text) else c for c in [col.header, *col._cells]]
        if not all(isinstance(c, str) for c in cells):
            return None
        if col.justify not in ("left", "right", "default") or col.width or col.min_width or col.max_width:
            return None
        columns.append(cells)
        right.append(col.justify == "right")
    title = table.title.plain if isinstance(table.title, Text) else table.title
    return plain_grid(title, [c[0] for c in columns], right, list(zip(*[c[1:] for c in columns])))


def plain_grid(title: str | None, headers: list[str], right: list[bool], rows: list) -> str | None:
    """:func:`plain_table` of rows of strings (no rich Table built: 100,000 rows in a second);
    ``None`` if a cell or the title has a line break."""
    from rich.cells import cell_len  # noqa: PLC0415

    def width(c: str) -> int:
        return len(c) if c.isascii() else cell_len(c)

    columns = [[h, *col] for h, col in zip(headers, zip(*rows))] if rows else [[h] for h in headers]
    if any("\n" in c for col in columns for c in col) or (title is not None and "\n" in title):
        return None
    ascii_only = all(c.isascii() for col in columns for c in col)
    widths = [max(map(len if ascii_only else width, col)) for col in columns]

    def line(cells, bar: str) -> str:
        if ascii_only:  # one character, one column: str.rjust / ljust pad exactly (100,000 rows)
            out = [" " + (c.rjust(w) if r else c.ljust(w)) + " " for c, w, r in zip(cells, widths, right)]
            return bar + bar.join(out) + bar + "\n"
        out = []
        for c, w, r in zip(cells, widths, right):
            pad = " " * (w - width(c))
            out.append(f" {pad}{c} " if r else f" {c}{pad} ")
        return bar + bar.join(out) + bar + "\n"

    def rule(left: str, mid: str, end: str, fill: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + end + "\n"

    total = sum(widths) + 3 * len(widths) + 1
    parts = []
    if title is not None:
        if width(title) <= total:
            parts.append(title + " " * (total - width(title)) + "\n")
        else:  # rich wraps a title wider than its table to the table's width: let it do that
            from rich.console import Console  # noqa: PLC0415

            out = io.StringIO()
            Console(file=out, width=total, color_system=None, highlight=False).print(title, justify="left")
            parts.append(out.getvalue())
    parts += [rule("┏", "┳", "┓", "━"), line(headers, "┃"), rule("┡", "╇", "┩", "━")]
    parts += [line(r, "│") for r in rows]
    parts.append(rule("└", "┴", "┘", "─"))
    return "".join(parts)


def cell(value: Any, digits: int = 6) -> str:
    """A value for a human: floats with ``digits`` significant digits, lists as compact JSON."""
    from ..report.summary import label  # noqa: PLC0415

    return label(value, digits, missing="")


def exact(value: Any) -> Any:
    """A value for a script (CSV): floats in full precision (``repr``), lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return value


_AS_IS = {float, int, str, type(None)}  # csv writes these as exact() would: repr, str, ""


def csv_rows(table) -> Iterator[tuple]:
    """The CSV cells of ``table``'s rows (:func:`exact` of each value), fast for 100,000 rows: a
    column whose values csv writes as ``exact`` would is passed through as it is."""
    values = [table.column(c) for c in table.columns]
    values = [col if set(map(type, col)) <= _AS_IS else _exact_column(col) for col in values]
    return zip(*values) if values else ([] for _ in table.rows)


def _exact_column(col: list) -> list:
    """``list(map(exact, col))``, each distinct value object made text once: a column of a
    constant list (``model.filters`` of 100,000 rows from the index) is one object repeated."""
    ids = list(map(id, col))  # every value is alive in col: an id names one object here
    text = {k: exact(v) for k, v in dict(zip(ids, col)).items()}
    return list(map(text.__getitem__, ids))


def json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "nan": JSON has neither
    if isinstance(value, list):
        return [json_value(v) for v in value]
    return value


# -- status ----------------------------------------------------------------------------------------
@app.command()
@handle_errors
@report_errors
def status(
    dir: Path = typer.Argument(..., help="experiment folder (results/<name>) or its spec file"),
    results: Path = ResultsOption,
    list_runs: bool = typer.Option(False, "--list", "-l", help="also list every point that is not "
                                   "completed, with its overrides and message"),
    as_json: bool = typer.Option(False, "--json", help="JSON for scripts"),
) -> None:
    """Counts of completed, diverged, failed, stopped, running and pending runs of an experiment."""
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    from ..report.source import open_experiment  # noqa: PLC0415
    from ..report.status import experiment_status, failure_messages, scheduler_states  # noqa: PLC0415

    source = open_experiment(dir, results)
    live, problems = scheduler_states(source, status_probes())
    st = experiment_status(source, scheduler=live)
    counts = st.counts()
    listed = [s for s in st.states if s.state != "completed"] if list_runs or as_json else []
    messages = failure_messages(st, listed) if listed else {}
    if as_json:
        doc = {"experiment": st.label, "runs_dir": str(st.runs_dir), "total": st.total,
               "counts": counts, "orphans": len(st.orphans), "scheduler_problems": problems,
               "not_completed": [{"index": s.index, "run_id": s.run_id, "state": s.state,
                                  "overrides": s.overrides, "message": messages.get(s.run_id, ""),
                                  "holder": s.holder} for s in listed]}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        raise typer.Exit(EXIT_OK)
    console.print(Text(f"{st.label}: {st.total} point{'s' if st.total != 1 else ''}", style="bold"),
                  soft_wrap=True)
    table = Table(show_footer=True)
    table.add_column("state", footer="total")
    table.add_column("runs", justify="right", footer=str(st.total))
    for state, n in counts.items():
        table.add_row(Text(state, style=STATE_STYLE.get(state, "")), str(n))
    print_table(table)
    for problem in problems:
        err_console.print(Text(f"warning: scheduler: {problem}", style="yellow"), soft_wrap=True)
    if st.orphans:
        console.print(f"{len(st.orphans)} run file{'s' if len(st.orphans) != 1 else ''} in "
                      f"{st.runs_dir} are not points of this experiment (an earlier spec or code "
                      "version; `lcnrun summary --all-files` shows them)", highlight=False, soft_wrap=True)
    if list_runs and listed:
        from ..spec import format_overrides  # noqa: PLC0415
        t = Table(title="not completed", title_justify="left")
        for col in ("index", "run id", "state", "overrides", "message"):
            t.add_column(col, justify="right" if col == "index" else "left")
        for s in listed:
            msg = messages.get(s.run_id, "") or (s.holder and f"held by {s.holder}") or ""
            t.add_row(cell(s.index), s.run_id, Text(s.state, style=STATE_STYLE.get(s.state, "")),
                      Text(format_overrides(s.overrides)), Text(msg))
        print_table(t)


# -- summary ---------------------------------------------------------------------------------------
def _split(values: Optional[List[str]]) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@app.command()
@handle_errors
@report_errors
def summary(
    dir: Path = typer.Argument(..., help="experiment folder (results/<name>) or its spec file"),
    results: Path = ResultsOption,
    sort: Optional[List[str]] = typer.Option(None, "--sort", "-s", help="sort by KEY (repeat or "
                                             "comma-separate for several)"),
    reverse: bool = typer.Option(False, "--reverse", "-r", help="sort in descending order"),
    filters: Optional[List[str]] = typer.Option(None, "--filter", "-f", help="keep rows where "
                                                "KEY==VALUE (also !=, <, <=, >, >=; VALUE is YAML, "
                                                "e.g. 'model.strides==[2,2,1]'); repeat: all must hold"),
    group_by: Optional[List[str]] = typer.Option(None, "--group-by", "-g", help="one row per value "
                                                 "of KEY(s): mean, std, min, max, count of the "
                                                 "figures (e.g. over init.seed)"),
    columns: Optional[List[str]] = typer.Option(None, "--columns", "-c", help="columns to show "
                                                "(comma-separated); +KEY adds to the defaults; "
                                                "'all' shows every key"),
    all_files: bool = typer.Option(False, "--all-files", help="also runs that are not points of "
                                   "the experiment's current spec"),
    as_csv: bool = typer.Option(False, "--csv", help="CSV (floats in full precision)"),
    as_md: bool = typer.Option(False, "--md", help="a Markdown table"),
    as_json: bool = typer.Option(False, "--json", help="JSON: a list of rows"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="processes reading run files "
                                       "[default: all cores from 2000 files on]", show_default=False),
) -> None:
    """A table with one row per run: the spec values that vary, status and final figures."""
    if sum([as_csv, as_md, as_json]) > 1:
        fail_line("give at most one of --csv, --md, --json", EXIT_USAGE)
    from ..report.source import open_experiment  # noqa: PLC0415
    from ..report.summary import summary_table  # noqa: PLC0415

    source = open_experiment(dir, results)
    table = summary_table(source, filters=filters or [], sort=_split(sort), reverse=reverse,
                          group_by=_split(group_by), columns=_split(columns) or None,
                          all_files=all_files, processes=jobs)
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(table.columns)
        writer.writerows(csv_rows(table))
    elif as_json:
        sys.stdout.write(json.dumps([{c: json_value(row.get(c)) for c in table.columns}
                                     for row in table.rows], indent=1) + "\n")
    elif as_md:
        sys.stdout.write(_markdown(table))
    else:
        _rich_summary(source.label, table)


def _markdown(table: SummaryTable) -> str:
    """A Markdown table; groups show ``mean ± std`` and ``min … max`` per figure (as on a terminal)."""
    def esc(text: str) -> str:
        return text.replace("|", "\\|")
    header, cells = _display(table)
    right = [all(_is_numberlike(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(esc(h.replace("\n", " ")) for h in header) + " |",
             "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def _is_numberlike(text: str) -> bool:
    try:
        float(text.split()[0]) if text else None
    except ValueError:
        return False
    return True


def _display(table: SummaryTable) -> tuple[list[str], list[list[str]]]:
    """Column headers and cell texts for people (rich and Markdown)."""
    if not table.grouped:
        return list(table.columns), [[cell(row.get(c)) for c in table.columns] for row in table.rows]
    keys = [*table.group_by, "runs", "completed"]
    header = keys + [h for f in table.figures for h in (f"{f}\nmean ± std", "min … max")]
    cells = []
    for row in table.rows:
        out = [cell(row.get(c)) for c in keys]
        for f in table.figures:
            mean, std, count = row.get(f"{f}.mean"), row.get(f"{f}.std"), row.get(f"{f}.count")
            text = "" if mean is None else cell(mean, 4) + (f" ± {cell(std, 2)}" if std is not None else "")
            if mean is not None and count != row["runs"]:
                text += f" (n={count})"
            lo, hi = row.get(f"{f}.min"), row.get(f"{f}.max")
            out += [text, "" if lo is None else f"{cell(lo, 4)} … {cell(hi, 4)}"]
        cells.append(out)
    return header, cells


def _numeric_column(table: SummaryTable, column: str) -> bool:
    values = [r.get(column) for r in table.rows if r.get(column) is not None]
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _rich_summary(label: str, table: SummaryTable) -> None:
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    n = len(table.rows)
    title = f"{label}: {n} {'group' if table.grouped else 'run'}{'s' if n != 1 else ''}"
    t = Table(title=title, title_justify="left")
    header, cells = _display(table)
    for i, h in enumerate(header):
        t.add_column(h, justify="right" if cells and all(_is_numberlike(r[i]) for r in cells) else "left")
    status_at = header.index("status") if "status" in header and not table.grouped else None
    for row in cells:
        t.add_row(*[Text(c, style=STATE_STYLE.get(c, "") if i == status_at else "")
                    for i, c in enumerate(row)])
    print_table(t)
    if table.constant and not table.grouped:
        shown = {k: v for k, v in table.constant.items() if k != "description" and v is not None}
        text = ", ".join(f"{k}={cell(v)}" for k, v in shown.items())
        console.print(Text(f"the same in every run: {text}", style="dim"), soft_wrap=True)
    for note in table.notes:
        console.print(Text(note, style="dim"), soft_wrap=True)


# -- diff ------------------------------------------------------------------------------------------
@app.command()
@handle_errors
@report_errors
def diff(
    a: Path = typer.Argument(..., help="a run file, or an experiment (folder or spec file)"),
    b: Path = typer.Argument(..., help="the same kind of thing as A"),
    rtol: float = typer.Option(DEFAULT_RTOL, "--rtol", help="relative tolerance"),
    atol: float = typer.Option(DEFAULT_ATOL, "--atol", help="absolute tolerance"),
    show_all: bool = typer.Option(False, "--all", help="show equal items and runs too"),
    as_json: bool = typer.Option(False, "--json", help="JSON for scripts"),
    ignore: Optional[List[str]] = typer.Option(None, "--ignore", help="items to leave out of the "
                                               "verdict, glob patterns on their names, e.g. "
                                               "'trajectory/params/*' (repeatable)"),
    results: Path = ResultsOption,
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="processes comparing run pairs "
                                       "[default: all cores from 400 pairs on]", show_default=False),
) -> None:
    """Compare two runs or two experiments within tolerances; show only what differs.

    Exit code 0 when equal within --rtol/--atol, 1 when not, 2 on bad input. Two numbers are equal
    when |a - b| <= atol + rtol * max(|a|, |b|).
    """
    from ..report.diff import diff_paths  # noqa: PLC0415

    report = diff_paths(a, b, rtol=rtol, atol=atol, results=results, processes=jobs,
                        ignore=_split(ignore))
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(all_items=show_all), indent=1, default=str) + "\n")
    else:
        _rich_diff(report, show_all)
    if report.unreadable:  # 1 means "different": a file that cannot be read is bad input
        first = report.unreadable[0].error
        more = len(report.unreadable) - 1
        fail_line(first + (f" (and {more} more pairs that could not be compared)" if more else ""),
                  EXIT_USAGE)
    raise typer.Exit(EXIT_OK if report.equal else EXIT_FAILED)


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _rich_diff(report: DiffReport, show_all: bool) -> None:
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    runs_mode = report.mode == "runs"
    console.print(Text(f"A: {report.a}\nB: {report.b}"), soft_wrap=True)
    if runs_mode and report.pairs:
        p = report.pairs[0]
        for side, prov in (("A", p.provenance_a), ("B", p.provenance_b)):
            commit = (prov.get("git_commit") or "unknown")[:10] + ("+dirty" if prov.get("git_dirty") else "")
            console.print(Text(f"{side}: run {p.run_id_a if side == 'A' else p.run_id_b}, lcnrun "
                               f"{prov.get('lcnrun_version')}, git {commit}", style="dim"), soft_wrap=True)
    t = Table(title_justify="left")
    if not runs_mode:
        t.add_column("run")
    for col in ("item", "A", "B", "max abs", "max rel", "note"):
        t.add_column(col, justify="right" if col.startswith("max") else "left")
    rows = 0
    for p in report.pairs:
        items = p.items if show_all else p.differing()
        if p.error:
            items = []
        if not items and not p.error and not show_all:
            continue
        label = p.run_id_a if p.run_id_a == p.run_id_b else f"{p.run_id_a} / {p.run_id_b}"
        if p.index_a is not None:
            label = f"#{p.index_a} {label}"
        if p.paired_by not in ("run id", "files"):
            label += f" (by {p.paired_by})"
        first = True
        if p.error:
            cells = ([label] if not runs_mode else []) + ["(unreadable)", "", "", "", "", p.error]
            t.add_row(*[Text(c) for c in cells], style="red")
            rows += 1
        for item in items:
            style = "" if item.equal else "red" if item.counts else "dim"
            note = item.note + ("" if item.counts else (" (ignored)" if item.note else "(ignored)"))
            cells = ([label if first else ""] if not runs_mode else []) + [
                item.key, cell(item.a, 10), cell(item.b, 10), _num(item.max_abs), _num(item.max_rel), note]
            t.add_row(*[Text(c) for c in cells], style=style)
            first = False
            rows += 1
    if rows:
        print_table(t)
    for side, ids in (("A", report.only_a), ("B", report.only_b)):
        if ids:
            shown = ", ".join(ids[:10]) + (f" ... ({len(ids) - 10} more)" if len(ids) > 10 else "")
            console.print(Text(f"only in {side} ({len(ids)} run{'s' if len(ids) != 1 else ''}): {shown}",
                               style="red"), soft_wrap=True)
    for note in report.notes:
        console.print(Text(note, style="dim"), soft_wrap=True)
    n = len(report.pairs)
    what = "the two runs" if runs_mode else f"{n} pair{'s' if n != 1 else ''} of runs"
    tol = f"rtol={report.rtol:g}, atol={report.atol:g}"
    if report.bitwise:
        console.print(Text(f"identical: {what} bitwise identical", style="bold green"), soft_wrap=True)
    elif report.equal:
        nb = sum(1 for p in report.pairs if not p.bitwise)
        extra = "" if runs_mode else f" ({nb} not bitwise identical)"
        console.print(Text(f"equal within {tol}: {what}{extra}", style="bold green"), soft_wrap=True)
    else:
        differing = sum(1 for p in report.pairs if not p.equal)
        keys = report.differing_keys()
        shown = ", ".join(keys[:12]) + (" ..." if len(keys) > 12 else "")
        parts = [f"{differing} of {n} pairs differ" if not runs_mode else "the two runs differ"]
        if report.only_a or report.only_b:
            parts.append(f"{len(report.only_a)} runs only in A, {len(report.only_b)} only in B")
        console.print(Text(f"DIFFERENT (within {tol}): " + "; ".join(parts)
                           + (f"; differing: {shown}" if keys else ""), style="bold red"), soft_wrap=True)
