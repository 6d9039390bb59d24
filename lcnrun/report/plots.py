"""Plots of many runs (``lcnrun plot``, ``Experiment.plot`` / ``.heatmap``, the HTML report).

- :func:`line_plot`: a trajectory series of every run over time (or over another series), drawn
  thin, with the median and a quantile band per value of a ``color`` key, one panel per value of a
  ``facet`` key. Runs of a group whose stored times differ are compared on a common grid of
  :data:`GRID_POINTS` times (linear interpolation, in ``log t`` on a log axis), each run counted only
  within its own time span. The x axis is logarithmic by default when every run's record grid is
  (``record.spacing: log``); the y axis when the values are positive and span more than
  :data:`LOG_SPAN` (a loss).
- :func:`heatmap`: a final figure (``final.loss``, ``diagnostics.<name>.<key>``) over two keys,
  the mean over the runs of each cell (the other keys: seeds ...), over its *finite* values, with
  the number of runs in each cell written in it; for phase diagrams.

Only what is drawn is read: the summary rows (attributes and spec) and, for a line plot, ``t`` and
the one series of each run (:mod:`.trajectories`). Figures are ``matplotlib.figure.Figure``
objects made without pyplot (no global state: thousands can be made in one process).
"""
from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..store.atomic import atomic_replace
from ..store.index import bulk
from .source import ExperimentSource
from .summary import (QueryError, Runs, _check_keys, _sort_key, known_keys, label, load_runs,
                      select_rows)
from .trajectories import load_series, series_keys

GRID_POINTS = 200
LEGEND_MAX = 12
LOG_SPAN = 1e3
FORMATS = (".png", ".pdf")
_COMPONENT_RE = re.compile(r"^(?P<name>[^\[\]]+)\[(?P<index>\d+(?:\s*,\s*\d+)*)\]$")


class PlotError(ValueError):
    """A plot that cannot be made as asked (an output file type, a series with components)."""


# -- labels and groups -----------------------------------------------------------------------------
def title(source: ExperimentSource) -> str:
    """The experiment's name (its folder's), or what was named for a bare folder of run files."""
    return source.xdir.root.name if source.xdir is not None else source.label


def _group_key(value: Any) -> str:
    """The identity of a key's value for grouping (``1`` and ``1.0`` apart, lists by content);
    numbers and strings without ``json.dumps`` (four look-ups per run of 10,000)."""
    kind = type(value)
    if kind is float:
        return repr(value)  # -0.0 apart from 0.0, as json.dumps keeps them
    if kind is int:
        return int.__repr__(value)
    if kind is str:
        return "s" + value  # no number's text starts with "s"
    return json.dumps(value, sort_keys=True, default=str)


def _ordered_values(rows: list[dict], key: str | None) -> list[Any]:
    """The distinct values of ``key`` over ``rows``, numbers in numeric order."""
    if key is None:
        return [None]
    seen: dict[str, Any] = {}
    for r in rows:
        seen.setdefault(_group_key(r.get(key)), r.get(key))
    return sorted(seen.values(), key=lambda v: (v is None, _sort_key(v) if v is not None else 0))


def _colors(values: list[Any], key: str | None) -> list:
    """Sequential colours for ordered numbers (learning rates, scales), categorical otherwise
    (and for seeds: their order means nothing)."""
    from matplotlib import colormaps  # noqa: PLC0415

    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric and len(values) > 2 and not (key or "").endswith("seed"):
        cmap = colormaps["viridis"]
        return [cmap(0.9 * i / (len(values) - 1)) for i in range(len(values))]
    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(len(values))]


# -- line plot -------------------------------------------------------------------------------------
def parse_series(name: str) -> tuple[str, tuple[int, ...] | None]:
    """``'loss'`` -> ``('loss', None)``; ``'invariants[0]'`` -> ``('invariants', (0,))``."""
    m = _COMPONENT_RE.match(name.strip())
    if m is None:
        return name.strip(), None
    return m["name"], tuple(int(i) for i in m["index"].split(","))


def _component(name: str, values: np.ndarray, index: tuple[int, ...] | None) -> np.ndarray:
    """The ``(T,)`` series to draw from a stored ``(T, ...)`` one."""
    values = np.asarray(values, dtype=float)
    if index is not None:
        try:
            return values[(slice(None), *index)].reshape(len(values))
        except (IndexError, ValueError):
            raise PlotError(f"{name}{list(index)}: the series has shape "
                            f"{values.shape[1:]} per stored time") from None
    if values.ndim > 1 and int(np.prod(values.shape[1:])) != 1:
        raise PlotError(f"{name} has {values.shape[1:]} values per stored time: pick one, e.g. "
                        f"'{name}[0]'")
    return values.reshape(len(values))


def _common_grid(xs: list[np.ndarray], log: bool) -> np.ndarray | None:
    """One grid for the runs of a group: their own times if they all share them, else
    :data:`GRID_POINTS` times over the span of all (``None`` if there is nothing to span)."""
    if _same_times(xs):
        return xs[0]
    finite = np.concatenate([x[np.isfinite(x) & ((x > 0) if log else True)] for x in xs])
    if not len(finite) or finite.min() == finite.max():
        return None
    lo, hi = finite.min(), finite.max()
    return np.geomspace(lo, hi, GRID_POINTS) if log else np.linspace(lo, hi, GRID_POINTS)


def _same_times(xs: list[np.ndarray]) -> bool:
    """Whether every run of a group has the very times of the first (one comparison of the
    stacked ``(runs, T)`` times, not one per run; a ``NaN`` time is never the same)."""
    first = xs[0]
    if any(len(x) != len(first) or x.ndim != 1 for x in xs):
        return False
    return bool((np.vstack(xs) == first).all()) if len(first) else True


def _on_grid(grid: np.ndarray, x: np.ndarray, y: np.ndarray, log: bool) -> np.ndarray:
    """``y(x)`` at ``grid``: itself if ``x`` is the grid, else interpolated (``NaN`` outside the
    run's span: a run is counted only where it was recorded)."""
    if len(x) == len(grid) and np.array_equal(x, grid):
        return y
    keep = np.isfinite(x) & np.isfinite(y) & ((x > 0) if log else True)
    if keep.sum() < 2:
        return np.full(len(grid), np.nan)
    xk, yk = x[keep], y[keep]
    order = np.argsort(xk, kind="stable")
    xk, yk = xk[order], yk[order]
    tx, tg = (np.log(xk), np.log(grid)) if log else (xk, grid)
    out = np.interp(tg, tx, yk)
    out[(grid < xk[0]) | (grid > xk[-1])] = np.nan
    return out


def _band(grid: np.ndarray, xs: list[np.ndarray], ys: list[np.ndarray], log: bool, q: float):
    """Median and the ``q``, ``1 - q`` quantiles over the runs at each grid time."""
    if len(grid) == len(xs[0]) and _same_times(xs) and np.array_equal(xs[0], grid):
        stack = np.vstack(ys).astype(float, copy=True)  # every run on the grid: no interpolation
    else:
        stack = np.vstack([_on_grid(grid, x, y, log) for x, y in zip(xs, ys)])
    stack[~np.isfinite(stack)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no run recorded there
        lo, med, hi = np.nanquantile(stack, [q, 0.5, 1 - q], axis=0)
    return med, lo, hi


def _auto_log(values: list[np.ndarray]) -> bool:
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
    return bool(len(finite)) and finite.min() > 0 and finite.max() / finite.min() > LOG_SPAN


@bulk()  # 10,000 runs' arrays, paths and rows: no cyclic GC walking them meanwhile
def line_plot(source: ExperimentSource, y: str = "loss", *, x: str = "t",
              color: str | None = None, facet: str | None = None, logx: bool | None = None,
              logy: bool | None = None, filters: Sequence[str] = (), band: float = 0.25,
              processes: int | None = None, runs: Runs | None = None):
    """Every run's series ``y`` over ``x`` (see the module docstring); ``band``: the quantiles
    ``band`` and ``1 - band`` shaded around the median (0.25: the interquartile range).
    ``logx`` / ``logy``: ``None`` decides as the module docstring says; ``runs``: the rows if
    already loaded. Returns the Figure. Raises :class:`QueryError` (unknown key or series) or
    :class:`PlotError`."""
    from matplotlib.collections import LineCollection  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    if not 0 <= band < 0.5:
        raise PlotError(f"band {band}: expected a quantile in [0, 0.5)")
    y_name, y_index = parse_series(y)
    x_name, x_index = parse_series(x)
    runs = runs if runs is not None else load_runs(source, processes=processes,
                                                   series=series_keys([y_name, x_name]))
    known = known_keys(runs)
    for key, what in ((color, "--color"), (facet, "--facet")):
        if key is not None:
            _check_keys([key], known, what)
    got = load_series(source, [y_name, x_name], filters=filters, processes=processes, runs=runs)
    pairs = got.with_series()
    if not pairs:
        raise QueryError(f"{source.label}: no run{' passes the filters and' if filters else ''} "
                         f"has the series {y_name!r}")
    curves = [(r, _component(x_name, s[x_name], x_index), _component(y_name, s[y_name], y_index))
              for r, s in pairs]
    if logx is None:
        logx = x_name == "t" and all(r.get("record.spacing") == "log" for r, _, _ in curves)
    if logy is None:
        logy = _auto_log([c[2] for c in curves])

    rows = [c[0] for c in curves]
    facets = _ordered_values(rows, facet)
    hues = _ordered_values(rows, color)
    hue_colors = dict(zip(map(_group_key, hues), _colors(hues, color)))
    groups: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    for r, cx, cy in curves:  # one pass: thousands of runs, hundreds of values
        groups.setdefault((_group_key(r.get(facet)) if facet else "",
                           _group_key(r.get(color)) if color else ""), []).append((cx, cy))
    ncols = min(len(facets), 3)
    nrows = math.ceil(len(facets) / ncols)
    fig = Figure(figsize=(5.2 * ncols + (1.6 if color else 0), 3.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    for ax in axes[len(facets):]:
        ax.set_visible(False)
    alpha = float(np.clip(4.0 / max(1, len(curves) / max(1, len(hues))), 0.04, 0.35))
    for ax, fv in zip(axes, facets):
        ax.set_xscale("log" if logx else "linear")  # first: the thin lines are drawn scaled
        ax.set_yscale("log" if logy else "linear")
        thin, colours = [], []
        for hv in hues:
            members = groups.get((_group_key(fv) if facet else "",
                                  _group_key(hv) if color else ""), [])
            if not members:
                continue
            rgba = hue_colors[_group_key(hv)]
            thin += members
            colours += [rgba] * len(members)
            grid = _common_grid([cx for cx, _ in members], logx)
            if grid is not None and len(members) > 1:
                med, lo, hi = _band(grid, [m[0] for m in members], [m[1] for m in members],
                                    logx, band)
                if band > 0:
                    ax.fill_between(grid, lo, hi, color=rgba, alpha=0.25, linewidth=0, zorder=2)
                ax.plot(grid, med, color=rgba, linewidth=2.0, zorder=3,
                        label=f"{label(hv)} (n={len(members)})" if color else "median")
            else:
                ax.plot(members[0][0], members[0][1], color=rgba, linewidth=2.0, zorder=3,
                        label=f"{label(hv)} (n=1)" if color else "median")
        # every run thin, behind the medians: one artist per panel however many runs
        _thin_lines(ax, thin, colours, alpha, LineCollection)
        if facet is not None:
            ax.set_title(f"{facet} = {label(fv)}", fontsize=10)
        ax.autoscale_view()
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[(nrows - 1) * ncols:]:
        ax.set_xlabel(x)
    for ax in axes[::ncols]:
        ax.set_ylabel(y)
    what = (f"median and {band:g}-{1 - band:g} quantiles" if band > 0 else "median")
    fig.suptitle(f"{title(source)}: {y} of {len(curves)} run{'s' if len(curves) != 1 else ''} "
                 f"({what})", fontsize=10, x=0.01, ha="left")
    if color is not None:
        _legend(fig, color, hues, hue_colors, rows)
    else:
        axes[0].legend(fontsize=8)
    return fig


def _thin_lines(ax, curves: list[tuple[np.ndarray, np.ndarray]], colours: list, alpha: float,
                line_collection) -> None:
    """The ``(x, y)`` curves as one ``LineCollection`` of ``ax``, behind everything else.

    Drawn as matplotlib would draw them in data coordinates, only faster: the axes' scale (the
    log of a log axis, non-positive values clipped as matplotlib clips them) is applied once to
    all points together, and the collection is drawn through the affine rest of ``transData``
    (``transLimits + transAxes``: the view limits and the axes box, both live). Through
    ``transData`` matplotlib scales each of 10,000 paths apart, twice per save. The data limits
    are the curves' finite points, as ``add_collection`` would take them; the lines are clipped
    to the axes, so they take no part in the layout."""
    if not curves:
        return
    lengths = [len(cx) for cx, _ in curves]
    points = np.column_stack([np.concatenate([cx for cx, _ in curves]),
                              np.concatenate([cy for _, cy in curves])]).astype(float)
    scaled = ax.transScale.transform(points)
    segments = np.split(scaled, np.cumsum(lengths)[:-1])
    lines = line_collection(segments, colors=colours, linewidths=0.6, alpha=alpha, zorder=1,
                            transform=ax.transLimits + ax.transAxes)
    lines.set_in_layout(False)
    ax.add_collection(lines, autolim=False)
    finite = points[np.isfinite(points).all(axis=1)]
    if len(finite):
        ax.update_datalim(finite)


def _legend(fig, color: str, hues: list, hue_colors: dict, rows: list[dict]) -> None:
    """One legend for all panels, the number of runs of each colour; at most
    :data:`LEGEND_MAX` entries (evenly spread over the sorted values) when there are more."""
    from matplotlib.lines import Line2D  # noqa: PLC0415

    counts: dict[str, int] = {}
    for r in rows:
        counts[_group_key(r.get(color))] = counts.get(_group_key(r.get(color)), 0) + 1
    shown = hues if len(hues) <= LEGEND_MAX else \
        [hues[i] for i in np.linspace(0, len(hues) - 1, LEGEND_MAX).round().astype(int)]
    handles = [Line2D([], [], color=hue_colors[_group_key(v)], linewidth=2.0) for v in shown]
    labels = [f"{label(v)} (n={counts[_group_key(v)]})" for v in shown]
    title_text = color if len(shown) == len(hues) else f"{color}\n({len(shown)} of {len(hues)} values)"
    fig.legend(handles, labels, title=title_text, loc="outside right upper", fontsize=8,
               title_fontsize=9)


# -- heatmap ---------------------------------------------------------------------------------------
@bulk()
def heatmap(source: ExperimentSource, figure: str, x: str, y: str, *,
            filters: Sequence[str] = (), logc: bool | None = None, processes: int | None = None):
    """The mean of ``figure`` over the runs of each ``(x, y)`` cell (finite values only), with
    the number of runs written in each cell (and how many were finite, when not all). Returns
    the Figure. Raises :class:`QueryError` for an unknown key."""
    from matplotlib import colormaps  # noqa: PLC0415
    from matplotlib.colors import LogNorm, Normalize  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    runs = load_runs(source, processes=processes)
    known = known_keys(runs)
    _check_keys([figure], known, "--heatmap")
    _check_keys([x], known, "--x")
    _check_keys([y], known, "--y")
    rows = select_rows(runs, filters, known)
    if not rows:
        raise QueryError(f"{source.label}: no run passes the filters")
    xs, ys = _ordered_values(rows, x), _ordered_values(rows, y)
    xi = {_group_key(v): i for i, v in enumerate(xs)}
    yi = {_group_key(v): i for i, v in enumerate(ys)}
    cells: dict[tuple[int, int], list[Any]] = {}
    for r in rows:
        cells.setdefault((yi[_group_key(r.get(y))], xi[_group_key(r.get(x))]), []).append(
            r.get(figure))
    mean = np.full((len(ys), len(xs)), np.nan)
    count = np.zeros((len(ys), len(xs)), dtype=int)
    finite = np.zeros((len(ys), len(xs)), dtype=int)
    for (i, j), values in cells.items():
        good = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
                and math.isfinite(v)]
        count[i, j] = len(values)
        finite[i, j] = len(good)
        if good:
            mean[i, j] = math.fsum(good) / len(good)
    shown = mean[np.isfinite(mean)]
    if logc is None:
        logc = bool(len(shown)) and shown.min() > 0 and shown.max() / shown.min() > 100
    if logc and len(shown) and shown.min() <= 0:
        raise PlotError(f"a log colour scale needs positive values; {figure} has {shown.min():g}")
    norm = (LogNorm(shown.min(), shown.max()) if logc and len(shown)
            else Normalize(*(shown.min(), shown.max()) if len(shown) else (0, 1)))
    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    fig = Figure(figsize=(max(4.5, 0.9 * len(xs) + 2.5), max(3.5, 0.6 * len(ys) + 1.8)),
                 layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(mean), cmap=cmap, norm=norm, origin="lower",
                      aspect="auto")
    fig.colorbar(image, ax=ax, label=f"mean {figure}")
    ax.set_xticks(range(len(xs)), [label(v) for v in xs], rotation=45 if len(xs) > 6 else 0)
    ax.set_yticks(range(len(ys)), [label(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if mean.size <= 400:
        size = 8 if mean.size <= 64 else 6
        for i in range(len(ys)):
            for j in range(len(xs)):
                if not count[i, j]:
                    continue
                text = f"n={count[i, j]}" if finite[i, j] == count[i, j] \
                    else f"n={count[i, j]} ({finite[i, j]} finite)"
                if np.isfinite(mean[i, j]):
                    text = f"{mean[i, j]:.3g}\n{text}"
                dark = np.isfinite(mean[i, j]) and norm(mean[i, j]) < 0.5
                ax.text(j, i, text, ha="center", va="center", fontsize=size,
                        color="white" if dark else "black")
    fig.suptitle(f"{title(source)}: mean {figure} over {len(rows)} runs", fontsize=11)
    return fig


# -- output ----------------------------------------------------------------------------------------
def safe_name(text: str) -> str:
    """A file name part from a key or series name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "plot"


def default_path(source: ExperimentSource, stem: str) -> Path:
    """``<experiment folder>/plots/<stem>.png`` (for a bare folder of run files: in it)."""
    root = source.xdir.root if source.xdir is not None else source.runs_dir
    return root / "plots" / f"{safe_name(stem)}.png"


@bulk()  # drawing 10,000 paths makes as many objects: no GC pass over them
def save(fig, path: str | os.PathLike) -> Path:
    """Save ``fig`` as PNG or PDF (by the suffix), creating the folder; returns the path."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise PlotError(f"{path}: the output must end in .png or .pdf")
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lower()[1:]
    with atomic_replace(path, fsync=False) as tmp:  # a reader never sees half an image
        fig.savefig(tmp, format=fmt, dpi=150 if fmt == "png" else "figure")
    return path
