"""``lcnrun summary``: one row per run, the spec values that vary, the status and final figures.

A row holds every key a query may use: the run's resolved spec flattened to dotted keys
(``model.strides``, ``dynamics.lr``), ``index`` (its sweep point, from the spec or the manifest),
``run_id``, ``status``, ``message``, the final figures (``final.loss``, ``final.grad_norm``,
``final.t``, ``final.invariant_drift``, ``final.nfev`` ...) and the diagnostics' scalars
(``diagnostics.<name>.<key>``). The default columns are ``index``, ``run_id``, the spec keys whose
values are not the same in every run of the experiment (before filtering, so that the columns do
not change with the filters), ``status``, the four final figures and every diagnostic scalar.

Queries (:func:`summarize`):

- filters ``KEY OP VALUE`` with ``OP`` one of ``== != < <= > >=`` (``=`` means ``==``) and
  ``VALUE`` read as YAML (``[2, 2, 1]`` is a list, ``1e-3`` a float, ``null`` nothing); several
  filters must all hold; a row without the key has the value ``null``;
- sort keys (a row without the key sorts last);
- ``group_by`` keys: one row per group with ``runs`` (its number of runs), ``completed`` and, for
  each numeric figure, ``<figure>.mean``, ``.std`` (sample standard deviation, ``n - 1``),
  ``.min``, ``.max`` and ``.count``, over the *finite* values of the group (so a diverged run's
  infinite loss is counted out; ``count`` says how many were used). Filter first
  (``status==completed``) to restrict the statistics to some runs.

Reading uses :func:`lcnrun.report.source.scan_rows` (the run index beside the run files, else
each file opened once: attributes, spec and a few small series, never the other arrays); the
default table of an experiment whose index answers for every file is made from the index's
columns (:func:`lcnrun.store.index.scan_columns`), the same table (tested).
"""
from __future__ import annotations

import difflib
import functools
import itertools
import json
import math
import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..store.index import bulk, index_dir, scan_columns
from .source import FILE_ATTRS, ExperimentSource, flat_row, scan_rows, scan_runs

FIGURES = ("final.loss", "final.grad_norm", "final.t", "final.invariant_drift")
STATS = ("mean", "std", "min", "max", "count")
_FILTER_RE = re.compile(r"^\s*(?P<key>[^=!<>\s]+)\s*(?P<op>==|!=|<=|>=|=|<|>)\s*(?P<value>.*?)\s*$")
_MISSING = object()


class QueryError(ValueError):
    """A filter, sort, column or group key that cannot be used (exit code 2 in the CLI)."""


# -- rows ------------------------------------------------------------------------------------------
@dataclass
class Runs:
    """Rows of an experiment's runs and what a report says about them."""

    rows: list[dict[str, Any]]
    spec_keys: list[str]  # every flattened spec key seen, in first-seen order
    key_order: list[str]  # the sweep's keys in the order written (columns come in this order)
    pending: int = 0      # points without a run file
    orphans: int = 0      # run files that are no point of the experiment (left out)
    series: dict[str, tuple] = field(default_factory=dict)  # run id -> (names looked for, series)
    paths: dict[str, str] = field(default_factory=dict)    # run id -> its file

    @functools.cached_property
    def row_keys(self) -> set[str]:
        """Every key of any row (made once: 100,000 rows)."""
        return _row_keys(self.rows)


def load_runs(source: ExperimentSource, *, all_files: bool = False,
              processes: int | None = None, series: Sequence[str] | None = None) -> Runs:
    """Read the run files of ``source``: those of its points (every file with ``all_files``, or
    when it has no points). ``series``: trajectory series to read in the same open of each file
    that has to be opened (``Runs.series``; see :func:`lcnrun.report.source.scan_runs`)."""
    return _load_runs(source, _point_files(source, all_files), all_files, processes, series)


@dataclass
class _PointFiles:
    """The run files a table of ``source`` reads, listed once: ``listing`` (``{run_id: (path,
    stat)}``, only its points' unless ``all_files``), ``index_of`` (run id -> sweep index),
    ``orphans`` (files of no point) and ``pending`` (points without a file)."""

    listing: dict[str, tuple]
    index_of: dict[str, int]
    orphans: int
    pending: int


def _point_files(source: ExperimentSource, all_files: bool = False) -> _PointFiles:
    listing = source.run_file_stats()
    index_of = source.index_of
    orphans = 0
    if source.points is not None:
        orphans = len(listing.keys() - index_of.keys())
        if orphans and not all_files:
            listing = {rid: v for rid, v in listing.items() if rid in index_of}
    pending = 0 if source.points is None else sum(1 for p in source.points if p.run_id not in listing)
    return _PointFiles(listing, index_of, orphans, pending)


def _load_runs(source: ExperimentSource, pf: _PointFiles, all_files: bool, processes: int | None,
               series: Sequence[str] | None) -> Runs:
    listing, index_of, orphans, pending = pf.listing, pf.index_of, pf.orphans, pf.pending
    files = {rid: path for rid, (path, _) in listing.items()}
    with bulk():
        if series is None:  # a table: the rows straight from the run index's columns
            made = scan_rows(source.runs_dir, files, processes=processes, listing=listing)
            extra: dict[str, tuple] = {}
        else:
            infos = scan_runs(source.runs_dir, files, processes=processes, series=series,
                              listing=listing)
            made = [(flat_row(info), tuple(info.spec)) for info in infos]
            extra = {info.run_id: (info.series_keys, info.series) for info in infos
                     if info.series is not None}
        return _runs_of(source, made, index_of, files, pending,
                        0 if all_files else orphans, extra)


def _runs_of(source, made, index_of, files, pending, orphans, extra) -> Runs:
    rows, spec_keys, seen = [], {}, set()
    index = index_of.get
    for row, keys in made:
        if keys not in seen:  # runs of a sweep share their keys: look at each set once
            seen.add(keys)
            spec_keys.update(dict.fromkeys(keys))
        row["index"] = index(row["run_id"])
        rows.append(row)
    rows.sort(key=_row_order)
    return Runs(rows, list(spec_keys), _key_order(source), pending, orphans, extra, files)


def _row_order(r: dict) -> tuple:
    return (r["index"] is None, r["index"] if r["index"] is not None else 0, r["run_id"])


def label(value: Any, digits: int = 4, missing: str = "none") -> str:
    """A key's value as a legend, tick or cell label: floats to ``digits`` significant digits,
    lists as compact JSON, ``None`` as ``missing``."""
    if value is None:
        return missing
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# -- filters and sorting ---------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """A filter's value, read as YAML the way specs are (``1e-3`` is a float)."""
    from ..spec.yamlio import SpecLoader  # noqa: PLC0415  (the spec layer pulls in the core)

    try:
        return yaml.load(text, Loader=SpecLoader) if text.strip() else None
    except yaml.YAMLError:
        return text


@dataclass(frozen=True)
class Filter:
    key: str
    op: str
    value: Any
    text: str

    def matches(self, row: dict[str, Any]) -> bool:
        a = row.get(self.key)
        b = self.value
        if self.op == "==":
            return _equal(a, b)
        if self.op == "!=":
            return not _equal(a, b)
        if a is None or b is None:
            return False
        try:
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[self.op]
        except TypeError:
            raise QueryError(f"--filter {self.text!r}: cannot order {self.key} = {_show(a)} and "
                             f"{_show(b)}") from None


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, str) != isinstance(b, str):
        return False
    return a == b


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def parse_filter(text: str) -> Filter:
    """``'model.strides==[2,2,1]'`` -> :class:`Filter`; raises :class:`QueryError`."""
    m = _FILTER_RE.match(text)
    if m is None:
        raise QueryError(f"--filter {text!r}: expected KEY==VALUE (or !=, <, <=, >, >=), e.g. "
                         "'model.strides==[2,2,1]' or 'final.loss<1e-3'")
    op = "==" if m["op"] == "=" else m["op"]
    return Filter(m["key"], op, parse_value(m["value"]), text)


def _sort_key(value: Any) -> tuple:
    if isinstance(value, bool):
        return (0, float(value), "")
    if isinstance(value, (int, float)):
        return (0, float(value) if not math.isnan(value) else math.inf, "")
    if isinstance(value, str):
        return (1, 0.0, value)
    return (2, 0.0, json.dumps(value, sort_keys=True, default=str))


def sort_rows(rows: list[dict], keys: Sequence[str], reverse: bool = False) -> list[dict]:
    """Stable sort by ``keys`` (first key first); missing values last, also with ``reverse``."""
    out = list(rows)
    for key in reversed(keys):
        present = [r for r in out if r.get(key) is not None]
        absent = [r for r in out if r.get(key) is None]
        present.sort(key=lambda r: _sort_key(r[key]), reverse=reverse)
        out = present + absent
    return out


def _check_keys(keys: Iterable[str], known: Iterable[str], what: str) -> None:
    known = list(dict.fromkeys(known))
    for key in keys:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise QueryError(f"{what}: no run has a key {key!r}{hint}")


# -- the table -------------------------------------------------------------------------------------
class SummaryTable:
    """``columns`` and ``rows`` (dicts by column) to render; ``varying``: the spec columns;
    ``constant``: spec keys with one value in every row; ``grouped``: rows are groups;
    ``group_by``: their keys; ``figures``: the result columns; ``notes``: what the table leaves
    out.

    ``cells`` (instead of ``rows``): the values column by column (``cells[j][i]`` is row ``i``'s
    value of ``columns[j]``); the row dicts are then made when first asked for, so that a CSV of
    100,000 rows (:meth:`column`) never needs them."""

    _FIELDS = ("columns", "rows", "varying", "constant", "grouped", "group_by", "figures", "notes")

    def __init__(self, columns: Sequence[str], rows: list[dict[str, Any]] | None = None,
                 varying: Sequence[str] = (), constant: dict[str, Any] | None = None,
                 grouped: bool = False, group_by: Sequence[str] = (), figures: Sequence[str] = (),
                 notes: Sequence[str] = (), *, cells: list[list] | None = None) -> None:
        if (rows is None) == (cells is None):
            raise TypeError("SummaryTable: give rows or cells, not both")
        self.columns = list(columns)
        self._rows, self._cells = rows, cells
        self.varying, self.constant = list(varying), dict(constant or {})
        self.grouped, self.group_by = grouped, list(group_by)
        self.figures, self.notes = list(figures), list(notes)

    @property
    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            self._rows = [dict(zip(self.columns, vals)) for vals in zip(*self._cells)]
        return self._rows

    @rows.setter
    def rows(self, rows: list[dict[str, Any]]) -> None:
        self._rows, self._cells = rows, None

    def column(self, name: str) -> list:
        """The values of column ``name``, row by row (``None`` where a row has none)."""
        if self._cells is not None and name in self.columns:
            return self._cells[self.columns.index(name)]
        return column_values(self.rows, name)

    def __repr__(self) -> str:
        return f"SummaryTable({', '.join(f'{k}={getattr(self, k)!r}' for k in self._FIELDS)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SummaryTable):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self._FIELDS)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _canon_of_scalars():
    """:func:`_canon`, remembered for strings, ints and bools (by type and value: ``1``,
    ``1.0`` and ``True`` stay apart; floats are not remembered, ``0.0 == -0.0``). A group's key
    is the tuple of its values' canons: the same groups as the canon of the list of them (a
    list's JSON is its items' JSON joined)."""
    memo: dict[tuple, str] = {}

    def canon(value: Any) -> str:
        if type(value) not in (str, int, bool):
            return _canon(value)
        key = (type(value), value)
        text = memo.get(key)
        if text is None:
            text = memo[key] = _canon(value)
        return text
    return canon


def varying_keys(rows: list[dict], spec_keys: Sequence[str], order: Sequence[str] = ()) -> list[str]:
    """Spec keys whose value is not the same in every row, the sweep's keys first in their order."""
    if not rows:
        return []
    out = []
    for key in spec_keys:
        first = rows[0].get(key, _MISSING)
        # any(r.get(key) != first for r in rows), at C speed: 100,000 rows x 30 keys
        if any(map(operator.ne, map(dict.get, rows, itertools.repeat(key), itertools.repeat(_MISSING)),
                   itertools.repeat(first))):
            out.append(key)

    return _ranked(out, order)


def _ranked(keys: list[str], order: Sequence[str]) -> list[str]:
    """``keys`` sorted: those of the sweep (``order``: its keys as written; a key inside one or
    around one counts as it) first, in that order, then by name."""
    def rank(key: str) -> tuple:
        for i, o in enumerate(order):
            if key == o or key.startswith(o + ".") or o.startswith(key + "."):
                return (i, key)
        return (len(order), key)
    return sorted(keys, key=rank)


def _key_order(source: ExperimentSource) -> list[str]:
    """The sweep's keys in the order its points set them."""
    key_order: dict[str, None] = {}
    for p in source.points or ():
        for k in p.overrides:
            key_order.setdefault(k, None)
    return list(key_order)


def _notes(pending: int, orphans: int) -> list[str]:
    notes = []
    if pending:
        notes.append(f"{pending} point{'s' if pending != 1 else ''} without a run file yet (pending)")
    if orphans:
        notes.append(f"{orphans} run file{'s' if orphans != 1 else ''} not in the experiment's "
                     "sweep left out (--all-files shows them)")
    return notes


def _figures(cols: Sequence[str]) -> list[str]:
    return [c for c in cols if c in FIGURES or c.startswith("final.") or c.startswith("diagnostics.")]


def _row_keys(rows: list[dict]) -> set[str]:
    """Every key of any row (``set().union`` walks the dicts in C)."""
    return set().union(*rows) if rows else set()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, str)


def default_columns(rows: list[dict], varying: list[str], keys: set[str] | None = None) -> list[str]:
    """``index`` (if any row has one), ``run_id``, the ``varying`` spec keys, ``status``, the
    figures and every diagnostic scalar of ``rows`` (``keys``: :func:`_row_keys` of them, if known)."""
    diag = sorted(k for k in (_row_keys(rows) if keys is None else keys) if k.startswith("diagnostics."))
    head = ["index"] if any(r.get("index") is not None for r in rows) else []
    return head + ["run_id", *varying, "status", *FIGURES, *diag]


def known_keys(runs: Runs) -> list[str]:
    """Every key a query may name: the fixed ones, the spec keys, and every key of a row."""
    return ["index", "run_id", "status", "message", *runs.spec_keys, *sorted(runs.row_keys)]


def select_rows(runs: Runs, filters: Sequence[str] = (),
                known: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The rows of ``runs`` for which every filter (texts, see :func:`parse_filter`) holds, in
    order; raises :class:`QueryError` for a bad filter or a key not in ``known`` (default
    :func:`known_keys`)."""
    parsed = [parse_filter(f) for f in filters]
    if parsed:
        _check_keys([f.key for f in parsed], known if known is not None else known_keys(runs),
                    "--filter")
    rows = runs.rows
    for f in parsed:
        rows = [r for r in rows if f.matches(r)]
    return rows


def summary_table(source: ExperimentSource, *, filters: Sequence[str] = (),
                  sort: Sequence[str] = (), reverse: bool = False, group_by: Sequence[str] = (),
                  columns: Sequence[str] | None = None, all_files: bool = False,
                  processes: int | None = None) -> SummaryTable:
    """The table ``lcnrun summary`` renders and ``lcnrun.open(...).summary()`` returns as a
    DataFrame (:func:`to_frame`): :func:`load_runs` then :func:`summarize` (or the same table
    made from the run index's columns, :func:`_table_from_columns`)."""
    pf = _point_files(source, all_files)
    if not all_files:
        table = _table_from_columns(source, filters, sort, reverse, group_by, columns, pf)
        if table is not None:
            return table
    runs = _load_runs(source, pf, all_files, processes, None)
    with bulk():  # 100,000 rows: no garbage collector walking them (see store.index.bulk)
        return summarize(runs, filters=filters, sort=sort, reverse=reverse, group_by=group_by,
                         columns=columns)


#: the row keys a summary sets itself (never a spec key's value)
_ROW_OWN = ("index", "run_id", "status", "message")


def _table_from_columns(source: ExperimentSource, filters: Sequence[str] = (),
                        sort: Sequence[str] = (), reverse: bool = False,
                        group_by: Sequence[str] = (), columns: Sequence[str] | None = None,
                        pf: _PointFiles | None = None) -> SummaryTable | None:
    """The table of :func:`summarize` (any query) for an experiment whose run index answers for
    every run file of its points from its columns (:func:`lcnrun.store.index.scan_columns`),
    made column by column: 100,000 runs without a dict of all keys per run, and without comparing
    30 constant keys row by row. Filters, sorts and groups see a row of just their keys, through
    the same :class:`Filter`, sort order (:func:`_sorted_positions`) and :func:`_grouped`.
    ``None`` when the columns do not answer (then rows are made as always). ``pf``:
    :func:`_point_files` of ``source``, if known."""
    if source.points is None or index_dir(source.runs_dir) is None:
        return None
    pf = pf or _point_files(source)
    listing, index_of = pf.listing, pf.index_of
    with bulk():
        view = scan_columns(source.runs_dir, listing=listing, drop_attrs=FILE_ATTRS,
                            reserved=_ROW_OWN)
        if view is None:
            return None
        index = [index_of[rid] for rid in view.ids]
        order = sorted(range(len(index)), key=index.__getitem__)  # rows by sweep index
        spec_keys = list(view.spec)
        # a row's value: the attribute's where a spec key is named like one (as in flat_row)
        named = {**view.spec, **view.attrs, "index": index, "run_id": view.ids, "status": view.status}
        keys = {*spec_keys, *view.attrs, "index", "run_id", "status"}
        known = ["index", "run_id", "status", "message", *spec_keys, *sorted(keys)]
        chosen = _chosen(named, order, filters, known)
        varying = _ranked([k for k in spec_keys if (k in view.attrs or k not in view.constant)
                           and any(map(operator.ne, named[k], itertools.repeat(named[k][0])))],
                          _key_order(source))
        first = order[0]
        constant = {k: named[k][first] for k in spec_keys if k not in varying}
        shown = {*spec_keys, "index", "run_id", "status",
                 *(a for a in view.attrs if a not in view.present
                   or any(map(view.present[a].__getitem__, chosen)))} if chosen else set()
        cols = default_columns([{"index": index[chosen[0]]}] if chosen else [], varying, shown)
        _check_keys(group_by, known, "--group-by")
        cols = _asked_columns(cols, columns, spec_keys, shown, known)
        notes = _notes(pf.pending, pf.orphans)
        if group_by:
            need = list(dict.fromkeys([*group_by, "status", *cols]))
            rows = [dict(zip(need, vals)) for vals in zip(*(_gather(named.get(k), chosen) for k in need))]
            return _group_table(rows, list(group_by), cols, set(spec_keys), varying, constant,
                                notes, sort, reverse)
        _check_keys(sort, known, "--sort")
        if sort:
            chosen = _sorted_positions(named, chosen, sort, reverse)
        return SummaryTable(cols, varying=varying, constant=constant, notes=notes,
                            figures=_figures(cols), cells=[_gather(named.get(c), chosen) for c in cols])


def _gather(column: list | None, at: list[int]) -> list:
    """``[column[i] for i in at]`` at C speed (``None`` for each when there is no column)."""
    if column is None:
        return [None] * len(at)
    if len(at) < 2:
        return [column[i] for i in at]
    return list(operator.itemgetter(*at)(column))


def _sorted_positions(named: dict[str, list], at: list[int], keys: Sequence[str],
                      reverse: bool = False) -> list[int]:
    """The positions ``at`` in the order :func:`sort_rows` puts their rows (whose values are
    ``named[key][i]``; no column: no row has the key): stably by each key, last key first,
    values by :func:`_sort_key`, rows without the key last. Numbers only (no bool) are sorted
    as floats, which is :func:`_sort_key`'s order of them, on Python's float fast path."""
    out = list(at)
    for key in reversed(keys):
        column = named.get(key)
        if column is None:
            continue  # every row lacks it: all last, in the order they were
        values = _gather(column, out)
        present = [j for j, v in enumerate(values) if v is not None]
        got = _gather(values, present)
        if set(map(type, got)) <= {float, int}:
            ranked = [math.inf if v != v else float(v) for v in got]  # nan as _sort_key has it
        else:
            ranked = list(map(_sort_key, got))
        by = sorted(range(len(got)), key=ranked.__getitem__, reverse=reverse)
        out = _gather(out, _gather(present, by)) + [out[j] for j, v in enumerate(values) if v is None]
    return out


def _chosen(named: dict[str, list], order: list[int], filters: Sequence[str],
            known: Sequence[str]) -> list[int]:
    """The positions (in ``order``) of the rows that pass every filter (texts), as
    :func:`select_rows` decides on the whole rows: each filter sees the row's value of its key."""
    parsed = [parse_filter(f) for f in filters]
    if parsed:
        _check_keys([f.key for f in parsed], known, "--filter")
    chosen = order
    for f in parsed:
        column = named.get(f.key)
        chosen = [i for i in chosen if f.matches({} if column is None else {f.key: column[i]})]
    return chosen


def to_frame(table: SummaryTable):
    """``table`` as a ``pandas.DataFrame``: its columns in order, one row per table row, each
    value as the table holds it (the values ``lcnrun summary --csv`` prints: floats exactly, lists
    as lists; a missing value is ``NaN`` in a numeric column, ``None`` elsewhere)."""
    import pandas as pd  # noqa: PLC0415  (the CLI's summary never needs pandas)

    return pd.DataFrame([[row.get(c) for c in table.columns] for row in table.rows],
                        columns=list(table.columns))


def summarize(runs: Runs, *, filters: Sequence[str] = (), sort: Sequence[str] = (),
              reverse: bool = False, group_by: Sequence[str] = (),
              columns: Sequence[str] | None = None) -> SummaryTable:
    """The table of ``runs`` after ``filters`` (texts), grouped by ``group_by`` if given, sorted by
    ``sort``. ``columns``: the columns to show instead of the default ones (``run_id`` stays
    first); a name starting with ``+`` is added to the default columns instead; ``["all"]`` shows
    every key. Raises :class:`QueryError` for unknown keys and bad filters."""
    known = known_keys(runs)
    rows = select_rows(runs, filters, known)
    _check_keys(group_by, known, "--group-by")
    # the columns come from the whole experiment, so that they do not change with the filters
    varying = varying_keys(runs.rows, runs.spec_keys, runs.key_order)
    constant = ({k: runs.rows[0].get(k) for k in runs.spec_keys if k not in varying}
                if runs.rows else {})
    keys = runs.row_keys if rows is runs.rows else _row_keys(rows)
    cols = _asked_columns(default_columns(rows, varying, keys), columns, runs.spec_keys, keys, known)
    notes = _notes(runs.pending, runs.orphans)
    if group_by:
        return _group_table(rows, list(group_by), cols, set(runs.spec_keys), varying, constant,
                            notes, sort, reverse)
    _check_keys(sort, known, "--sort")
    rows = sort_rows(rows, sort, reverse) if sort else rows
    return SummaryTable(cols, varying=varying, constant=constant, notes=notes,
                        figures=_figures(cols), cells=[column_values(rows, c) for c in cols])


def _asked_columns(cols: list[str], columns: Sequence[str] | None, spec_keys: Sequence[str],
                   keys: set[str], known: Sequence[str]) -> list[str]:
    """The columns shown for ``--columns`` (see :func:`summarize`): ``cols`` (the default ones)
    when none are asked; ``keys``: every key of the shown rows."""
    if not columns:
        return cols
    if list(columns) == ["all"]:
        return list(dict.fromkeys(["index", "run_id", *spec_keys, "status", *sorted(keys)]))
    extra = [c[1:] for c in columns if c.startswith("+")]
    chosen = [c for c in columns if not c.startswith("+")]
    _check_keys(extra + chosen, known, "--columns")
    base = cols if not chosen else ["run_id", *[c for c in chosen if c != "run_id"]]
    return list(dict.fromkeys(base + extra))


def _group_table(rows, group_by, cols, spec_keys, varying, constant, notes, sort,
                 reverse) -> SummaryTable:
    """The grouped table (:func:`_grouped`) sorted by ``sort`` (a column of it), else by the
    group keys."""
    table = _grouped(rows, group_by, cols, spec_keys, varying, constant, notes)
    _check_keys(sort, table.columns, "--sort")
    table.rows = sort_rows(table.rows, sort or table.group_by, reverse)
    return table


def column_values(rows: list[dict], column: str) -> list:
    """``[r.get(column) for r in rows]``, at C speed."""
    return list(map(dict.get, rows, itertools.repeat(column)))


def _stats(values: list[float]) -> dict[str, Any]:
    if set(map(type, values)) <= {float}:  # the common case, at C speed (25,000 groups)
        finite = list(filter(math.isfinite, values))
    else:
        finite = [float(v) for v in values if _is_number(v) and math.isfinite(v)]
    n = len(finite)
    if n == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "count": 0}
    mean = math.fsum(finite) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "min": min(finite), "max": max(finite), "count": n}


def _grouped(rows, group_by, cols, spec_keys, varying, constant, notes) -> SummaryTable:
    """One row per group; statistics of the numeric result columns (not spec values) of ``cols``."""
    figures = [c for c in cols if c not in group_by and c not in ("index", "run_id", "status")
               and c not in spec_keys and any(_is_number(r.get(c)) for r in rows)]
    groups: dict[tuple, list[dict]] = {}
    canon = _canon_of_scalars()
    for key, r in zip(zip(*(map(canon, column_values(rows, k)) for k in group_by)), rows):
        groups.setdefault(key, []).append(r)
    out = []
    for members in groups.values():
        row = {k: members[0].get(k) for k in group_by}
        row["runs"] = len(members)
        row["completed"] = sum(1 for m in members if m.get("status") == "completed")
        for f in figures:
            for stat, value in _stats(column_values(members, f)).items():
                row[f"{f}.{stat}"] = value
        out.append(row)
    columns = [*group_by, "runs", "completed", *[f"{f}.{s}" for f in figures for s in STATS]]
    return SummaryTable(columns, out, varying, constant, grouped=True, group_by=list(group_by),
                        figures=figures, notes=notes)
