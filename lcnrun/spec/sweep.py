"""Sweeps: one experiment spec -> many runs.

    sweep:
      grid:   {init.seed: [0, 1, 2], model.strides: [[1, 1, 1], [2, 2, 1]]}   # cartesian product
      zip:    {dynamics.lr: [0.1, 0.01], dynamics.steps: [100, 1000]}          # paired, same length
      points: [{data.noise: 0.0}, {data.noise: 0.1, data.seed: 3}]              # explicit overrides

The parts combine as a product ``grid x zip x points`` (a missing part is one empty override), in
that order: grid outermost, its keys in the order written (the last key varies fastest), then the zip
rows, then the points. A key is any dotted key of the spec (``data.target.scale``, ``model.filters[0]``,
``dynamics.kind``); a value replaces the key's value in the spec as written (a list-valued key takes
a list of lists). Each point is then validated exactly like a spec, defaults filled in. Nothing runs
unless every point is valid and no two points are the same run (same run id).

Speed (100,000 points in seconds): a point's spec is the base spec with copies only of the
mappings its overrides change (the rest is shared, never modified); the points share one memo of
the validation steps (:func:`lcnrun.spec.schema._memoized`: each distinct section is validated
once, and points that are equal in a section share its frozen object), and one memo of the run
id's text per section object (:func:`lcnrun.spec.canonical.canonical_json`).
"""
from __future__ import annotations

import copy
import functools
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

from .canonical import run_id as compute_run_id
from .canonical import with_file_hashes
from .errors import Problem, SpecError
from .schema import SECTIONS, Context, RunSpec, did_you_mean, validate_run

SWEEP_PARTS = ("grid", "zip", "points")
SWEEPABLE = ("description", *SECTIONS, "diagnostics")
KEY_RE = re.compile(r"^[A-Za-z_]\w*(\[\d+\])*(\.[A-Za-z_]\w*(\[\d+\])*)*$")
TOKEN_RE = re.compile(r"([A-Za-z_]\w*)|\[(\d+)\]")
MANIFEST_COLUMNS = ("index", "run_id", "overrides")


@dataclass(frozen=True)
class SweepPoint:
    """One run of an experiment: ``index`` (0-based, product order), ``overrides`` (dotted key ->
    value, in order), the validated ``run_spec`` and its ``run_id``."""

    index: int
    overrides: dict[str, Any]
    run_spec: RunSpec
    run_id: str


@dataclass(frozen=True)
class ExperimentSpec:
    """A loaded experiment: ``raw`` as written, its line map, the ``base`` run (no sweep applied;
    ``None`` if it is only valid with the sweep's overrides) and every sweep point."""

    path: str | None
    raw: dict[str, Any]
    lines: dict[str, int]
    base: RunSpec | None
    points: tuple[SweepPoint, ...]

    @property
    def name(self) -> str:
        return self.points[0].run_spec.name


def format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return repr(value)  # what json.dumps writes for them, without its machinery (100,000 points)
    return json.dumps(value, default=str)


def format_overrides(overrides: dict[str, Any]) -> str:
    """``{"model.strides": [2, 2, 1], "init.seed": 0}`` -> ``model.strides=[2, 2, 1] init.seed=0``."""
    return " ".join(f"{k}={format_value(v)}" for k, v in overrides.items())


def manifest_rows(experiment: ExperimentSpec) -> list[tuple[int, str, str]]:
    """Rows ``(index, run_id, overrides as JSON)`` of ``manifest.tsv`` (columns MANIFEST_COLUMNS)."""
    return [(p.index, p.run_id, json.dumps(p.overrides, default=str)) for p in experiment.points]


# -------------------------------------------------------------------------------------------------
# parsing the sweep block
_Row = tuple[dict[str, Any], dict[str, int]]  # overrides, and the sweep line of each key


def _check_key(key: Any, where: str, ctx: Context) -> bool:
    if not isinstance(key, str) or not KEY_RE.match(key):
        ctx.add(where, f"{key!r} is not a dotted key like model.strides or data.target.scale")
        return False
    head = TOKEN_RE.match(key).group(1)
    if head not in SWEEPABLE:
        ctx.add(where, f"cannot sweep '{key}': '{head}' is not a sweepable key"
                + did_you_mean(head, SWEEPABLE) + f" (sweepable: {', '.join(SWEEPABLE)})")
        return False
    return True


def _value_lists(part: Any, where: str, ctx: Context) -> dict[str, list] | None:
    if not isinstance(part, dict):
        ctx.add(where, "must be a mapping of dotted keys to lists of values")
        return None
    ok = True
    for key, values in part.items():
        kw = f"{where}.{key}"
        ok = _check_key(key, kw, ctx) and ok
        if not isinstance(values, list):
            ctx.add(kw, "must be a list of values")
            ok = False
        elif not values:
            ctx.add(kw, "is an empty list (a sweep axis needs at least one value)")
            ok = False
    return part if ok else None


def _overlap(a: str, b: str) -> bool:
    return a == b or b.startswith((a + ".", a + "[")) or a.startswith((b + ".", b + "["))


def parse_sweep(sweep: Any, ctx: Context) -> SweepRows | None:
    """The override rows of every point, in product order; ``None`` if the block is malformed."""
    if not isinstance(sweep, dict):
        ctx.add("sweep", "must be a mapping with grid, zip and/or points")
        return None
    start = len(ctx.problems)
    for part in sweep:
        if part not in SWEEP_PARTS:
            ctx.add(f"sweep.{part}", f"unknown sweep part '{part}'" + did_you_mean(part, SWEEP_PARTS)
                    + f" (known: {', '.join(SWEEP_PARTS)})")
    grid: dict[str, list] = {}
    grid_lines: dict[str, int] = {}
    if sweep.get("grid") is not None and (parsed := _value_lists(sweep["grid"], "sweep.grid", ctx)):
        grid = parsed
        grid_lines = {k: ctx.line_of(f"sweep.grid.{k}") for k in grid}
    zip_rows: list[_Row] = [({}, {})]
    if sweep.get("zip") is not None and (zipped := _value_lists(sweep["zip"], "sweep.zip", ctx)):
        lengths = {k: len(v) for k, v in zipped.items()}
        if len(set(lengths.values())) > 1:
            ctx.add("sweep.zip", "lists of a zip must have the same length, got "
                    + ", ".join(f"{k}: {n}" for k, n in lengths.items()))
        else:
            lines = {k: ctx.line_of(f"sweep.zip.{k}") for k in zipped}
            zip_rows = [(dict(zip(zipped, row)), lines) for row in zip(*zipped.values())]
    point_rows: list[_Row] = [({}, {})]
    points = sweep.get("points")
    if points is not None:
        if not isinstance(points, list) or not points:
            ctx.add("sweep.points", "must be a non-empty list of mappings {dotted.key: value}")
        else:
            point_rows = []
            for i, p in enumerate(points):
                where = f"sweep.points[{i}]"
                if not isinstance(p, dict):
                    ctx.add(where, "must be a mapping {dotted.key: value}")
                    continue
                if all([_check_key(k, f"{where}.{k}", ctx) for k in p]):
                    point_rows.append((dict(p), {k: ctx.line_of(f"{where}.{k}") for k in p}))
    axes = list(grid) + list(zip_rows[0][0])
    for i, a in enumerate(axes):
        for b in axes[i + 1:]:
            if _overlap(a, b):
                ctx.add("sweep", f"'{a}' and '{b}' are both swept (by grid and zip)")
    for i, (p, _) in enumerate(point_rows if points is not None else []):
        for a in axes:
            for b in p:
                if _overlap(a, b):
                    ctx.add(f"sweep.points[{i}].{b}", f"'{b}' is also swept by grid or zip ('{a}')")
    if len(ctx.problems) > start:
        return None
    return SweepRows(grid, grid_lines, zip_rows, point_rows)


class SweepRows:
    """The override rows of a sweep's points in product order (see the module docstring), each
    made when asked for: ``rows[i]`` is point ``i``'s ``(overrides, sweep line of each key)``,
    computed from ``i`` (grid outermost, its last key fastest; then the zip rows; then the points),
    so that a task running a few points of 100,000 never makes the others. ``len(rows)`` is the
    number of points; iterating makes them all, in order."""

    def __init__(self, grid: dict[str, list], grid_lines: dict[str, int], zip_rows: list[_Row],
                 point_rows: list[_Row]) -> None:
        self._keys = tuple(grid)
        self._values = tuple(grid.values())
        self._grid_lines = grid_lines
        self._zip_rows = zip_rows
        self._point_rows = point_rows
        self._n = math.prod(len(v) for v in self._values) * len(zip_rows) * len(point_rows)

    def __len__(self) -> int:
        return self._n

    def _row(self, combo, z: _Row, p: _Row) -> _Row:
        return ({**dict(zip(self._keys, combo)), **z[0], **p[0]}, {**self._grid_lines, **z[1], **p[1]})

    def __getitem__(self, i: int) -> _Row:
        if not 0 <= i < self._n:
            raise IndexError(f"sweep point {i} of {self._n}")
        rest, p = divmod(i, len(self._point_rows))
        rest, z = divmod(rest, len(self._zip_rows))
        combo = []
        for values in reversed(self._values):  # mixed radix: the last grid key varies fastest
            rest, k = divmod(rest, len(values))
            combo.append(values[k])
        return self._row(reversed(combo), self._zip_rows[z], self._point_rows[p])

    def __iter__(self):
        for combo, z, p in itertools.product(itertools.product(*self._values), self._zip_rows,
                                             self._point_rows):
            yield self._row(combo, z, p)


# -------------------------------------------------------------------------------------------------
# applying overrides and validating the points
class _CannotApply(Exception):
    pass


def apply_override(raw: dict, key: str, value: Any) -> None:
    """Set dotted ``key`` of ``raw`` (in place), creating missing mappings on the way."""
    tokens = [name if name else int(index) for name, index in TOKEN_RE.findall(key)]
    cur: Any = raw
    done = ""
    for tok, nxt in zip(tokens, tokens[1:] + [None]):
        here = f"{done}[{tok}]" if isinstance(tok, int) else (f"{done}.{tok}" if done else tok)
        if isinstance(tok, int):
            if not isinstance(cur, list) or tok >= len(cur):
                raise _CannotApply(f"{done} is not a list with an entry [{tok}]")
        elif not isinstance(cur, dict):
            raise _CannotApply(f"{done} is not a mapping")
        if nxt is None:
            cur[tok] = value
        else:
            if isinstance(tok, str) and cur.get(tok) is None and isinstance(nxt, str):
                cur[tok] = {}
            cur = cur[tok] if isinstance(tok, int) or tok in cur else None
        done = here


def _related(problem_key: str, overrides: dict[str, Any]) -> str | None:
    """The override a problem comes from (its key, a parent, a child, or the section's kind)."""
    for o in overrides:
        if _overlap(o, problem_key):
            return o
        if o.endswith(".kind") and problem_key.startswith((o[:-5] + ".", o[:-5] + "[")):
            return o
    return None


def _copy_path(raw: dict, key: str, copied: set[int]) -> None:
    """Replace the mappings and lists on the way to dotted ``key`` in ``raw`` by shallow copies
    (once each: ``copied`` holds the ids of the copies made), so that :func:`apply_override` changes
    only this point's spec and never the base it shares the rest with."""
    tokens = [name if name else int(index) for name, index in TOKEN_RE.findall(key)]
    cur: Any = raw
    for tok in tokens[:-1]:
        if isinstance(tok, int):
            child = cur[tok] if isinstance(cur, list) and tok < len(cur) else None
        else:
            child = cur.get(tok) if isinstance(cur, dict) else None
        if not isinstance(child, (dict, list)):
            return  # apply_override creates what is missing (new objects) or reports the problem
        if id(child) not in copied:
            child = dict(child) if isinstance(child, dict) else list(child)
            copied.add(id(child))
            cur[tok] = child
        cur = child


@functools.lru_cache(maxsize=4096)
def _head(key: str) -> str:
    """The top-level key a dotted key starts with (``model.strides[1]`` -> ``model``)."""
    return TOKEN_RE.match(key).group(1) if KEY_RE.match(key) else key


def point_spec(raw: dict, overrides: dict[str, Any], ctx: Context, parts: dict | None = None) -> dict:
    """``raw`` with ``overrides`` applied, sharing what they do not change; an override that cannot
    be applied is a problem in ``ctx``.

    ``parts`` (a dict the caller keeps for all points of one ``raw``) remembers each top-level
    entry made from the same overrides of it: points with equal ``init.*`` overrides share one
    ``init`` mapping (and the validation memo then knows it by identity).
    """
    point_raw = dict(raw)
    by_head: dict[str, list[tuple[str, Any]]] = {}
    for key, value in overrides.items():
        by_head.setdefault(_head(key), []).append((key, value))
    for head, items in by_head.items():
        key = (head, repr(items))
        hit = parts.get(key) if parts is not None else None
        if hit is None:
            part = {head: raw[head]} if head in raw else {}
            copied = {id(part)}
            errors = []
            for k, value in items:
                _copy_path(part, k, copied)
                try:
                    apply_override(part, k, value if isinstance(value, (str, int, float, bool, type(None)))
                                   else copy.deepcopy(value))
                except _CannotApply as err:
                    errors.append((k, f"cannot apply the override: {err}"))
            hit = (part, errors)
            if parts is not None:
                parts[key] = hit
        part, errors = hit
        if head in part:
            point_raw[head] = part[head]
        for k, message in errors:
            ctx.add(k, message)
    return point_raw


def _point_problems(raw: dict, row: _Row, ctx: Context, spec_path,
                    parts: dict | None = None, pctx: Context | None = None) -> tuple[RunSpec | None, list]:
    """Validate one point; its problems as ``(problem, related override or None)``. ``pctx``: a
    context of ``ctx``'s file to validate it in (it is left without problems: the caller may pass
    it for the next point)."""
    overrides, _ = row
    if pctx is None:
        pctx = Context(ctx.file, ctx.lines, ctx.base_dir, ctx.check_files, memo=ctx.memo)
    point_raw = point_spec(raw, overrides, pctx, parts)
    run = validate_run(point_raw, pctx, spec_path=spec_path) if not pctx.problems else None
    if not pctx.problems:
        return run, []
    problems, pctx.problems = pctx.problems, []
    return run, [(p, _related(p.key, overrides)) for p in problems]


def _by_line(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: p.line or 0)


def expand_experiment(raw: dict, lines: dict[str, int], *, file: str | None, base_dir: Path,
                      spec_path: str | None = None) -> ExperimentSpec:
    """Validate an experiment and every point of its sweep; raise SpecError listing all problems."""
    return _expand(raw, lines, file=file, base_dir=base_dir, spec_path=spec_path)[0]


def expand_point(raw: dict, lines: dict[str, int], index: int, *, file: str | None, base_dir: Path,
                 spec_path: str | None = None) -> tuple[ExperimentSpec, int]:
    """Only sweep point ``index``, validated as :func:`expand_experiment` validates it (problems
    of the sweep block, of the base spec and of this point), and the number of points: what
    ``lcnrun run --index I`` needs of a 10,000-point sweep. The returned experiment's ``points``
    hold that one point (none if ``index`` is out of range); it is not the whole experiment (no
    manifest is written from it) and other points may be invalid or the same run."""
    return expand_points(raw, lines, lambda n: [index] if 0 <= index < n else [], file=file,
                         base_dir=base_dir, spec_path=spec_path)


def expand_points(raw: dict, lines: dict[str, int], choose: Callable[[int], Sequence[int]], *,
                  file: str | None, base_dir: Path,
                  spec_path: str | None = None) -> tuple[ExperimentSpec, int]:
    """Only the sweep points ``choose(number of points)`` (distinct, in increasing order; it may
    raise, e.g. for indices out of range, once the sweep block is known valid), each made from its
    index (:class:`SweepRows`) and validated as :func:`expand_experiment` validates it, and the
    number of points: what a bundled Slurm task (``lcnrun run --indices 0-3333``) needs of a
    100,000-point sweep. The returned experiment's ``points`` hold the chosen points in that
    order; no two of them are the same run, but other points may be invalid or the same run as
    one of them (it is not the whole experiment: no manifest is written from it)."""
    return _expand(raw, lines, file=file, base_dir=base_dir, spec_path=spec_path, choose=choose)


def _span(indices: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``0-2,5,7-8`` (the ``--indices`` notation)."""
    out, start = [], 0
    for k in range(1, len(indices) + 1):
        if k == len(indices) or indices[k] != indices[k - 1] + 1:
            a, b = indices[start], indices[k - 1]
            out.append(f"{a}-{b}" if b > a else f"{a}")
            start = k
    return ",".join(out)


def _expand(raw: dict, lines: dict[str, int], *, file: str | None, base_dir: Path,
            spec_path: str | None = None,
            choose: Callable[[int], Sequence[int]] | None = None) -> tuple[ExperimentSpec, int]:
    ctx = Context(file, lines, base_dir, memo={})
    base_raw = {k: v for k, v in raw.items() if k != "sweep"}
    rows: SweepRows | list[_Row] | None = [({}, {})]
    if raw.get("sweep") is not None:
        rows = parse_sweep(raw["sweep"], ctx)
    base_ctx = Context(file, lines, base_dir, memo=ctx.memo)
    base = validate_run(base_raw, base_ctx, spec_path=spec_path)
    if rows is None:
        raise SpecError(_by_line(ctx.problems + base_ctx.problems))
    base_problems = {(p.key, p.message) for p in base_ctx.problems}

    # every point (made in order), or the chosen ones (each made from its index)
    chosen = range(len(rows)) if choose is None else list(choose(len(rows)))
    chosen_rows = list(rows) if choose is None else [rows[i] for i in chosen]
    whole = choose is None or len(chosen) == len(rows)
    parts: dict = {}
    pctx = Context(file, lines, base_dir, memo=ctx.memo)  # one for all points (each leaves it empty)
    results = [_point_problems(base_raw, row, ctx, spec_path, parts, pctx) for row in chosen_rows]
    del parts
    # A problem is the sweep's if it concerns an overridden key, or if the base spec does not have
    # it (a combination of overrides): it gets the sweep's line. A problem shared by every point is
    # reported once; others name their point.
    groups: dict[tuple, list[int]] = {}
    for i, (overrides, sweep_lines), (_, problems) in zip(chosen, chosen_rows, results):
        for p, rel in problems:
            if rel is None and overrides and (p.key, p.message) not in base_problems:
                rel = next(iter(overrides))
            line = sweep_lines[rel] if rel is not None else p.line
            groups.setdefault((line, p.key, p.message, rel is not None), []).append(i)
    row_of = dict(zip(chosen, chosen_rows)) if groups else {}
    for (line, key, message, related), indices in groups.items():
        if len(indices) == len(chosen) and (not related or len(chosen) > 1):
            context = (f"all {len(chosen)} sweep points" if whole
                       else f"all {len(chosen)} sweep points {_span(chosen)} of {len(rows)}") if related else ""
            ctx.problems.append(Problem(file, line, key, message, context))
            continue
        for i in indices:
            overrides = row_of[i][0]
            ctx.problems.append(Problem(file, line, key, message,
                                        f"sweep point {i} ({format_overrides(overrides) or 'no overrides'})"))
    if ctx.problems:
        raise SpecError(_by_line(ctx.problems))

    hashes: dict[str, str] = {}  # each data/init file is hashed once per load
    texts: dict = {}  # each distinct section is written as run-id text once per load
    # each point carries the content its id names (the file hashes): the runner refuses other content
    ids = [compute_run_id(run, file_hashes=hashes, texts=texts) for run, _ in results]
    paths: dict = {}  # and its paths found once; no file hashed: no point has a path option
    points = tuple(SweepPoint(i, row[0], with_file_hashes(run, hashes, paths) if hashes else run, rid)
                   for i, row, (run, _), rid in zip(chosen, chosen_rows, results, ids))
    del results, texts, paths, chosen_rows
    first: dict[str, SweepPoint] = {}
    for p in points:
        q = first.setdefault(p.run_id, p)
        if q is not p:
            ctx.add("sweep", f"sweep points {q.index} ({format_overrides(q.overrides) or 'no overrides'}) and "
                             f"{p.index} ({format_overrides(p.overrides) or 'no overrides'}) are the same run "
                             f"(run id {p.run_id}); remove one of them")
    if ctx.problems:
        raise SpecError(ctx.problems)
    return ExperimentSpec(file, raw, lines, base, points), len(rows)
