"""`lcnrun report`: the HTML page in a real headless browser (Debian's Chromium, installed by
scripts/browser_up.sh from `make test`), driven through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: JSON messages separated by NUL bytes on fds 3 and 4; no extra Python
package). The page must load without console errors or exceptions, show one table row per run
file, sort by a column as Python sorts the values, filter by typed words, and render (a screenshot
that is not blank). Under CI=true a missing browser fails the test; elsewhere it skips."""
from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lcnrun.cli import app
from lcnrun.store.experiment import ExperimentDir

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
# A guard against a hung browser, not a measurement: nothing here asserts on time.
PROTOCOL_WAIT = 120.0

SPEC = """\
name: page
model: {kind: lcn, filters: [3, 2], strides: [2, 1]}
data: {kind: gaussian, n_samples: 8, input_size: 12, noise: 0.01, seed: 0}
init: {kind: gaussian, scale: 0.3, seed: 1}
dynamics: {kind: gradient_descent, lr: 0.01, steps: 60}
record: {points: 10}
sweep:
  grid: {init.seed: [0, 1, 2], model.strides: [[1, 1], [2, 1]], dynamics.lr: [0.01, 0.05]}
"""


def chromium() -> str:
    """The browser binary, or skip (fail under CI) with the reason."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "browser_up.sh")], capture_output=True,
                          text=True)
    if proc.returncode == 0 and os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    reason = f"no Chromium (scripts/browser_up.sh exit {proc.returncode}: {proc.stderr.strip()})"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


class DevTools:
    """A minimal DevTools protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, binary: str, profile: Path):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # move the browser's ends above 3 and 4 so that the dup2 below cannot clobber them
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser_r, from_browser_w)]
        os.close(to_browser_r)
        os.close(from_browser_w)

        def child_fds():
            os.dup2(ends[0], 3)
            os.dup2(ends[1], 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=child_fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        for fd in ends:
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _read_message(self) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], PROTOCOL_WAIT)
            if not ready:
                raise TimeoutError("the browser did not answer")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise EOFError("the browser closed the pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method and event.get("sessionId") == session:
                return self.events.pop(i)
        while True:
            event = self._read_message()
            if event.get("method") == method and event.get("sessionId") == session:
                return event
            self.events.append(event)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, EOFError, TimeoutError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=PROTOCOL_WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The report of a 12-run sweep (3 of them diverge), loaded in Chromium: (browser, session,
    summary CSV rows, report path)."""
    binary = chromium()
    tmp = tmp_path_factory.mktemp("page")
    spec = tmp / "page.yaml"
    spec.write_text(SPEC)
    results = tmp / "results"
    r = runner.invoke(app, ["sweep", str(spec), "-j", "2", "--results", str(results)])
    assert r.exit_code in (0, 1), r.output
    r = runner.invoke(app, ["report", str(results / "page")])
    assert r.exit_code == 0, r.output
    path = results / "page" / "report.html"
    assert r.output.strip() == f"wrote {path}"
    r = runner.invoke(app, ["summary", str(results / "page"), "--csv"])
    import csv  # noqa: PLC0415
    rows = list(csv.DictReader(io.StringIO(r.output)))
    browser = DevTools(binary, tmp / "profile")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target,
                                                         "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {"width": 1200, "height": 1600,
                                                            "deviceScaleFactor": 1,
                                                            "mobile": False}, session)
        browser.send("Page.navigate", {"url": path.as_uri()}, session)
        browser.wait_for("Page.loadEventFired", session)
        yield browser, session, rows, path
    finally:
        browser.close()


def evaluate(browser: DevTools, session: str, expression: str):
    result = browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                               "awaitPromise": True}, session)
    assert "exceptionDetails" not in result, result
    return result["result"].get("value")


def test_page_loads_without_console_errors(page):
    browser, session, rows, path = page
    evaluate(browser, session, "document.readyState")  # flush the events sent so far
    problems = []
    for event in browser.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            problems.append(params["exceptionDetails"].get("text"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            problems.append(json.dumps(params.get("args")))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            problems.append(params["entry"].get("text"))
    assert problems == []
    # self-contained: nothing but the page itself and inline images was requested
    assert evaluate(browser, session, "performance.getEntriesByType('resource').length") == 0
    text = path.read_text()
    assert "http://" not in text and "https://" not in text


def test_table_has_one_row_per_run_as_the_summary(page):
    browser, session, rows, _ = page
    ids = evaluate(browser, session, "Array.from(document.querySelectorAll('#summary tbody tr'))"
                                     ".map(r => r.id.slice(4))")
    assert ids == [r["run_id"] for r in rows]
    assert len(ids) == len(ExperimentDir(page[3].parent).read_manifest()) == 12
    header = evaluate(browser, session, "Array.from(document.querySelectorAll('#summary th'))"
                                        ".map(t => t.dataset.key)")
    assert header == list(rows[0])
    counts = evaluate(browser, session, "Object.fromEntries(Array.from(document.querySelectorAll("
                                        "'.counts tr')).map(r => [r.cells[0].textContent, "
                                        "Number(r.cells[1].textContent)]))")
    statuses = [r["status"] for r in rows]
    assert counts == {**{s: statuses.count(s) for s in dict.fromkeys(statuses)}, "total": 12}
    assert evaluate(browser, session, "document.images.length") == 2
    assert evaluate(browser, session, "Array.from(document.images).every(i => i.complete && "
                                      "i.naturalWidth > 100)")


def test_failed_runs_link_to_their_messages(page):
    browser, session, rows, _ = page
    bad = [r for r in rows if r["status"] != "completed"]
    assert bad, "the sweep was chosen so that some runs diverge"
    links = evaluate(browser, session, "Array.from(document.querySelectorAll('#summary a'))"
                                       ".map(a => [a.getAttribute('href'), document.querySelector("
                                       "a.getAttribute('href')).querySelector('pre').textContent])")
    from lcnrun.store.runfile import read_run_attrs  # noqa: PLC0415
    runs_dir = page[3].parent / "runs"
    assert links == [[f"#run-{r['run_id']}",
                      read_run_attrs(runs_dir / f"{r['run_id']}.h5")["message"]] for r in bad]


def test_sorting_and_filtering(page):
    browser, session, rows, _ = page
    column = list(rows[0]).index("final.loss")
    order = "Array.from(document.querySelectorAll('#summary tbody tr')).map(r => r.id.slice(4))"
    evaluate(browser, session, f"document.querySelectorAll('#summary th')[{column}].click()")
    by_loss = sorted(rows, key=lambda r: float(r["final.loss"]))
    assert evaluate(browser, session, order) == [r["run_id"] for r in by_loss]
    evaluate(browser, session, f"document.querySelectorAll('#summary th')[{column}].click()")
    assert evaluate(browser, session, order) == [r["run_id"] for r in by_loss[::-1]]
    evaluate(browser, session, "var b = document.getElementById('filter'); b.value = "
                               "'diverged 0.05'; b.dispatchEvent(new Event('input'))")
    visible = evaluate(browser, session, "Array.from(document.querySelectorAll('#summary tbody "
                                         "tr')).filter(r => !r.hidden).map(r => r.id.slice(4))")
    expected = {r["run_id"] for r in rows if r["status"] == "diverged"
                and any("0.05" in v for v in r.values())}
    assert set(visible) == expected and expected
    assert evaluate(browser, session, "document.getElementById('shown').textContent") == \
        f"{len(expected)} of 12 runs shown"
    evaluate(browser, session, "var b = document.getElementById('filter'); b.value = ''; "
                               "b.dispatchEvent(new Event('input'))")


def test_screenshot_is_not_blank(page, tmp_path):
    import matplotlib.image as mpimg  # noqa: PLC0415

    browser, session, _, _ = page
    shot = browser.send("Page.captureScreenshot", {"format": "png"}, session)
    image = mpimg.imread(io.BytesIO(base64.b64decode(shot["data"])), format="png")
    assert image.shape[0] >= 1000 and image.shape[1] >= 1000
    pixels = image[..., :3].reshape(-1, 3)
    colours = np.unique(np.round(pixels * 255).astype(np.uint8), axis=0)
    # text, plot lines, coloured statuses: a blank or unstyled page has a handful of colours
    assert len(colours) > 200
    assert (pixels.mean(axis=1) < 0.5).mean() > 0.005  # some dark ink on the white page
