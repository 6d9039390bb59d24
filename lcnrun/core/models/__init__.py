"""Model families. ``MODELS`` is the only place a spec's ``model.kind`` becomes a class."""
from .base import Model, QuadraticForm
from .dense import Dense
from .lcn import LCN

MODELS: dict[str, type[Model]] = {
    "dense": Dense,
    "lcn": LCN,
}


def build_model(kind: str, options) -> Model:
    return MODELS[kind](options)


__all__ = ["MODELS", "Model", "QuadraticForm", "Dense", "LCN", "build_model"]
