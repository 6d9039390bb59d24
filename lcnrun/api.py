"""The Python API, for notebooks and scripts (docs/analysis.md)::

    import lcnrun
    exp = lcnrun.open("results/strides")          # a folder, a spec file or a name
    exp.summary(filter="final.loss<1e-3")          # DataFrame: the rows of `lcnrun summary --csv`
    exp.trajectories("loss", "grad_norm")          # tidy DataFrame: run_id, t, series, varying keys
    r = exp.run("3f2a9c0d1b7e")                    # or exp.run(0) (sweep index), exp.runs()
    r.spec, r.status, r.final, r.diagnostics, r.provenance
    r.trajectory                                   # xarray.Dataset, coordinate t
    lcnrun.run({"name": ..., "model": ...})        # runs in-process, returns the Run

The API sits at the top, beside the CLI: it reads through :mod:`lcnrun.report` and
:mod:`lcnrun.store` and runs through :mod:`lcnrun.workflow`, as the CLI verbs do, so a table, a
plot or a run file is the same from either. Everything heavy (pandas, xarray, h5py, matplotlib,
the numerical core) is imported when first needed: ``import lcnrun`` stays cheap.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas
    import xarray
    from matplotlib.figure import Figure

    from .report.source import ExperimentSource
    from .store.runfile import RunData

__all__ = ["Experiment", "Run", "open", "run"]

Filters = str | Sequence[str] | None


def _texts(value: str | Sequence[str] | None) -> list[str]:
    """A filter / key argument: one text, several, or none -> a list of texts."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


# -- opening an experiment -------------------------------------------------------------------------
def open(target: str | os.PathLike, results: str | os.PathLike = "results") -> Experiment:  # noqa: A001
    """An experiment to analyse: ``target`` is its folder (``results/strides``), its spec file
    (``experiments/strides.yaml``: the folder ``<results>/<name>``) or its name (``strides``:
    ``<results>/strides``), or any folder of run files.

    Raises ``ValueError`` (:class:`lcnrun.report.source.SourceError`) for a path that is none of
    these and :class:`lcnrun.spec.SpecError` for an invalid spec file.

    >>> exp = lcnrun.open("results/quickstart")
    """
    from .report.source import open_experiment  # noqa: PLC0415

    return Experiment(open_experiment(target, results))


class Experiment:
    """The runs of one experiment. Every call reads the files anew (a sweep may still be
    writing them); nothing is cached between calls."""

    def __init__(self, source: ExperimentSource):
        self.source = source

    def __repr__(self) -> str:
        n = len(self.source.points) if self.source.points is not None else len(self.run_ids)
        return f"<lcnrun.Experiment {self.label!r}: {n} run{'s' if n != 1 else ''}>"

    @property
    def label(self) -> str:
        """What it was opened with."""
        return self.source.label

    @property
    def root(self) -> Path:
        """The experiment folder (``results/<name>``), or the folder of run files."""
        return self.source.xdir.root if self.source.xdir is not None else self.source.runs_dir

    @property
    def run_ids(self) -> list[str]:
        """The run ids of its sweep points in index order (or of the run files, sorted, for a
        folder without a sweep)."""
        if self.source.points is not None:
            return [p.run_id for p in self.source.points]
        return list(self.source.run_files())

    def __len__(self) -> int:
        return len(self.run_ids)

    def status(self) -> dict[str, int]:
        """``{state: number of points}`` as ``lcnrun status`` counts them (``completed``,
        ``failed``, ``pending`` ...; states without points left out).

        >>> exp.status()
        {'completed': 12}
        """
        from .report.status import experiment_status, scheduler_states  # noqa: PLC0415
        from .schedule.slurm.probe import slurm_states  # noqa: PLC0415

        live, _ = scheduler_states(self.source, [slurm_states])
        return experiment_status(self.source, scheduler=live).counts()

    def summary(self, filter: Filters = None, *, sort: str | Sequence[str] | None = None,  # noqa: A002
                reverse: bool = False, group_by: str | Sequence[str] | None = None,
                columns: str | Sequence[str] | None = None, all_files: bool = False,
                jobs: int | None = None) -> pandas.DataFrame:
        """One row per run (or per group), the columns and values of ``lcnrun summary --csv``
        with the same options: the same function computes both
        (:func:`lcnrun.report.summary.summary_table`).

        ``filter``: ``"KEY OP VALUE"`` texts, all must hold (``"final.loss<1e-3"``,
        ``"model.strides==[2, 2, 1]"``); ``sort``, ``group_by``, ``columns``: keys (``columns``
        also ``"+KEY"`` to add one, ``"all"``). A list value (``model.strides``) is a Python list;
        a missing value is ``NaN`` in a numeric column, ``None`` elsewhere. Raises ``ValueError``
        (:class:`lcnrun.report.summary.QueryError`) for a bad filter or an unknown key.

        >>> exp.summary(filter="status==completed", sort="final.loss").head()
        >>> exp.summary(group_by="model.strides")    # mean, std, min, max, count over the seeds
        """
        from .report.summary import summary_table, to_frame  # noqa: PLC0415

        table = summary_table(self.source, filters=_texts(filter), sort=_texts(sort),
                              reverse=reverse, group_by=_texts(group_by),
                              columns=_texts(columns) or None, all_files=all_files,
                              processes=jobs)
        return to_frame(table)

    def trajectories(self, *series: str, filter: Filters = None,  # noqa: A002
                     keys: str | Sequence[str] | None = None, all_files: bool = False,
                     jobs: int | None = None) -> pandas.DataFrame:
        """A tidy DataFrame of the series of every run (default ``loss``), one row per run and
        stored time: ``run_id``, ``t``, each series, then the spec keys that vary over the
        experiment (``keys``: other row keys instead, e.g. ``["model.strides", "final.loss"]``).

        A series of shape ``(T,)`` is one column; one of shape ``(T, n)`` (``invariants``,
        ``end_to_end``, ``params/layer_0`` ...) gives columns ``name[0] .. name[n-1]`` (``name[i,j]``
        for more axes). List values of keys are tuples (hashable: seaborn's ``hue`` takes them).
        Runs without the series (failed before their first step) are left out. Only ``t`` and the
        named series are read from each file.

        >>> df = exp.trajectories("loss", "grad_norm", filter="status==completed")
        >>> import seaborn as sns; sns.lineplot(df, x="t", y="loss", hue="model.strides")
        """
        import numpy as np  # noqa: PLC0415
        import pandas as pd  # noqa: PLC0415

        from .report.trajectories import load_series  # noqa: PLC0415

        names = list(series) or ["loss"]
        got = load_series(self.source, names, filters=_texts(filter), all_files=all_files,
                          processes=jobs)
        key_cols = _texts(keys) if keys is not None else got.varying
        pairs = got.with_series()
        lengths = np.array([len(s["t"]) for _, s in pairs], dtype=np.int64)
        total = int(lengths.sum())
        columns: dict[str, Any] = {
            "run_id": np.repeat(np.array([r["run_id"] for r, _ in pairs], dtype=object), lengths),
            "t": np.concatenate([np.asarray(s["t"], dtype=float) for _, s in pairs])
            if pairs else np.zeros(0)}
        for name in names:
            if name == "t":
                continue
            parts: dict[str, list[np.ndarray]] = {}
            for i, (_, s) in enumerate(pairs):
                for col, values in _components(name, np.asarray(s[name])).items():
                    parts.setdefault(col, [None] * len(pairs))[i] = values
            if not parts:  # no run selected: the column is there, empty
                columns[name] = np.zeros(0)
            for col, per_run in parts.items():
                columns[col] = np.concatenate([
                    v if v is not None else np.full(n, np.nan) for v, n in zip(per_run, lengths)
                ]) if pairs else np.zeros(0)
        for key in key_cols:
            values = np.empty(len(pairs), dtype=object)
            for i, (r, _) in enumerate(pairs):
                values[i] = _hashable(r.get(key))
            columns[key] = pd.Series(np.repeat(values, lengths)).infer_objects()
        frame = pd.DataFrame({k: (v.to_numpy() if isinstance(v, pd.Series) else v)
                              for k, v in columns.items()}, index=pd.RangeIndex(total))
        return frame.infer_objects()

    def runs(self, filter: Filters = None) -> list[Run]:  # noqa: A002
        """The runs (those passing ``filter``, as in :meth:`summary`) in index order, each a
        :class:`Run` that reads its file when asked.

        >>> [r.final["loss"] for r in exp.runs(filter="status==completed")]
        """
        from .report.summary import load_runs, select_rows  # noqa: PLC0415

        files = self.source.run_files()
        rows = select_rows(load_runs(self.source), _texts(filter))
        return [Run(files[r["run_id"]], r["run_id"], r.get("index")) for r in rows
                if r["run_id"] in files]

    def run(self, which: str | int) -> Run:
        """One run: by run id (``"3f2a9c0d1b7e"``) or by its sweep index (``0``). Raises
        ``KeyError`` naming what exists.

        >>> r = exp.run(0); r.status, r.final["loss"]
        """
        files = self.source.run_files()
        if isinstance(which, int) and not isinstance(which, bool):
            points = self.source.points
            if points is None:
                raise KeyError(f"{self.label} has no sweep points: name a run by its id "
                               f"({', '.join(list(files)[:5])} ...)")
            by_index = {p.index: p.run_id for p in points}
            if which not in by_index:
                raise KeyError(f"{self.label} has sweep points 0..{len(points) - 1}, not {which}")
            run_id, index = by_index[which], which
        else:
            run_id, index = str(which), self.source.index_of.get(str(which))
        if run_id not in files:
            known = "a sweep point without a run file yet (pending)" \
                if run_id in self.source.index_of else "no run of this experiment"
            raise KeyError(f"{self.label}: {run_id} is {known}")
        return Run(files[run_id], run_id, index)

    def plot(self, y: str = "loss", *, x: str = "t", color: str | None = None,
             facet: str | None = None, logx: bool | None = None, logy: bool | None = None,
             filter: Filters = None, band: float = 0.25, out: str | os.PathLike | None = None,  # noqa: A002
             jobs: int | None = None) -> Figure:
        """What ``lcnrun plot DIR --y Y ...`` draws: every run's series ``y`` over ``x`` (thin),
        the median and the ``band .. 1-band`` quantiles per value of ``color``, one panel per
        value of ``facet``; ``out``: also save it (PNG or PDF by suffix). Returns the
        ``matplotlib.figure.Figure``.

        >>> exp.plot("loss", color="model.strides", out="loss.png")
        """
        from .report.plots import line_plot, save  # noqa: PLC0415

        fig = line_plot(self.source, y, x=x, color=color, facet=facet, logx=logx, logy=logy,
                        filters=_texts(filter), band=band, processes=jobs)
        if out is not None:
            save(fig, out)
        return fig

    def heatmap(self, figure: str, x: str, y: str, *, filter: Filters = None,  # noqa: A002
                logc: bool | None = None, out: str | os.PathLike | None = None) -> Figure:
        """What ``lcnrun plot DIR --heatmap FIGURE --x X --y Y`` draws: the mean of ``figure``
        (``final.loss``, a diagnostic scalar ...) over the runs of each ``(x, y)`` cell, the
        count of runs in each cell shown.

        >>> exp.heatmap("final.loss", x="dynamics.lr", y="init.scale")
        """
        from .report.plots import heatmap, save  # noqa: PLC0415

        fig = heatmap(self.source, figure, x, y, filters=_texts(filter), logc=logc)
        if out is not None:
            save(fig, out)
        return fig

    def report(self, out: str | os.PathLike | None = None) -> Path:
        """Write the HTML report ``lcnrun report`` writes (default ``<folder>/report.html``);
        returns its path."""
        from .report.html import write_report  # noqa: PLC0415
        from .schedule.slurm.probe import slurm_states  # noqa: PLC0415

        return write_report(self.source, out, probes=[slurm_states])


def _components(name: str, values) -> dict[str, Any]:
    """A series ``(T, ...)`` as columns: itself if ``(T,)``, else ``name[i]`` / ``name[i,j]``."""
    if values.ndim <= 1:
        return {name: values.reshape(-1)}
    flat = values.reshape(values.shape[0], -1)
    import numpy as np  # noqa: PLC0415

    labels = [",".join(map(str, idx)) for idx in np.ndindex(*values.shape[1:])]
    return {f"{name}[{label}]": flat[:, i] for i, label in enumerate(labels)}


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


# -- one run ---------------------------------------------------------------------------------------
class Run:
    """One run file, read when first asked (the attributes and the spec first; the arrays only
    for :attr:`final`, :attr:`diagnostics`, :attr:`trajectory`, :attr:`provenance`)."""

    def __init__(self, path: str | os.PathLike, run_id: str | None = None,
                 index: int | None = None):
        self.path = Path(path)
        self.run_id = run_id if run_id is not None else self.path.stem
        self.index = index
        self._attrs: dict | None = None
        self._data: RunData | None = None

    def __repr__(self) -> str:
        where = f" #{self.index}" if self.index is not None else ""
        return f"<lcnrun.Run {self.run_id}{where} {self.status}>"

    @property
    def attrs(self) -> dict[str, Any]:
        """Every scalar of the file under the names ``lcnrun summary`` uses (``status``,
        ``message``, ``final.loss``, ``diagnostics.<name>.<key>`` ...)."""
        if self._attrs is None:
            from .store.runfile import read_run_attrs  # noqa: PLC0415

            self._attrs = read_run_attrs(self.path)
        return self._attrs

    @property
    def data(self) -> RunData:
        """The whole file (:class:`lcnrun.store.runfile.RunData`: arrays as numpy arrays)."""
        if self._data is None:
            from .store.runfile import read_run  # noqa: PLC0415

            self._data = read_run(self.path)
        return self._data

    @property
    def status(self) -> str:
        """``completed``, ``diverged``, ``failed`` or ``stopped``."""
        return str(self.attrs["status"])

    @property
    def message(self) -> str:
        """Why it did not complete (empty for a completed run)."""
        return str(self.attrs.get("message", "") or "")

    @property
    def spec(self) -> dict[str, Any]:
        """The resolved run spec (every default filled in) as nested dicts: ``r.spec["model"]``."""
        import yaml  # noqa: PLC0415

        return yaml.safe_load(self.attrs["spec"]) or {}

    @property
    def final(self) -> dict[str, Any]:
        """The last state: scalar figures (``loss``, ``grad_norm``, ``t``, ``invariant_drift``,
        ``n_steps`` ...) and arrays (``end_to_end``, ``params/layer_0`` ...), by name."""
        return {**self.data.final_attrs, **self.data.final_arrays}

    @property
    def diagnostics(self) -> dict[str, dict[str, Any]]:
        """``{diagnostic name: {key: scalar or array}}``."""
        return {name: {**parts.get("scalars", {}), **parts.get("arrays", {})}
                for name, parts in self.data.diagnostics.items()}

    @property
    def provenance(self) -> dict[str, Any]:
        """Git commit and dirty flag, package versions, host, UTC start and end, seeds, BLAS
        threads, Slurm ids, error text."""
        return dict(self.data.provenance)

    @property
    def trajectory(self) -> xarray.Dataset:
        """The stored trajectory as an ``xarray.Dataset``: coordinate ``t`` (stored times), one
        variable per series (``loss``, ``grad_norm``, ``end_to_end``, ``invariants``, ``rank_D``
        ...; the parameters as ``layer_0 .. layer_{L-1}``), first dimension ``t`` and further
        dimensions ``<name>_dim_0 ...``. Attributes: ``run_id``, ``status``.

        >>> r.trajectory.loss.plot(xscale="log", yscale="log")
        """
        import xarray as xr  # noqa: PLC0415

        series = dict(self.data.trajectory)
        t = series.pop("t", None)
        variables = {}
        for key, values in series.items():
            name = key.split("/", 1)[1] if key.startswith("params/") else key.replace("/", "_")
            along_t = t is not None and values.ndim >= 1 and values.shape[0] == len(t)
            extra = [f"{name}_dim_{i}" for i in range(values.ndim - (1 if along_t else 0))]
            variables[name] = ((["t"] if along_t else []) + extra, values)
        coords = {"t": t} if t is not None else {}
        return xr.Dataset(variables, coords=coords,
                          attrs={"run_id": self.run_id, "status": self.status})


# -- running ---------------------------------------------------------------------------------------
def run(spec: Mapping[str, Any] | str | os.PathLike, *, index: int | None = None,
        results: str | os.PathLike = "results", force: bool = False) -> Run:
    """Run a spec here, in this process, and return its :class:`Run`: what ``lcnrun run`` does,
    the same run id and the same file (``<results>/<name>/runs/<run_id>.h5``, with
    ``experiment.yaml`` and ``manifest.tsv``). A completed run file is kept, not recomputed,
    unless ``force``.

    ``spec``: a dict (as the YAML would read), YAML text, or the path of a spec file; paths inside
    a dict or text are relative to the working directory. A sweep needs ``index`` (0-based).
    Raises :class:`lcnrun.spec.SpecError` for an invalid spec, ``ValueError`` for a bad index.

    >>> r = lcnrun.run(\"\"\"
    ... name: one
    ... model: {kind: lcn, filters: [3, 2], strides: [2, 1]}
    ... data: {kind: gaussian, n_samples: 8, input_size: 12, seed: 0}
    ... dynamics: {kind: gradient_descent, lr: 0.01, steps: 100}
    ... \"\"\")
    """
    import yaml  # noqa: PLC0415

    from . import workflow  # noqa: PLC0415
    from .spec import load_experiment, load_experiment_text  # noqa: PLC0415

    if isinstance(spec, Mapping):
        text = yaml.safe_dump(_plain(spec), sort_keys=False, allow_unicode=True)
        exp = load_experiment_text(text, file="<spec dict>")
    elif isinstance(spec, os.PathLike) or (isinstance(spec, str) and "\n" not in spec
                                           and spec.strip().endswith((".yaml", ".yml"))):
        text = Path(spec).read_text(encoding="utf-8") if Path(spec).is_file() else None
        exp = load_experiment(spec)
    elif isinstance(spec, str):
        text = spec
        exp = load_experiment_text(text, file="<spec text>")
    else:
        raise TypeError(f"spec must be a dict, YAML text or a spec file path, not "
                        f"{type(spec).__name__}")
    n = len(exp.points)
    if index is None:
        if n != 1:
            raise ValueError(f"the spec has {n} sweep points: pick one with index=I (0..{n - 1})")
        index = 0
    if not 0 <= index < n:
        raise ValueError(f"index {index} is out of range: the spec has {n} points (0..{n - 1})")
    point = exp.points[index]
    xdir = workflow.prepare(exp, Path(results), spec_text=text)
    workflow.run_point(exp, xdir, point, force=force)  # under the run's claim
    return Run(xdir.run_path(point.run_id), point.run_id, point.index)


def _plain(value: Any) -> Any:
    """A dict from a notebook as YAML can write it: tuples as lists, numpy scalars as numbers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (TypeError, ValueError):
            return value
    return value

