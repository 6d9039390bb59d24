"""Single-run gradient descent: lcnrun against the PyTorch code a researcher would otherwise write.

For each problem of :mod:`problems` ((i), (ii), (iii)), in a fresh process each:

- **lcnrun**: ``GradientDescent(lr, steps).run`` (the fused compiled kernel, one BLAS thread),
  steps per second over a run of at least 20,000 steps, best of 5;
- **PyTorch** (CPU, float64): the same full-batch gradient descent written plainly -- the layers
  as ``F.conv1d`` / ``F.conv2d`` with their strides, ``loss = 0.5 * ((h - y)**2).sum() / N``,
  ``loss.backward()``, ``w -= lr * w.grad`` under ``no_grad`` -- steps per second over 10 steps,
  best of 3, with 1 thread and with torch's default (all cores), the faster one counted;
- **check**: the same data, initialization and step size, 20 steps in each: the final losses must
  agree to 1e-9 relative.

PyTorch is an optional benchmark dependency (``pip install torch==2.13.0``, the extra ``bench``);
without it the PyTorch column is skipped with a note. Prints a table, writes
benchmarks/out/bench_torch.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

from _items import best_time, emit, machine, run_item, write_json  # noqa: E402

CHECK_STEPS = 20
CHECK_RTOL = 1e-9


def lcnrun_item(name: str) -> dict:
    from problems import build  # noqa: PLC0415
    from lcnrun.core.dynamics import GradientDescent  # noqa: PLC0415
    from lcnrun.core.recording import RecordOptions  # noqa: PLC0415

    t0 = time.perf_counter()
    model, problem, theta0, lr = build(name)
    setup = time.perf_counter() - t0
    record = RecordOptions(points=100)
    check = GradientDescent(GradientDescent.Options(lr=lr, steps=CHECK_STEPS)).run(problem, theta0, record)[0]
    steps = 20_000
    dyn = GradientDescent(GradientDescent.Options(lr=lr, steps=steps))
    dyn.run(problem, theta0, record)  # warm-up: compiled code loaded
    best = best_time(lambda: dyn.run(problem, theta0, record), 5)
    return {"setup_s": setup, "steps": steps, "steps_per_s": steps / best,
            "loss_after_check_steps": float(check.loss[-1]), "loss_initial": float(check.loss[0])}


def torch_item(name: str) -> dict:
    try:
        import torch  # noqa: PLC0415
        import torch.nn.functional as F  # noqa: PLC0415
    except ImportError:
        return {"available": False, "note": "torch is not installed (pip install torch==2.13.0)"}
    from problems import PROBLEMS, build  # noqa: PLC0415

    model, problem, theta0, lr = build(name)
    spec = PROBLEMS[name]
    x, y = problem.dataset.inputs, problem.dataset.targets
    N = x.shape[0]
    conv = F.conv1d if x.ndim == 2 else F.conv2d
    strides = [s if isinstance(s, int) else tuple(s) for s in spec["strides"]]
    X = torch.from_numpy(np.ascontiguousarray(x))[:, None]
    Y = torch.from_numpy(np.ascontiguousarray(y))[:, None]

    def fresh():
        return [torch.tensor(w[0][None, None], dtype=torch.float64, requires_grad=True)
                for w in model.split(theta0)]

    def loss_of(ws):
        h = X
        for w, s in zip(ws, strides):
            h = conv(h, w, stride=s)
        return 0.5 * ((h - Y) ** 2).sum() / N

    def gd(ws, steps):
        for _ in range(steps):
            loss = loss_of(ws)
            for w in ws:
                w.grad = None
            loss.backward()
            with torch.no_grad():
                for w in ws:
                    w -= lr * w.grad
        return ws

    out = {"available": True, "torch": torch.__version__, "default_threads": torch.get_num_threads()}
    ws = gd(fresh(), CHECK_STEPS)
    with torch.no_grad():
        out["loss_after_check_steps"] = float(loss_of(ws))
    default = torch.get_num_threads()
    for label, threads in (("1_thread", 1), ("default_threads", default)):
        torch.set_num_threads(threads)
        ws = gd(fresh(), 2)  # warm-up
        steps = 10
        best = best_time(lambda: gd(ws, steps), 3)
        out[f"steps_per_s_{label}"] = steps / best
    torch.set_num_threads(default)
    out["steps_per_s"] = max(out["steps_per_s_1_thread"], out["steps_per_s_default_threads"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--item", nargs=2, metavar=("WHICH", "PROBLEM"))
    args = parser.parse_args()
    if args.item:
        which, name = args.item
        emit(lcnrun_item(name) if which == "lcnrun" else torch_item(name))
        return 0
    from problems import PROBLEMS  # noqa: PLC0415
    before = machine()
    rows = []
    for name, spec in PROBLEMS.items():
        ours = run_item(Path(__file__), "lcnrun", name)
        peer = run_item(Path(__file__), "torch", name)
        row = {"problem": name, "label": spec["label"], "lcnrun": ours, "torch": peer}
        if peer.get("available"):
            a, b = ours["loss_after_check_steps"], peer["loss_after_check_steps"]
            row["check_rel_diff"] = abs(a - b) / abs(b)
            row["check_ok"] = row["check_rel_diff"] <= CHECK_RTOL
            row["speedup"] = ours["steps_per_s"] / peer["steps_per_s"]
        rows.append(row)
    print(f"{'problem':52s} {'lcnrun steps/s':>15s} {'torch steps/s':>14s} {'speed-up':>9s} "
          f"{'loss check':>11s} {'RSS MiB':>15s}")
    for r in rows:
        o, p = r["lcnrun"], r["torch"]
        if p.get("available"):
            tp = f"{p['steps_per_s']:14.1f}"
            sp = f"{r['speedup']:8.0f}x"
            ck = f"{r['check_rel_diff']:.1e}" + ("" if r["check_ok"] else " FAIL")
            rss = f"{o['peak_rss_mb']:.0f} / {p['peak_rss_mb']:.0f}"
        else:
            tp, sp, ck, rss = f"{'skipped':>14s}", f"{'-':>9s}", f"{'-':>11s}", f"{o['peak_rss_mb']:.0f} / -"
        print(f"{r['label']:52s} {o['steps_per_s']:15,.0f} {tp} {sp} {ck:>11s} {rss:>15s}")
    if not rows[0]["torch"].get("available"):
        print(f"note: {rows[0]['torch']['note']}: the PyTorch column is skipped")
    path = write_json("bench_torch.json", {"machine_before": before, "machine_after": machine(), "rows": rows})
    print(f"wrote {path.relative_to(HERE.parent)}")
    return 0 if all(r.get("check_ok", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
