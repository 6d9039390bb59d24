"""The one comparison of the tests that hold a fast path to its reference (``read_run`` to the
high-level reader, ``flatten_spec_text`` to the whole-text parse, the journal's JSON parser to
``json.loads``): the same value, type for type (1 is not 1.0 nor True), dict keys in the same
order, floats bit for bit (a NaN's sign and payload, -0.0), arrays by dtype, shape and bytes."""
from __future__ import annotations

import dataclasses
import struct
from typing import Any

import h5py
import numpy as np


def assert_same(got: Any, want: Any, where: str = "", seen: set | None = None) -> None:
    """``got`` is ``want`` as above; ``where`` names the place in a failure. Recursive documents
    (YAML anchors): each pair of containers is compared once."""
    assert type(got) is type(want), (where, type(got), type(want))
    if isinstance(want, (dict, list, tuple)):
        seen = set() if seen is None else seen
        if (id(got), id(want)) in seen:
            return
        seen.add((id(got), id(want)))
    if dataclasses.is_dataclass(want):
        for field in dataclasses.fields(want):
            assert_same(getattr(got, field.name), getattr(want, field.name), f"{where}.{field.name}", seen)
    elif isinstance(want, dict):
        assert list(got) == list(want), where  # the same keys in the same order
        for key in want:
            assert_same(got[key], want[key], f"{where}[{key!r}]", seen)
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]", seen)
    elif isinstance(want, np.ndarray):
        assert (got.dtype, got.shape) == (want.dtype, want.shape), where
        assert got.dtype.metadata == want.dtype.metadata, where
        if want.dtype.kind == "O":
            assert_same(got.tolist(), want.tolist(), where, seen)
        else:
            assert got.tobytes() == want.tobytes(), where
    elif isinstance(want, float):
        assert struct.pack("<d", got) == struct.pack("<d", want), (where, got, want)
    elif isinstance(want, h5py.Empty):
        assert got.dtype == want.dtype, where
    else:
        assert got == want, where
