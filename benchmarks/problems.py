"""The benchmark problems (issue: speed), shared by the benchmark scripts.

(i)   LCN filters [5, 5, 5], strides [1, 1, 1], input length 256, N = 1024 samples;
(ii)  LCN filters [4, 3, 3, 2], strides [2, 2, 2, 1], input length 512, N = 4096;
(iii) 2-D LCN filters [(3, 3), (3, 3)], strides [(1, 1), (2, 2)], 32 x 32 inputs, N = 512.

Data: standard normal inputs, targets from a teacher of the same architecture (scale 0.5) plus
noise 0.01 (``data.seed`` 0); initialization: every entry ``0.3 N(0, 1)`` (``init.seed`` 1); square
loss; full-batch gradient descent with the step size ``LR`` below (stable, the loss decreases).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # like a sweep worker: one BLAS thread, before numpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lcnrun.core.data import GaussianData, TeacherTarget, build_dataset  # noqa: E402
from lcnrun.core.init import GaussianInit  # noqa: E402
from lcnrun.core.losses import LOSSES  # noqa: E402
from lcnrun.core.models import LCN, Dense  # noqa: E402
from lcnrun.core.options import Section  # noqa: E402
from lcnrun.core.problem import Problem  # noqa: E402

PROBLEMS = {
    "i": dict(label="(i) LCN [5,5,5] s[1,1,1] d256 N1024", filters=(5, 5, 5), strides=(1, 1, 1),
              input_size=256, n_samples=1024, lr=2e-4),
    "ii": dict(label="(ii) LCN [4,3,3,2] s[2,2,2,1] d512 N4096", filters=(4, 3, 3, 2), strides=(2, 2, 2, 1),
               input_size=512, n_samples=4096, lr=2e-3),
    "iii": dict(label="(iii) 2-D LCN [(3,3),(3,3)] s[(1,1),(2,2)] 32x32 N512", filters=((3, 3), (3, 3)),
                strides=((1, 1), (2, 2)), input_size=(32, 32), n_samples=512, lr=5e-4),
}


def model_of(name: str):
    if name == "dln":
        return Dense(Dense.Options(widths=(20,) * 6))
    p = PROBLEMS[name]
    return LCN(LCN.Options(filters=p["filters"], strides=p["strides"]))


def build(name: str, n_samples: int | None = None):
    """``(model, problem, theta0 (1, P), lr)`` of a benchmark problem."""
    model = model_of(name)
    p = PROBLEMS.get(name, dict(input_size=None, n_samples=10_000, lr=1e-4))  # dln: a 5-layer DLN, width 20
    data = build_dataset(Section("gaussian", GaussianData.Options(
        n_samples=n_samples or p["n_samples"], input_size=p["input_size"], noise=0.01, seed=0,
        target=Section("teacher", TeacherTarget.Options(scale=0.5)))), model)
    problem = Problem(model, LOSSES["square"](), data)
    theta0 = GaussianInit.build(GaussianInit.Options(scale=0.3, seed=1), model)
    return model, problem, theta0, p["lr"]
