"""Reading a few trajectory series of a run file, and nothing else (plots of thousands of runs).

:func:`read_run` reads every array of a file (parameters at every stored time included); a plot of
the loss of 10,000 runs needs two small datasets of each. :func:`read_series` opens the file, checks
that it is an lcnrun run file and reads only the named datasets of ``/trajectory``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from .runfile import RunFileError, _check_format, _python_scalar


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise RunFileError(path, "no such file")
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise RunFileError(path, f"not a readable HDF5 file ({exc})") from exc


def read_series(path: os.PathLike | str, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """``{key: array}`` of the datasets ``/trajectory/<key>`` that exist (``'/'`` nests:
    ``params/layer_0``), each in its stored dtype, first axis the stored times; a key the file
    does not have is left out (a failed run has no trajectory). Raises :class:`RunFileError`."""
    path = Path(path)
    with _open(path) as f:
        try:
            _check_format(path, _python_scalar(f.attrs.get("format")),
                          _python_scalar(f.attrs.get("format_version")))
            group = f.get("trajectory")
            out = {}
            for key in keys:
                obj = group.get(key) if group is not None else None
                if isinstance(obj, h5py.Dataset):
                    out[key] = np.asarray(obj[()])
            return out
        except RunFileError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise RunFileError(path, f"unreadable run file ({exc})") from exc


def series_names(path: os.PathLike | str) -> list[str]:
    """The names of a run file's trajectory series (``t``, ``loss``, ``params/layer_0`` ...),
    sorted; no data is read. Raises :class:`RunFileError`."""
    path = Path(path)
    names: list[str] = []
    with _open(path) as f:
        try:
            group = f.get("trajectory")
            if group is not None:
                group.visititems(lambda name, obj: names.append(name)
                                 if isinstance(obj, h5py.Dataset) else None)
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise RunFileError(path, f"unreadable run file ({exc})") from exc
    return names
