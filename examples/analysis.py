"""Analyse a sweep the way one does in a notebook: run it, then tables, trajectories and plots.

    python examples/analysis.py [--results DIR]

1. ``lcnrun.run(spec, index=i)`` runs each point of ``examples/strides.yaml`` in this process
   (a point whose run file is complete is kept, as ``lcnrun sweep`` keeps it);
2. ``lcnrun.open(...)`` opens the experiment: ``summary()`` is the table of ``lcnrun summary``
   as a pandas DataFrame, ``trajectories()`` a tidy DataFrame of every run's loss;
3. ``exp.plot`` / ``exp.heatmap`` draw what ``lcnrun plot`` draws, and a plot of our own is made
   from the tidy frame with plain pandas and matplotlib; ``exp.report()`` writes the HTML report.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a script: no window
import matplotlib.pyplot as plt  # noqa: E402

import lcnrun  # noqa: E402

SPEC = Path(__file__).with_name("strides.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="results folder [results]")
    args = parser.parse_args()

    # 1. run every sweep point in-process (the same run ids and files as `lcnrun sweep`)
    n_points = len(lcnrun.open(SPEC, results=args.results))
    for i in range(n_points):
        run = lcnrun.run(SPEC, index=i, results=args.results)
        print(f"#{i} {run.run_id} {run.status}")

    # 2. tables
    exp = lcnrun.open(SPEC, results=args.results)
    table = exp.summary()
    print(table[["run_id", "model.strides", "init.scale", "init.seed", "status", "final.loss"]]
          .to_string(index=False))
    by_arch = exp.summary(group_by=["model.strides", "init.scale"])
    print(by_arch[["model.strides", "init.scale", "runs", "final.loss.mean", "final.loss.std"]]
          .to_string(index=False))
    best = exp.run(table.sort_values("final.loss")["run_id"].iloc[0])
    print(f"lowest final loss: run {best.run_id} ({best.spec['model']['strides']}), "
          f"loss {best.final['loss']:.3g} after {best.final['n_steps']} steps; "
          f"{best.trajectory.sizes['t']} stored times")

    # 3. plots: lcnrun's own, and one from the tidy trajectories with pandas + matplotlib
    plots = exp.root / "plots"
    written = [
        exp.plot("loss", color="init.scale", facet="model.strides",
                 out=plots / "example_loss.png"),
        exp.heatmap("final.loss", x="model.strides", y="init.scale",
                    out=plots / "example_heatmap.pdf"),
    ]
    df = exp.trajectories("loss", filter="status==completed")
    fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
    for strides, part in df.groupby("model.strides"):
        median = part.groupby("t")["loss"].median()
        ax.loglog(median.index[1:], median.to_numpy()[1:], label=f"strides {list(strides)}")
    ax.set_xlabel("t = step * lr")
    ax.set_ylabel("median loss")
    ax.legend()
    fig.savefig(plots / "example_median_loss.png", dpi=120)
    for fig in written:
        plt.close(fig)
    report = exp.report()
    for path in ("example_loss.png", "example_heatmap.pdf", "example_median_loss.png"):
        print(f"wrote {plots / path}")
    print(f"wrote {report}")


if __name__ == "__main__":
    main()
