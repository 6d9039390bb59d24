"""``lcnrun report DIR``: one self-contained HTML file per experiment (no server, no network: the
images are embedded, the script and style inline), to open on a laptop or a cluster login node.

It holds, in order: the status counts (:mod:`.status`), the default plots (:data:`DEFAULT_PLOTS`
over time, coloured by the first spec key that varies over at most 12 values: :func:`colour_key`;
:mod:`.plots`), the summary table (the
columns of ``lcnrun summary``, sortable by a click on a column's header, filtered by the text
typed in the box above it), the messages of the runs that did not complete (each with an anchor
``#run-<run_id>``, linked from its row's status) and the experiment's spec as written.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from ..store.atomic import atomic_write_text
from .plots import LEGEND_MAX, PlotError, line_plot, title
from .source import ExperimentSource
from .status import experiment_status, scheduler_states
from .summary import QueryError, label, load_runs, summarize
from .trajectories import series_keys

DEFAULT_PLOTS = ("loss", "grad_norm")
REPORT_NAME = "report.html"


def default_path(source: ExperimentSource) -> Path:
    """``results/<name>/report.html`` (for a bare folder of run files: in it)."""
    root = source.xdir.root if source.xdir is not None else source.runs_dir
    return root / REPORT_NAME


def colour_key(rows: list[dict], varying: list[str]) -> str | None:
    """The key the default plots are coloured by: the first varying key with at most
    :data:`~lcnrun.report.plots.LEGEND_MAX` values (a sweep over 500 seeds is coloured by the
    next key, or not at all)."""
    for key in varying:
        if len({json.dumps(r.get(key), sort_keys=True, default=str) for r in rows}) <= LEGEND_MAX:
            return key
    return None


def _sort_value(value: Any) -> str | None:
    """The ``data-n`` attribute of a numeric cell: what the page sorts by (full precision)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _spec_text(source: ExperimentSource) -> str:
    for path in ([source.xdir.experiment_yaml] if source.xdir is not None else []) + \
            ([Path(source.label)] if Path(source.label).is_file() else []):
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    return ""


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.meta { color: #666; font-size: 0.9em; }
.counts td, .counts th { padding: 0.2em 0.8em; text-align: right; }
.counts th { text-align: left; }
.completed { color: #1a7f37; } .diverged, .failed, .unreadable { color: #c62828; }
.stopped { color: #b26a00; } .running, .queued { color: #0b7285; } .pending { color: #777; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.4em 0.4em 0 0; }
#summary { border-collapse: collapse; font-size: 0.85em; }
#summary th, #summary td { border: 1px solid #ddd; padding: 0.2em 0.5em; white-space: nowrap; }
#summary th { background: #f3f3f3; cursor: pointer; position: sticky; top: 0; }
#summary th[aria-sort=ascending]::after { content: " \\25B2"; }
#summary th[aria-sort=descending]::after { content: " \\25BC"; }
#summary td.num { text-align: right; font-variant-numeric: tabular-nums; }
#filter { width: 28em; padding: 0.3em; margin-bottom: 0.5em; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; }
.failure { margin-bottom: 1em; } .failure:target { outline: 2px solid #c62828; }
"""

SCRIPT = """
(function () {
  var table = document.getElementById('summary');
  if (!table) { return; }
  var body = table.tBodies[0];
  var shown = document.getElementById('shown');
  function key(cell) {
    var n = cell.getAttribute('data-n');
    if (n !== null) { var x = parseFloat(n); return isNaN(x) ? null : x; }
    var t = cell.textContent; return t === '' ? null : t;
  }
  function compare(a, b) {
    if (a === null) { return b === null ? 0 : 1; }
    if (b === null) { return -1; }
    if (typeof a === typeof b) { return a < b ? -1 : a > b ? 1 : 0; }
    return typeof a === 'number' ? -1 : 1;
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
    th.addEventListener('click', function () {
      var descending = th.getAttribute('aria-sort') === 'ascending';
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (o) { o.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (r, s) {
        var a = key(r.cells[i]), b = key(s.cells[i]);
        if (a === null || b === null) { return compare(a, b); }  /* empty cells last either way */
        return descending ? compare(b, a) : compare(a, b);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  var box = document.getElementById('filter');
  function filter() {
    var words = box.value.toLowerCase().split(/\\s+/).filter(function (w) { return w; });
    var n = 0;
    Array.prototype.forEach.call(body.rows, function (r) {
      var text = r.textContent.toLowerCase();
      var keep = words.every(function (w) { return text.indexOf(w) >= 0; });
      r.hidden = !keep; if (keep) { n += 1; }
    });
    shown.textContent = n + ' of ' + body.rows.length + ' runs shown';
  }
  box.addEventListener('input', filter);
  filter();
})();
"""


def build_report(source: ExperimentSource, *, processes: int | None = None, probes=()) -> str:
    """The HTML text of the report of ``source`` (see the module docstring); ``probes``: the
    schedulers to ask for queued and running points (``report.status.scheduler_states``)."""
    from .. import __version__  # noqa: PLC0415

    esc = html.escape
    # one open of each file the index does not answer for: its attributes and the plotted series
    runs = load_runs(source, processes=processes, series=series_keys(DEFAULT_PLOTS))
    table = summarize(runs)
    status = experiment_status(source, scheduler=scheduler_states(source, probes)[0])
    counts = status.counts()
    messages = {r["run_id"]: str(r.get("message") or "") for r in runs.rows}
    first = colour_key(runs.rows, table.varying)
    name = title(source)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{esc(name)}: lcnrun report</title><style>{STYLE}</style></head><body>",
           f"<h1>{esc(name)}</h1>",
           f'<p class="meta">{esc(source.label)} &middot; {status.total} point'
           f'{"s" if status.total != 1 else ""} &middot; written {now} by lcnrun {esc(__version__)}'
           "</p>"]

    out.append('<h2 id="status">Status</h2><table class="counts"><tbody>')
    for state, n in counts.items():
        out.append(f'<tr><th class="{esc(state)}">{esc(state)}</th><td>{n}</td></tr>')
    out.append(f"<tr><th>total</th><td>{status.total}</td></tr></tbody></table>")
    if status.orphans:
        out.append(f'<p class="meta">{len(status.orphans)} run files are not points of this '
                   "experiment (left out)</p>")

    out.append('<h2 id="plots">Plots</h2>')
    for series in DEFAULT_PLOTS:
        try:
            fig = line_plot(source, series, color=first, runs=runs, processes=processes)
        except (QueryError, PlotError) as err:
            out.append(f'<p class="meta">no plot of {esc(series)}: {esc(str(err))}</p>')
            continue
        alt = f"{series} over t" + (f" by {first}" if first else "")
        out.append(f'<img alt="{esc(alt)}" src="data:image/png;base64,{_png(fig)}">')

    n = len(table.rows)
    out.append(f'<h2 id="runs">Runs</h2><input id="filter" type="search" '
               f'placeholder="filter: words that a row must contain (e.g. diverged 0.05)" '
               f'aria-label="filter the runs"><p class="meta" id="shown">{n} of {n} runs shown</p>')
    out.append('<table id="summary"><thead><tr>')
    out += [f'<th data-key="{esc(c)}">{esc(c)}</th>' for c in table.columns]
    out.append("</tr></thead><tbody>")
    for row in table.rows:
        cells = []
        for c in table.columns:
            v = row.get(c)
            number = _sort_value(v)
            text = esc(label(v, 6, missing=""))
            if c == "status" and v not in (None, "completed"):
                text = f'<a class="{esc(str(v))}" href="#run-{esc(row["run_id"])}">{text}</a>'
            elif c == "status":
                text = f'<span class="completed">{text}</span>'
            attrs = f' class="num" data-n="{esc(number)}"' if number is not None else ""
            cells.append(f"<td{attrs}>{text}</td>")
        out.append(f'<tr id="row-{esc(str(row["run_id"]))}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    for note in table.notes:
        out.append(f'<p class="meta">{esc(note)}</p>')

    bad = [r for r in table.rows if r.get("status") not in (None, "completed")]
    out.append(f'<h2 id="failures">Runs that did not complete ({len(bad)})</h2>')
    for r in bad:
        rid = esc(str(r["run_id"]))
        where = f"#{r['index']} " if r.get("index") is not None else ""
        keys = ", ".join(f"{k}={label(r.get(k))}" for k in table.varying)
        out.append(f'<div class="failure" id="run-{rid}"><b>{esc(where)}{rid}</b> '
                   f'<span class="{esc(str(r["status"]))}">{esc(str(r["status"]))}</span> '
                   f'<span class="meta">{esc(keys)}</span>'
                   f'<pre>{esc(messages.get(r["run_id"], "") or "(no message)")}</pre></div>')
    if not bad:
        out.append('<p class="meta">none</p>')

    spec = _spec_text(source)
    out.append('<h2 id="spec">Spec</h2>')
    out.append(f"<pre>{esc(spec)}</pre>" if spec else '<p class="meta">no experiment.yaml</p>')
    out.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(out) + "\n"


def write_report(source: ExperimentSource, out: str | os.PathLike | None = None, *,
                 processes: int | None = None, probes=()) -> Path:
    """Write :func:`build_report` to ``out`` (default :func:`default_path`) atomically."""
    path = Path(out) if out is not None else default_path(source)
    text = build_report(source, processes=processes, probes=probes)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path

