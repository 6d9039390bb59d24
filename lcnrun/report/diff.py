"""``lcnrun diff A B``: did a code change (or anything else) move a result?

``A`` and ``B`` are two run files, or two experiments (folders, spec files, or folders of run
files). Experiments' runs are paired

1. by run id;
2. then, for runs left over (a code version that changed run ids, e.g. by adding a spec key with a
   default), by their spec values, ignoring ``name``, ``description`` and keys that only one
   side's runs have; only one-to-one matches pair;
3. then, when both sides are sweeps, by sweep index (the specs then differ: that is shown);

what is left is reported as runs only in A or only in B (a difference).

Two paired runs are compared item by item: the spec (flattened dotted keys), the status and other
root attributes, the final figures and arrays, the diagnostics, and every trajectory series on a
common time axis (if the stored times differ, B's series are interpolated linearly onto A's
times within the common time range, and the item says so). Not compared: provenance (host,
times, git commit), ``lcnrun_version``, ``name``, ``description`` and the run settings
(``record.checkpoint_every``: how a run is kept, not what it computes), and spec keys that only one
of the two runs has (a key added by a newer code version, with its default): they are shown,
and if they change anything, the results differ.

Numbers ``a``, ``b`` are equal when ``|a - b| <= atol + rtol * max(|a|, |b|)`` (NaN equals NaN,
infinities equal themselves); defaults :data:`DEFAULT_RTOL` = 1e-9, :data:`DEFAULT_ATOL` = 1e-12
(runs of one code version on one machine are bitwise identical; these tolerances admit the
last-digit changes of a reordered sum, nothing a researcher would see). Each item reports the
largest absolute and relative difference, and whether the two values are bitwise identical.
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..provenance import available_cores
from ..spec import RUN_SETTINGS
from ..store.runfile import RunData, RunFileError, read_run
from .source import (ExperimentSource, SourceError, flatten_spec_text, open_experiment, read_runs,
                     reader_context)
from .tolerance import DEFAULT_ATOL, DEFAULT_RTOL

#: spec keys that do not decide a result: names and the run settings (how a run is kept)
SPEC_IGNORED = ("name", "description", *(f"{section}.{option}" for section, option in RUN_SETTINGS))
ATTRS_IGNORED = ("lcnrun_version", "name")
PARALLEL_PAIRS = 400


@dataclass
class Item:
    """One compared thing of a pair of runs.

    ``key``: ``spec.dynamics.lr``, ``status``, ``message``, ``final.loss``, ``final/end_to_end``,
    ``trajectory/loss``, ``diagnostics.<name>.<key>``, ``diagnostics/<name>/<key>``.
    ``a``, ``b``: the values (for arrays: the values where they differ most, or the shapes).
    ``counts``: False for items that are shown but never make runs differ (ignored keys).
    """

    key: str
    equal: bool
    bitwise: bool
    a: Any = None
    b: Any = None
    max_abs: float | None = None
    max_rel: float | None = None
    note: str = ""
    counts: bool = True

    @property
    def kind(self) -> str:
        head = self.key.split("/")[0].split(".")[0]
        return head if head in ("spec", "final", "trajectory", "diagnostics") else "attrs"


@dataclass
class PairDiff:
    """Two runs compared: where they are, how they were paired, the items."""

    a: str
    b: str
    run_id_a: str
    run_id_b: str
    paired_by: str  # "files", "run id", "spec values", "sweep index"
    items: list[Item] = field(default_factory=list)
    error: str = ""
    index_a: int | None = None
    index_b: int | None = None
    provenance_a: dict = field(default_factory=dict)
    provenance_b: dict = field(default_factory=dict)

    @property
    def equal(self) -> bool:
        return not self.error and all(i.equal for i in self.items if i.counts)

    @property
    def bitwise(self) -> bool:
        return not self.error and all(i.bitwise for i in self.items if i.counts)

    def differing(self) -> list[Item]:
        return [i for i in self.items if i.counts and not i.equal]


@dataclass
class DiffReport:
    """The whole comparison: ``pairs``, runs without a partner, tolerances, pairing notes."""

    a: str
    b: str
    mode: str  # "runs" or "experiments"
    rtol: float
    atol: float
    pairs: list[PairDiff] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)  # run ids
    only_b: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.only_a and not self.only_b and all(p.equal for p in self.pairs)

    @property
    def bitwise(self) -> bool:
        return self.equal and all(p.bitwise for p in self.pairs)

    @property
    def unreadable(self) -> list[PairDiff]:
        """Pairs that could not be compared (a run file that cannot be read): not a difference,
        an answer that cannot be given (``lcnrun diff`` exits 2)."""
        return [p for p in self.pairs if p.error]

    def paired_by(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.pairs:
            out[p.paired_by] = out.get(p.paired_by, 0) + 1
        return out

    def differing_keys(self) -> list[str]:
        """Every item key that differs in some pair, in first-seen order."""
        return list(dict.fromkeys(i.key for p in self.pairs for i in p.differing()))

    def to_dict(self, *, all_items: bool = False) -> dict[str, Any]:
        """JSON-able form (``all_items``: also the equal items and pairs)."""
        pairs = []
        for p in self.pairs:
            if not all_items and p.equal:
                continue
            d = {k: v for k, v in asdict(p).items() if k != "items"}
            d.update(equal=p.equal, bitwise=p.bitwise)
            d["items"] = [dict(asdict(i), kind=i.kind) for i in p.items
                          if all_items or (i.counts and not i.equal)]
            pairs.append(d)
        return {"equal": self.equal, "bitwise": self.bitwise, "a": self.a, "b": self.b,
                "mode": self.mode, "rtol": self.rtol, "atol": self.atol,
                "pairs_compared": len(self.pairs),
                "pairs_differing": sum(1 for p in self.pairs if not p.equal),
                "paired_by": self.paired_by(), "only_a": self.only_a, "only_b": self.only_b,
                "differing_keys": self.differing_keys(), "notes": self.notes, "pairs": pairs}


# -- numbers ---------------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan
    if isinstance(value, complex):
        return str(value)
    return value


def compare_values(key: str, a: Any, b: Any, rtol: float, atol: float, *,
                   t: np.ndarray | None = None, note: str = "") -> Item:
    """Compare two scalars or arrays (see the module docstring for the rule)."""
    if isinstance(a, str) or isinstance(b, str) or a is None or b is None:
        same = type(a) is type(b) and a == b
        return Item(key, same, same, a, b, note=note)
    xa, xb = np.asarray(a), np.asarray(b)
    if xa.shape != xb.shape:
        return Item(key, False, False, list(xa.shape), list(xb.shape), None, None,
                    "; ".join(filter(None, [note, f"shapes differ: {xa.shape} vs {xb.shape}"])))
    bitwise = xa.dtype == xb.dtype and xa.tobytes() == xb.tobytes()
    scalar = xa.ndim == 0
    if bitwise:
        value = _jsonable(xa.item()) if scalar else None
        return Item(key, True, True, value, value, 0.0, 0.0, note)
    if xa.dtype.kind not in "biufc" or xb.dtype.kind not in "biufc":
        same = bool(np.array_equal(xa, xb))
        return Item(key, same, same, None, None, note=note)
    fa = xa.astype(np.complex128 if "c" in (xa.dtype.kind, xb.dtype.kind) else np.float64).ravel()
    fb = xb.astype(fa.dtype).ravel()
    with np.errstate(all="ignore"):
        nan_a, nan_b = np.isnan(fa), np.isnan(fb)
        finite = np.isfinite(fa) & np.isfinite(fb)
        diff = np.where(finite, np.abs(fa - fb), 0.0)
        scale = np.maximum(np.abs(fa), np.abs(fb))
        rel = np.where(finite & (scale > 0), diff / np.where(scale > 0, scale, 1.0), 0.0)
        # non-finite entries: equal only if the same (both NaN, or the same infinity)
        nonfinite_bad = ~finite & ~((nan_a & nan_b) | (fa == fb))
        within = diff <= atol + rtol * scale
    bad = nonfinite_bad | (finite & ~within)
    equal = not bad.any()
    diff = np.where(nonfinite_bad, np.inf, diff)
    rel = np.where(nonfinite_bad, np.inf, rel)
    where = int(np.argmax(np.where(bad, diff, -1.0))) if bad.any() else int(np.argmax(diff))
    max_abs, max_rel = float(diff.max(initial=0.0)), float(rel.max(initial=0.0))
    if scalar:
        return Item(key, equal, False, _jsonable(xa.item()), _jsonable(xb.item()), max_abs, max_rel,
                    note)
    va, vb = _jsonable(fa[where].item()), _jsonable(fb[where].item())
    at = np.unravel_index(where, xa.shape)
    where_text = f"largest difference at [{', '.join(map(str, at))}]"
    if t is not None and len(t) == xa.shape[0]:
        where_text += f" (t = {float(t[at[0]]):.6g})"
    return Item(key, equal, False, va, vb, max_abs, max_rel,
                "; ".join(filter(None, [note, where_text])))


# -- one pair of runs ------------------------------------------------------------------------------
def _spec_items(a: RunData, b: RunData, rtol: float, atol: float) -> list[Item]:
    # the flattened whole parse, each top-level entry parsed once per process (runs share most)
    sa, sb = flatten_spec_text(a.spec_text), flatten_spec_text(b.spec_text)
    items = []
    for key in dict.fromkeys([*sa, *sb]):
        if key not in sa or key not in sb:  # a key one code version has and the other not:
            # shown, not counted (if it changes anything, the results say so)
            items.append(Item(f"spec.{key}", False, False, sa.get(key), sb.get(key),
                              note=f"key only in {'A' if key in sa else 'B'}", counts=False))
            continue
        va, vb = sa[key], sb[key]
        same = _same_spec_value(va, vb)
        items.append(Item(f"spec.{key}", same, same, va, vb, counts=key not in SPEC_IGNORED))
    return items


_JSON_EXACT = (str, int, bool, type(None))  # equal values of one of these types: equal JSON texts


def _same_spec_value(va: Any, vb: Any) -> bool:
    """Whether two spec values have the same JSON text (``sort_keys``; raises ``TypeError`` for a
    value JSON cannot write, a date say). Equal strings, ints, bools or ``None`` of one type, and
    equal floats but for 0.0 and -0.0, are so without writing them (a spec has ~30 values, most
    equal)."""
    if type(va) is type(vb) and (type(va) in _JSON_EXACT and va == vb
                                 or type(va) is float and (va is vb or va == vb != 0.0)):
        return True
    return json.dumps(va, sort_keys=True) == json.dumps(vb, sort_keys=True)


def _scalar_items(prefix: str, da: dict, db: dict, rtol: float, atol: float,
                  ignored: tuple[str, ...] = ()) -> list[Item]:
    items = []
    for key in dict.fromkeys([*da, *db]):
        name = f"{prefix}{key}"
        if key not in da or key not in db:
            items.append(Item(name, False, False, da.get(key), db.get(key),
                              note=f"only in {'A' if key in da else 'B'}", counts=key not in ignored))
            continue
        item = compare_values(name, da[key], db[key], rtol, atol)
        item.counts = key not in ignored
        items.append(item)
    return items


def _array_items(prefix: str, da: dict, db: dict, rtol: float, atol: float) -> list[Item]:
    items = []
    for key in dict.fromkeys([*da, *db]):
        name = f"{prefix}{key}"
        if key not in da or key not in db:
            items.append(Item(name, False, False, note=f"only in {'A' if key in da else 'B'}"))
        else:
            items.append(compare_values(name, da[key], db[key], rtol, atol))
    return items


def _interpolate(t_to: np.ndarray, t_from: np.ndarray, series: np.ndarray) -> np.ndarray:
    flat = np.asarray(series, dtype=np.float64).reshape(len(t_from), -1)
    out = np.empty((len(t_to), flat.shape[1]))
    for j in range(flat.shape[1]):
        out[:, j] = np.interp(t_to, t_from, flat[:, j])
    return out.reshape((len(t_to),) + np.shape(series)[1:])


def _trajectory_items(a: RunData, b: RunData, rtol: float, atol: float) -> list[Item]:
    ta, tb = a.trajectory.get("t"), b.trajectory.get("t")
    same_grid = (ta is not None and tb is not None and ta.shape == tb.shape
                 and compare_values("t", ta, tb, rtol, atol).equal)
    items = []
    keys = list(dict.fromkeys([*a.trajectory, *b.trajectory]))
    if same_grid or ta is None or tb is None or len(ta) == 0 or len(tb) == 0:
        for key in keys:
            name = f"trajectory/{key}"
            if key not in a.trajectory or key not in b.trajectory:
                items.append(Item(name, False, False, note=f"only in {'A' if key in a.trajectory else 'B'}"))
            else:
                items.append(compare_values(name, a.trajectory[key], b.trajectory[key], rtol, atol,
                                            t=ta))
        return items
    lo, hi = max(float(ta[0]), float(tb[0])), min(float(ta[-1]), float(tb[-1]))
    keep = (ta >= lo) & (ta <= hi)
    t_common = ta[keep]
    grid_note = (f"time grids differ (A: {len(ta)} times to t = {float(ta[-1]):.6g}, B: {len(tb)} "
                 f"times to t = {float(tb[-1]):.6g}); B interpolated onto A's {len(t_common)} times "
                 f"in [{lo:.6g}, {hi:.6g}]")
    for key in keys:
        name = f"trajectory/{key}"
        if key not in a.trajectory or key not in b.trajectory:
            items.append(Item(name, False, False, note=f"only in {'A' if key in a.trajectory else 'B'}"))
            continue
        sa, sb = a.trajectory[key], b.trajectory[key]
        if key == "t":
            items.append(compare_values(name, sa, sb, rtol, atol, note=grid_note))
            continue
        if sa.shape[1:] != sb.shape[1:] or sa.shape[0] != len(ta) or sb.shape[0] != len(tb):
            items.append(compare_values(name, sa, sb, rtol, atol))
            continue
        if len(t_common) == 0:
            items.append(Item(name, False, False, note="no common time (see trajectory/t)"))
            continue
        items.append(compare_values(name, np.asarray(sa, dtype=np.float64)[keep],
                                    _interpolate(t_common, tb, sb), rtol, atol, t=t_common,
                                    note="B interpolated onto A's times (see trajectory/t)"))
    return items


def compare_run_data(a: RunData, b: RunData, rtol: float, atol: float) -> list[Item]:
    """Every item of two runs read with :func:`read_run`."""
    items = _spec_items(a, b, rtol, atol)
    items.append(compare_values("status", a.status, b.status, rtol, atol))
    items += _scalar_items("", a.attrs, b.attrs, rtol, atol)
    items.append(Item("lcnrun_version", a.lcnrun_version == b.lcnrun_version,
                      a.lcnrun_version == b.lcnrun_version, a.lcnrun_version, b.lcnrun_version,
                      counts=False))
    for item in items:
        if item.key in ATTRS_IGNORED:
            item.counts = False
    items += _scalar_items("final.", a.final_attrs, b.final_attrs, rtol, atol)
    items += _array_items("final/", a.final_arrays, b.final_arrays, rtol, atol)
    names = list(dict.fromkeys([*a.diagnostics, *b.diagnostics]))
    for name in names:
        da, db = a.diagnostics.get(name), b.diagnostics.get(name)
        if da is None or db is None:
            items.append(Item(f"diagnostics.{name}", False, False,
                              note=f"only in {'A' if da is not None else 'B'}"))
            continue
        items += _scalar_items(f"diagnostics.{name}.", da.get("scalars", {}), db.get("scalars", {}),
                               rtol, atol)
        items += _array_items(f"diagnostics/{name}/", da.get("arrays", {}), db.get("arrays", {}),
                              rtol, atol)
    items += _trajectory_items(a, b, rtol, atol)
    return items


def _provenance_brief(data: RunData) -> dict:
    p = data.provenance or {}
    return {"git_commit": p.get("git_commit"), "git_dirty": p.get("git_dirty"),
            "lcnrun_version": data.lcnrun_version, "host": p.get("host"),
            "start_utc": p.get("start_utc")}


def diff_runs(path_a: os.PathLike | str, path_b: os.PathLike | str, *, rtol: float = DEFAULT_RTOL,
              atol: float = DEFAULT_ATOL, paired_by: str = "files", index_a: int | None = None,
              index_b: int | None = None) -> PairDiff:
    """Compare two run files. An unreadable file gives a :class:`PairDiff` with ``error``."""
    pair = PairDiff(str(path_a), str(path_b), Path(path_a).stem, Path(path_b).stem, paired_by,
                    index_a=index_a, index_b=index_b)
    runs = []
    for path in (path_a, path_b):
        try:
            runs.append(read_run(path))
        except RunFileError as err:
            pair.error = str(err)
            return pair
        except (RuntimeError, OSError) as err:  # h5py, on a damaged data region
            pair.error = f"{path}: unreadable run file ({err})"
            return pair
    a, b = runs
    pair.run_id_a, pair.run_id_b = a.run_id, b.run_id
    pair.provenance_a, pair.provenance_b = _provenance_brief(a), _provenance_brief(b)
    try:
        pair.items = compare_run_data(a, b, rtol, atol)
    except (ValueError, TypeError, yaml.YAMLError) as err:
        pair.error = f"cannot compare: {type(err).__name__}: {err}"
    return pair


def _diff_chunk(tasks: list[tuple]) -> list[PairDiff]:
    return [diff_runs(*args, **kwargs) for args, kwargs in tasks]


# -- experiments -----------------------------------------------------------------------------------
def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def pair_runs(src_a: ExperimentSource, src_b: ExperimentSource, *, processes: int | None = None
              ) -> tuple[list[tuple[str, str, str]], list[str], list[str], list[str]]:
    """``(pairs (run id A, run id B, how), only in A, only in B, notes)`` (module docstring)."""
    files_a, files_b = src_a.run_files(), src_b.run_files()
    pairs = [(rid, rid, "run id") for rid in files_a if rid in files_b]
    left_a = [rid for rid in files_a if rid not in files_b]
    left_b = [rid for rid in files_b if rid not in files_a]
    notes: list[str] = []
    if left_a and left_b:
        infos_a = {i.run_id: i for i in read_runs({r: files_a[r] for r in left_a}, processes=processes)}
        infos_b = {i.run_id: i for i in read_runs({r: files_b[r] for r in left_b}, processes=processes)}
        keys_a = {k for i in infos_a.values() for k in i.spec}
        keys_b = {k for i in infos_b.values() for k in i.spec}
        common = sorted((keys_a & keys_b) - set(SPEC_IGNORED))
        one_side = sorted((keys_a ^ keys_b) - set(SPEC_IGNORED))

        def signatures(infos):
            out: dict[str, list[str]] = {}
            for rid, info in infos.items():
                if not info.error:
                    out.setdefault(_canon([info.spec.get(k) for k in common]), []).append(rid)
            return out
        sig_a, sig_b = signatures(infos_a), signatures(infos_b)
        matched = 0
        for sig, ids in sig_a.items():
            other = sig_b.get(sig, [])
            if len(ids) == 1 and len(other) == 1:
                pairs.append((ids[0], other[0], "spec values"))
                matched += 1
        if matched:
            done_a = {p[0] for p in pairs}
            done_b = {p[1] for p in pairs}
            left_a = [r for r in left_a if r not in done_a]
            left_b = [r for r in left_b if r not in done_b]
            note = f"{matched} pair{'s' if matched != 1 else ''} with different run ids paired by spec values"
            if one_side:
                shown = ", ".join(one_side[:8]) + (" ..." if len(one_side) > 8 else "")
                note += f" (ignoring keys only one side has: {shown})"
            notes.append(note)
    if left_a and left_b and src_a.points is not None and src_b.points is not None:
        index_a, index_b = src_a.index_of, src_b.index_of
        by_index_b = {index_b[r]: r for r in left_b if r in index_b}
        matched = 0
        for rid in list(left_a):
            i = index_a.get(rid)
            if i is not None and i in by_index_b:
                pairs.append((rid, by_index_b.pop(i), "sweep index"))
                left_a.remove(rid)
                matched += 1
        if matched:
            done_b = {p[1] for p in pairs}
            left_b = [r for r in left_b if r not in done_b]
            notes.append(f"{matched} pair{'s' if matched != 1 else ''} of runs with different specs "
                         "paired by sweep index")
    return pairs, left_a, left_b, notes


def diff_experiments(src_a: ExperimentSource, src_b: ExperimentSource, *,
                     rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
                     processes: int | None = None) -> DiffReport:
    """Pair the runs of two experiments and compare every pair."""
    report = DiffReport(src_a.label, src_b.label, "experiments", rtol, atol)
    files_a, files_b = src_a.run_files(), src_b.run_files()
    if not files_a and not files_b:
        report.notes.append("neither side has run files")
    pairs, report.only_a, report.only_b, notes = pair_runs(src_a, src_b, processes=processes)
    report.notes += notes
    ia, ib = src_a.index_of, src_b.index_of
    tasks = [((files_a[ra], files_b[rb]), dict(rtol=rtol, atol=atol, paired_by=how,
                                               index_a=ia.get(ra), index_b=ib.get(rb)))
             for ra, rb, how in pairs]
    if processes is None:
        processes = available_cores() if len(tasks) >= PARALLEL_PAIRS else 1
    if processes > 1 and len(tasks) > 1:
        size = max(1, math.ceil(len(tasks) / (processes * 4)))
        chunks = [tasks[i:i + size] for i in range(0, len(tasks), size)]
        with ProcessPoolExecutor(processes, mp_context=reader_context()) as pool:
            report.pairs = [p for part in pool.map(_diff_chunk, chunks) for p in part]
    else:
        report.pairs = _diff_chunk(tasks)
    key = lambda p: (p.index_a is None, p.index_a or 0, p.run_id_a)  # noqa: E731
    report.pairs.sort(key=key)
    return report


def ignore_items(report: DiffReport, patterns: list[str]) -> DiffReport:
    """Mark items whose key matches one of the glob ``patterns`` as not counting (in place)."""
    if patterns:
        for pair in report.pairs:
            for item in pair.items:
                if any(fnmatch.fnmatchcase(item.key, p) for p in patterns):
                    item.counts = False
        report.notes.append("ignored: " + ", ".join(patterns))
    return report


def diff_paths(a: os.PathLike | str, b: os.PathLike | str, *, rtol: float = DEFAULT_RTOL,
               atol: float = DEFAULT_ATOL, results: os.PathLike | str = "results",
               processes: int | None = None, ignore: list[str] | None = None) -> DiffReport:
    """``lcnrun diff A B``: two run files, or two experiments. Raises :class:`SourceError` for
    anything else (a file and a folder, a missing path, an unreadable run file). ``ignore``:
    glob patterns of item keys left out of the verdict (:func:`ignore_items`)."""
    if not (rtol >= 0 and atol >= 0):
        raise SourceError(f"tolerances must be >= 0 (got rtol={rtol}, atol={atol})")
    pa, pb = Path(a), Path(b)
    is_run = [p.is_file() and p.suffix == ".h5" for p in (pa, pb)]
    if all(is_run):
        pair = diff_runs(pa, pb, rtol=rtol, atol=atol)
        if pair.error:
            raise SourceError(pair.error)
        return ignore_items(DiffReport(str(pa), str(pb), "runs", rtol, atol, [pair]), ignore or [])
    if any(is_run):
        run, other = (pa, pb) if is_run[0] else (pb, pa)
        raise SourceError(f"cannot compare the run file {run} with {other}: give two run files or "
                          "two experiments")
    src_a = open_experiment(pa, results)
    src_b = open_experiment(pb, results)
    return ignore_items(diff_experiments(src_a, src_b, rtol=rtol, atol=atol, processes=processes),
                        ignore or [])
