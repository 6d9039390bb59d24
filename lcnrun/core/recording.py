"""Which times of a trajectory are stored (``record`` section of a spec)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .options import option


@dataclass(frozen=True)
class RecordOptions:
    points: int = option(200, kind="int", check="at_least_two",
                         doc="number of stored times (t = 0 and the end included)")
    spacing: str = option("log", kind="str", choices=("log", "linear"),
                          doc="log: geometric grid from t_min to the end; linear: uniform from 0")
    t_min: float | None = option(None, kind="float", check="positive", nullable=True,
                                 doc="first non-zero stored time of a log grid "
                                     "(default: one step for descent, 1e-4 t_max for flows)")
    params: bool = option(True, kind="bool", doc="store the parameters at every stored time")
    checkpoint_every: float | None = option(
        None, kind="float", check="nonnegative", nullable=True,
        doc="seconds between two checkpoints of a run in progress (0: at every poll; default: "
            "--checkpoint-every, else 300); how the run is kept, not what it computes: not part "
            "of the run id")


def record_times(t_end: float, options: RecordOptions, t_min_default: float) -> np.ndarray:
    """Increasing stored times in ``[0, t_end]``, starting at 0 and ending at ``t_end``."""
    n = options.points
    if options.spacing == "linear":
        return np.linspace(0.0, t_end, n)
    t_min = min(options.t_min if options.t_min is not None else t_min_default, t_end)
    return np.concatenate([[0.0], np.geomspace(t_min, t_end, n - 1)]) if t_min < t_end \
        else np.array([0.0, t_end])


def record_steps(steps: int, lr: float, options: RecordOptions) -> np.ndarray:
    """Stored step indices of gradient descent (unique, increasing, 0 and ``steps`` included).

    A log grid with more points than distinct steps near 0 stores each of those steps once, so a
    run may store fewer than ``points`` times.
    """
    t = record_times(steps * lr, options, lr) / lr
    return np.unique(np.clip(np.rint(t).astype(np.int64), 0, steps))
