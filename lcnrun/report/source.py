"""What a report reads: an experiment's sweep points and run files, and their attributes, fast.

:func:`open_experiment` accepts what a researcher types: the experiment folder
(``results/<name>``), the spec file (then its folder under ``results``), a bare experiment name
(``results/<name>`` must exist) or any folder of run files. :func:`read_runs` reads the attributes
and the spec of many run files (never their arrays), in worker processes when there are many;
each run's resolved spec is flattened to dotted keys (``model.strides``, ``data.target.scale``).
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ..provenance import available_cores
from ..store.experiment import ExperimentDir, ManifestRow
from ..store.index import index_dir, run_file_stats, scan
from ..store.runfile import RunFileError, read_run_attrs

SPEC_SUFFIXES = (".yaml", ".yml")
PARALLEL_FROM = 2000  # read this many files or more in worker processes
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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


# -- flattening specs ------------------------------------------------------------------------------
def flatten(obj: Any, prefix: str = "", out: dict | None = None) -> dict[str, Any]:
    """Nested mappings -> ``{dotted.key: value}``; lists (and everything else) are values."""
    out = {} if out is None else out
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                flatten(v, key, out)
            else:
                out[key] = v
    elif prefix:
        out[prefix] = obj
    return out


@lru_cache(maxsize=8192)
def _block(text: str) -> tuple[tuple[str, Any], ...] | None:
    """One top-level entry of a YAML mapping, flattened; ``None`` if it is not exactly one."""
    try:
        value = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError:
        return None
    if not isinstance(value, dict) or len(value) != 1:
        return None
    return tuple(flatten(value).items())


def flatten_spec_text(text: str) -> dict[str, Any]:
    """A run file's resolved spec (YAML text) as ``{dotted.key: value}``.

    Fast for many runs of one sweep: the text is cut into its top-level entries (``model: ...``,
    ``data: ...``), each parsed once and cached, since runs of a sweep share most of them. Falls
    back to parsing the whole text if it is not laid out as one entry per unindented line.
    Values are shared between calls: treat them as read-only.
    """
    blocks: list[list[str]] = []
    for line in text.splitlines(keepends=True):
        if line[:1] not in ("", " ", "-", "\n", "#") and not line.startswith(("...", "---")):
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
        elif line.strip():
            blocks = []
            break
    out: dict[str, Any] = {}
    for lines in blocks:
        items = _block("".join(lines))
        if items is None:
            return flatten(yaml.load(text, Loader=_LOADER) or {})
        out.update(items)
    if not blocks and text.strip():
        return flatten(yaml.load(text, Loader=_LOADER) or {})
    return out


# -- reading many run files ------------------------------------------------------------------------
@dataclass
class RunInfo:
    """One run file as reports see it: ``attrs`` (every scalar, ``read_run_attrs`` names, without
    ``spec``), ``spec`` (flattened resolved spec), or ``error`` when the file is unreadable."""

    run_id: str
    path: Path
    attrs: dict[str, Any]
    spec: dict[str, Any]
    error: str = ""

    @property
    def status(self) -> str:
        return "unreadable" if self.error else str(self.attrs.get("status", ""))


def read_run_info(run_id: str, path: Path) -> RunInfo:
    try:
        attrs = read_run_attrs(path)
    except RunFileError as err:
        return RunInfo(run_id, Path(path), {"run_id": run_id, "status": "unreadable"}, {},
                       err.reason)
    text = attrs.pop("spec", "")
    try:
        spec = flatten_spec_text(text)
    except yaml.YAMLError as err:
        return RunInfo(run_id, Path(path), attrs, {}, f"its spec is not valid YAML ({err})")
    return RunInfo(run_id, Path(path), attrs, spec)


def scan_runs(runs_dir: os.PathLike | str, files: dict[str, Path], *,
              processes: int | None = None) -> list[RunInfo]:
    """:class:`RunInfo` of the run files ``files`` (``{run_id: path}``) of ``runs_dir``, in that
    order: from the run index of an experiment folder (:mod:`lcnrun.store.index`, the same answer
    as reading every file), else by :func:`read_runs`."""
    if index_dir(runs_dir) is None:
        return read_runs(files, processes=processes)
    known = scan(runs_dir, run_ids=files)
    out = []
    for rid, path in files.items():
        run = known.get(rid)
        if run is None:  # removed since it was listed: read it as before (it says so)
            out.append(read_run_info(rid, Path(path)))
        elif run.attrs is None:
            out.append(RunInfo(rid, path, {"run_id": rid, "status": "unreadable"}, {}, run.reason))
        else:
            try:
                spec = flatten_spec_text(run.spec or "")
            except yaml.YAMLError as err:
                out.append(RunInfo(rid, path, dict(run.attrs), {}, f"its spec is not valid YAML ({err})"))
                continue
            out.append(RunInfo(rid, path, dict(run.attrs), spec))
    return out


def reader_context():
    """Start method for processes that only read run files: ``fork`` where there is one (a worker
    starts at once, with everything imported; this process runs no other threads and holds no
    open HDF5 file when it forks), else ``spawn`` (a worker re-imports lcnrun, ~0.5-1 s)."""
    from multiprocessing import get_context  # noqa: PLC0415  (start-up of status and summary)

    try:
        return get_context("fork")
    except ValueError:
        return get_context("spawn")


def _read_chunk(items: list[tuple[str, str]]) -> list[RunInfo]:
    return [read_run_info(run_id, Path(path)) for run_id, path in items]


def read_runs(files: dict[str, Path] | Iterable[tuple[str, Path]], *,
              processes: int | None = None) -> list[RunInfo]:
    """:class:`RunInfo` of each ``(run_id, path)``, in the given order.

    With :data:`PARALLEL_FROM` files or more (or ``processes`` > 1 given) the files are read in
    worker processes (``processes``: default the cores available); ``processes=1`` reads here.
    """
    items = [(rid, str(p)) for rid, p in (files.items() if isinstance(files, dict) else files)]
    if processes is None:  # worth it from a few thousand files (a worker starts in ~0.5 s)
        processes = available_cores() if len(items) >= PARALLEL_FROM else 1
    processes = max(1, min(processes, len(items)))
    if processes == 1:
        return _read_chunk(items)
    size = math.ceil(len(items) / (processes * 4))
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415  (start-up of status, summary)

    with ProcessPoolExecutor(processes, mp_context=reader_context()) as pool:
        return [info for part in pool.map(_read_chunk, chunks) for info in part]
