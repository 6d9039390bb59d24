"""lcnrun: experiments on the training geometry of deep linear and linear convolutional networks.

The Python API (docs/analysis.md), loaded on first use so that ``import lcnrun`` stays cheap
(no numpy, pandas, h5py or the numerical core until a function is called)::

    exp = lcnrun.open("results/strides")    # lcnrun.Experiment
    exp.summary(), exp.trajectories("loss"), exp.run(0), exp.runs(), exp.plot("loss")
    lcnrun.run(spec)                         # lcnrun.Run
"""

__version__ = "0.1.0"

_API = ("open", "run", "Experiment", "Run")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from . import api  # noqa: PLC0415

        return getattr(api, name)
    raise AttributeError(f"module 'lcnrun' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
