"""Trajectory series of many runs at once (``Experiment.trajectories``, ``lcnrun plot``, the HTML
report): the runs' summary rows (spec keys, status, final figures; :mod:`.summary`) plus the few
named series of each run file, and nothing else (:func:`lcnrun.store.series.read_series`).

A series is named as stored under ``/trajectory`` (``loss``, ``grad_norm``, ``invariants``,
``rank_D``, ``params/layer_0`` ...); ``t`` is always read. Files are read in worker processes from
:data:`~lcnrun.report.source.PARALLEL_FROM` files on, like :func:`~lcnrun.report.source.read_runs`.
"""
from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..store.runfile import RunFileError
from ..store.series import read_series, series_names
from ..provenance import available_cores
from .source import PARALLEL_FROM, ExperimentSource, reader_context
from .summary import QueryError, Runs, load_runs, select_rows, varying_keys


@dataclass
class SeriesSet:
    """The selected runs and their series.

    ``rows``: the summary rows of the runs after the filters (``run_id``, ``index``, ``status``,
    every flattened spec key, ``final.*`` ...); ``series[i]``: ``{key: array}`` of ``rows[i]``'s
    run, each array of shape ``(T_i, ...)`` (empty for a run without a trajectory or an unreadable
    file); ``varying``: the spec keys that vary over the whole experiment; ``runs``: every row.
    """

    keys: list[str]
    rows: list[dict[str, Any]]
    series: list[dict[str, np.ndarray]]
    varying: list[str]
    runs: Runs
    unreadable: dict[str, str] = field(default_factory=dict)  # run id -> reason

    def with_series(self) -> list[tuple[dict[str, Any], dict[str, np.ndarray]]]:
        """``(row, series)`` of the runs that have every requested series."""
        return [(r, s) for r, s in zip(self.rows, self.series) if all(k in s for k in self.keys)]


def _read_one(keys: tuple[str, ...], item: tuple[str, str]) -> tuple[dict, str]:
    try:  # the scan listed these files and their marks, and read (or indexed) their attributes
        return read_series(item[1], keys, check_marks=False, known=True), ""
    except RunFileError as err:
        return {}, err.reason


def _read_chunk(keys: tuple[str, ...], items: list[tuple[str, str]]) -> list[tuple[dict, str]]:
    return [_read_one(keys, item) for item in items]


def read_many(items: Sequence[tuple[str, Path]], keys: Sequence[str], *,
              processes: int | None = None) -> list[tuple[dict[str, np.ndarray], str]]:
    """``(series, error)`` for each ``(run_id, path)``, in order (see the module docstring)."""
    items = [(rid, str(p)) for rid, p in items]
    keys = tuple(keys)
    if processes is None:
        processes = available_cores() if len(items) >= PARALLEL_FROM else 1
    processes = max(1, min(processes, len(items)))
    if processes == 1:
        return _read_chunk(keys, items)
    size = math.ceil(len(items) / (processes * 4))
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    with ProcessPoolExecutor(processes, mp_context=reader_context()) as pool:
        return [r for part in pool.map(functools.partial(_read_chunk, keys), chunks) for r in part]


def series_keys(keys: Sequence[str]) -> list[str]:
    """``t`` and ``keys``, each once: what is read of each file for these series."""
    return list(dict.fromkeys(["t", *keys]))


def load_series(source: ExperimentSource, keys: Sequence[str], *, filters: Sequence[str] = (),
                all_files: bool = False, processes: int | None = None,
                runs: Runs | None = None) -> SeriesSet:
    """``t`` and the series ``keys`` of every run of ``source`` that passes ``filters`` (the
    texts of ``lcnrun summary --filter``). ``runs``: rows already loaded (:func:`load_runs`,
    best with ``series=series_keys(keys)``). Each file is opened once: a run the index answers
    for has only its series read; one it does not was read with its attributes (``load_runs``).
    Raises :class:`QueryError` for a bad filter, or for a series that no selected run has (with
    the names the runs do have)."""
    keys = series_keys(keys)
    runs = runs if runs is not None else load_runs(source, all_files=all_files,
                                                   processes=processes, series=keys)
    rows = select_rows(runs, filters)
    files = runs.paths
    have = {rid: s for rid, (looked, s) in runs.series.items() if set(keys) <= set(looked)}
    chosen = [r for r in rows if r["run_id"] in files and r.get("status") != "unreadable"]
    todo = [r for r in chosen if r["run_id"] not in have]
    results = read_many([(r["run_id"], files[r["run_id"]]) for r in todo], keys,
                        processes=processes)
    by_id = {r["run_id"]: res for r, res in zip(todo, results)}
    by_id.update({rid: ({k: v for k, v in s.items() if k in keys}, "") for rid, s in have.items()})
    series = [by_id.get(r["run_id"], ({}, ""))[0] for r in rows]
    unreadable = {rid: err for rid, (_, err) in by_id.items() if err}
    out = SeriesSet(keys, rows, series, varying_keys(runs.rows, runs.spec_keys, runs.key_order),
                    runs, unreadable)
    for key in keys:
        if rows and not any(key in s for s in series):
            raise QueryError(f"no run has a trajectory series {key!r}{_hint(key, chosen, files)}")
    return out


def _hint(key: str, rows: list[dict], files: dict[str, str]) -> str:
    """The series names of the first run that has any, as a hint for a misspelled name."""
    for r in rows:
        try:
            names = series_names(files[r["run_id"]])
        except RunFileError:
            continue
        if names:
            near = difflib.get_close_matches(key, names, n=3)
            return (f" (did you mean {', '.join(near)}?)" if near else "") + \
                f"; run {r['run_id']} has: {', '.join(names)}"
    return ""
