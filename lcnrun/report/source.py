"""What a report reads: an experiment's sweep points and run files, and their attributes, fast.

:func:`open_experiment` accepts what a researcher types: the experiment folder
(``results/<name>``), the spec file (then its folder under ``results``), a bare experiment name
(``results/<name>`` must exist) or any folder of run files. :func:`scan_runs` is the one reading
path of every report (summary, status, plots, the HTML report, the Python API): the run index
where it knows the very file, else the file, opened once for its attributes, its spec and the few
series asked for plus those the index keeps (never the other arrays), in worker processes when
there are many; each run's resolved spec is flattened to dotted keys (``model.strides``,
``data.target.scale``). :func:`scan_rows` is the same reading made into table rows.
"""
from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from ..provenance import available_cores
from ..store.experiment import ExperimentDir, ManifestRow
from ..store.index import KEPT_SERIES, flat_spec, index_dir, run_file_stats, scan, scan_flat
from ..store.runfile import RunFileError
from ..store.specflat import flatten, flatten_spec_text  # noqa: F401  (the reports' names for them)

SPEC_SUFFIXES = (".yaml", ".yml")
PARALLEL_FROM = 2000  # read this many files or more in worker processes


class SourceError(ValueError):
    """The named path is not something a report can read (exit code 2 in the CLI)."""


@dataclass
class ExperimentSource:
    """An experiment as reports see it.

    ``label``: what the user named; ``runs_dir``: where its run files are; ``points``: its sweep
    points (index, run id, overrides) from the spec file or ``manifest.tsv``, ``None`` when there
    is neither (a bare folder of run files); ``xdir``: the experiment folder, if it is one.
    """

    label: str
    runs_dir: Path
    points: list[ManifestRow] | None
    xdir: ExperimentDir | None = None

    @property
    def index_of(self) -> dict[str, int]:
        return {} if self.points is None else {p.run_id: p.index for p in self.points}

    def run_files(self) -> dict[str, Path]:
        """``{run_id: path}`` of every run file (hidden temporaries and claims skipped)."""
        return run_files(self.runs_dir)

    def run_file_stats(self) -> dict[str, tuple[str, os.stat_result]]:
        """``{run_id: (path as text, stat)}`` of every run file (no ``Path`` per file)."""
        return run_file_stats(self.runs_dir)


def run_files(folder: os.PathLike | str) -> dict[str, Path]:
    """``{run_id: path}`` of the regular files ``<run_id>.h5`` in ``folder`` (a FIFO or a folder
    of that name is no run file, and is never opened)."""
    return {rid: Path(path) for rid, (path, _) in run_file_stats(folder).items()}


def open_experiment(path: os.PathLike | str, results: os.PathLike | str = "results") -> ExperimentSource:
    """Resolve ``path`` (see the module docstring); raises :class:`SourceError` or, for an invalid
    spec file, :class:`lcnrun.spec.SpecError`."""
    path = Path(path)
    if path.is_file() and path.suffix in SPEC_SUFFIXES:
        from ..spec import load_experiment  # noqa: PLC0415
        exp = load_experiment(path)
        xdir = ExperimentDir(Path(results) / exp.name)
        points = [ManifestRow(p.index, p.run_id, p.overrides) for p in exp.points]
        return ExperimentSource(str(path), xdir.runs_dir, points, xdir)
    if not path.exists() and not path.is_absolute() and (Path(results) / path).is_dir():
        path = Path(results) / path
    if not path.is_dir():
        if path.is_file():
            raise SourceError(f"{path}: expected an experiment folder (results/<name>) or a spec "
                              "file (.yaml), not a file")
        raise SourceError(f"{path}: no such experiment folder or spec file")
    xdir = ExperimentDir(path)
    if xdir.manifest_tsv.exists() or xdir.runs_dir.is_dir():
        points = None
        if xdir.manifest_tsv.exists():
            try:
                points = xdir.read_manifest()
            except (ValueError, OSError) as err:
                raise SourceError(str(err)) from None
        return ExperimentSource(str(path), xdir.runs_dir, points, xdir)
    if run_files(path):
        return ExperimentSource(str(path), path, None, None)
    raise SourceError(f"{path}: not an experiment folder (no manifest.tsv, no runs/) and no run "
                      "files (*.h5) in it")


# -- reading many run files ------------------------------------------------------------------------
@dataclass
class RunInfo:
    """One run file as reports see it: ``attrs`` (every scalar, ``read_run_attrs`` names, without
    ``spec``), ``spec`` (flattened resolved spec), or ``error`` when the file is unreadable;
    ``series``: ``{name: array}`` of the trajectory series known without opening the file again
    (read in the same open, or kept by the run index), for the names ``series_keys`` (a name
    there but not in ``series``: the file has no such series)."""

    run_id: str
    path: Path | str
    attrs: dict[str, Any]
    spec: dict[str, Any]
    error: str = ""
    series: dict[str, Any] | None = None
    series_keys: tuple[str, ...] = ()  # the series looked for (those ``series`` lacks: absent)

    @property
    def status(self) -> str:
        return "unreadable" if self.error else str(self.attrs.get("status", ""))


def _read_one(path: str, series: tuple[str, ...] | None, check_marks: bool = True):
    """``(attrs with "spec", {name: array})`` of one file: the ``series`` asked for and the ones
    the run index keeps (:data:`~lcnrun.store.index.KEPT_SERIES`), read in the same open; or the
    reason it is unreadable (a text: it crosses process boundaries)."""
    from ..store.series import read_attrs_and_series  # noqa: PLC0415  (h5py: only now)

    try:
        return read_attrs_and_series(path, _with_kept(series), check_marks=check_marks)
    except RunFileError as err:
        return err.reason


def _with_kept(series: tuple[str, ...] | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*KEPT_SERIES, *(series or ())]))


def _info(run_id: str, path: os.PathLike | str, got, series: tuple[str, ...] | None = None) -> RunInfo:
    if isinstance(got, str):
        return RunInfo(run_id, Path(path), {"run_id": run_id, "status": "unreadable"}, {}, got)
    attrs, arrays = got
    attrs = dict(attrs)
    spec, error = flat_spec(attrs.pop("spec", "") or "")
    return RunInfo(run_id, Path(path), attrs, spec or {}, error, arrays, _with_kept(series))


def read_run_info(run_id: str, path: Path, series: Iterable[str] | None = None) -> RunInfo:
    """:class:`RunInfo` of one run file (with the ``series`` read in the same open, if named)."""
    series = None if series is None else tuple(series)
    return _info(run_id, path, _read_one(str(path), series), series)


def scan_runs(runs_dir: os.PathLike | str, files: dict[str, Path], *,
              processes: int | None = None, series: Iterable[str] | None = None,
              listing: dict | None = None) -> list[RunInfo]:
    """:class:`RunInfo` of the run files ``files`` (``{run_id: path}``) of ``runs_dir``, in that
    order: from the run index of an experiment folder (:mod:`lcnrun.store.index`, the same answer
    as reading every file), else by :func:`read_runs`. ``series``: also read these trajectory
    series of each file that has to be opened for its attributes (one open, not two; a run
    answered by the index gets ``series=None``). ``listing``: ``run_file_stats(runs_dir)`` if
    the caller has it (the files are then listed once)."""
    series = None if series is None else tuple(series)
    if index_dir(runs_dir) is None:
        return read_runs(files, processes=processes, series=series)
    known = scan(runs_dir, run_ids=files, reader=file_reader(series, processes), listing=listing,
                 kept_series=series is not None)  # no series asked: a summary, none decoded
    return [_run_info(rid, path, known.get(rid), series) for rid, path in files.items()]


def _run_info(rid: str, path, run, series: tuple[str, ...] | None) -> RunInfo:
    """:class:`RunInfo` of the run file ``rid`` from what the index's scan said of it (``run``,
    an :class:`~lcnrun.store.index.IndexedRun`, or ``None``)."""
    if run is None:  # removed since it was listed: read it as before (it says so)
        return read_run_info(rid, Path(path), series)
    if run.attrs is None:
        return RunInfo(rid, path, {"run_id": rid, "status": "unreadable"}, {}, run.reason)
    # the scan's dicts are new (not shared): no copies of 100,000 of them
    if run.extra is not None:  # the file was read: every series asked for
        arrays, keys = run.extra, _with_kept(series)
    else:  # the index answered: the series it keeps, if it has them
        arrays, keys = run.series, (KEPT_SERIES if run.series is not None else ())
    return RunInfo(rid, path, run.attrs, run.spec or {}, run.spec_error, arrays, keys)


#: attributes of the file, not of the run: a table's row leaves them out (a spec key of that
#: name stays)
FILE_ATTRS = ("format", "format_version")


def flat_row(info: RunInfo) -> dict[str, Any]:
    """One table row of a run: its flattened spec, then its attributes (an attribute wins over a
    spec key of the same name, except :data:`FILE_ATTRS`), ``run_id`` and ``status``, and
    ``message`` = why the file is unreadable, if it is."""
    row: dict[str, Any] = dict(info.spec)
    saved = [(k, row[k]) for k in FILE_ATTRS if k in row]
    row.update(info.attrs)
    for k in FILE_ATTRS:
        row.pop(k, None)
    row.update(saved)
    row["run_id"] = info.run_id
    row["status"] = info.status
    if info.error:
        row["message"] = info.error
    return row


def scan_rows(runs_dir: os.PathLike | str, files: dict[str, Path], *, processes: int | None = None,
              listing: dict | None = None) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    """:func:`flat_row` of each run file of ``files`` (``{run_id: path}``, in that order) and
    the keys of its spec, as :func:`scan_runs` reads them (no series): the rows the run index's
    columns answer for are made column by column (:func:`lcnrun.store.index.scan_flat`: 100,000
    rows of a summary without a dict per entry, run and info first); every other run through
    :class:`RunInfo`."""
    if index_dir(runs_dir) is None:
        return [(flat_row(info), tuple(info.spec)) for info in read_runs(files, processes=processes)]
    flat, others = scan_flat(runs_dir, run_ids=files, reader=file_reader(None, processes),
                             listing=listing, drop_attrs=FILE_ATTRS)
    out = []
    for rid, path in files.items():
        got = flat.get(rid)
        if got is not None:
            _, status, row, keys = got
            row["run_id"] = rid
            row["status"] = status
            out.append((row, keys))
            continue
        info = _run_info(rid, path, others.get(rid), None)
        out.append((flat_row(info), tuple(info.spec)))
    return out


def file_reader(series: tuple[str, ...] | None = None, processes: int | None = None):
    """The ``reader`` for :func:`lcnrun.store.index.scan`: the files the index does not answer
    for, with ``series`` (and the kept ones) in the same open, in worker processes from
    :data:`PARALLEL_FROM` files on (a rebuild of the index of 100,000 runs uses every core)."""
    def reader(items: list[tuple[str, str]]) -> list:
        got = _read_many(items, series, processes, check_marks=False)
        return [RunFileError(path, g) if isinstance(g, str) else g
                for (_, path), g in zip(items, got)]
    return reader


def reader_context():
    """Start method for processes that only read run files: ``fork`` where there is one (a worker
    starts at once, with everything imported; this process runs no other threads and holds no
    open HDF5 file when it forks), else ``spawn`` (a worker re-imports lcnrun, ~0.5-1 s)."""
    from multiprocessing import get_context  # noqa: PLC0415  (start-up of status and summary)

    try:
        return get_context("fork")
    except ValueError:
        return get_context("spawn")


def _read_chunk(series: tuple[str, ...] | None, check_marks: bool, items: list[tuple[str, str]]) -> list:
    return [_read_one(path, series, check_marks) for _, path in items]


def _read_many(items: list[tuple[str, str]], series: tuple[str, ...] | None,
               processes: int | None, check_marks: bool = True) -> list:
    """:func:`_read_one` of each ``(run_id, path)``, in order, in worker processes from
    :data:`PARALLEL_FROM` files on (or ``processes`` > 1 given; ``processes=1``: here)."""
    if processes is None:  # worth it from a few thousand files (a worker starts in ~0.5 s)
        processes = available_cores() if len(items) >= PARALLEL_FROM else 1
    processes = max(1, min(processes, len(items)))
    body = functools.partial(_read_chunk, series, check_marks)
    if processes == 1:
        return body(items)
    size = math.ceil(len(items) / (processes * 4))
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415  (start-up of status, summary)

    with ProcessPoolExecutor(processes, mp_context=reader_context()) as pool:
        return [got for part in pool.map(body, chunks) for got in part]


def read_runs(files: dict[str, Path] | Iterable[tuple[str, Path]], *,
              processes: int | None = None, series: Iterable[str] | None = None) -> list[RunInfo]:
    """:class:`RunInfo` of each ``(run_id, path)``, in the given order (with the ``series`` read in
    the same open, if named).

    With :data:`PARALLEL_FROM` files or more (or ``processes`` > 1 given) the files are read in
    worker processes (``processes``: default the cores available); ``processes=1`` reads here.
    """
    items = [(rid, str(p)) for rid, p in (files.items() if isinstance(files, dict) else files)]
    got = _read_many(items, None if series is None else tuple(series), processes)
    series = None if series is None else tuple(series)
    return [_info(rid, path, g, series) for (rid, path), g in zip(items, got)]
