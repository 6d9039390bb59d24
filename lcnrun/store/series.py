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
from h5py import h5a, h5d, h5f

from . import runfile
from .runfile import RunFileError, _attrs_body, _check_format, _fast, _read_attr, _read_dataset


def _datasets(fid: h5f.FileID, keys: Sequence[str]) -> dict[str, np.ndarray]:
    out = {}
    for key in keys:
        try:
            dset = h5d.open(fid, f"trajectory/{key}".encode())
        except KeyError:  # no such series (a failed run has no trajectory at all)
            continue
        out[key] = _read_dataset(dset)
    return out


def _series_body(keys: Sequence[str]):
    def body(path: Path, fid: h5f.FileID) -> dict[str, np.ndarray]:
        values = {name: _read_attr(h5a.open(fid, name.encode()))
                  if h5a.exists(fid, name.encode()) else None
                  for name in ("format", "format_version")}
        _check_format(path, values["format"], values["format_version"])
        return _datasets(fid, keys)
    return body


def read_series(path: os.PathLike | str, keys: Sequence[str], *,
                check_marks: bool = True, known: bool = False) -> dict[str, np.ndarray]:
    """``{key: array}`` of the datasets ``/trajectory/<key>`` that exist (``'/'`` nests:
    ``params/layer_0``), each in its stored dtype, first axis the stored times; a key the file
    does not have is left out (a failed run has no trajectory). Opens the file as
    :func:`~lcnrun.store.runfile.read_run_attrs` does (low-level h5py, no file locking).
    ``check_marks=False``: the caller already knows the file is not marked unreadable (it
    listed the marks once for the folder). ``known=True``: the caller knows this very file is a
    regular lcnrun run file (the run index's entry for its identity says so): no ``stat`` and
    no format check, only the open and the datasets (plots of 10,000 runs). Raises
    :class:`RunFileError`."""
    if not known:
        return _fast(path, _series_body(tuple(keys)), check_marks)
    path = Path(path)
    fid = runfile._open_fast(path)  # (looked up here: the tests count the opens)
    try:
        return _datasets(fid, keys)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise RunFileError(path, f"unreadable run file ({exc})") from exc
    finally:
        fid.close()


def read_attrs_and_series(path: os.PathLike | str, keys: Sequence[str], *,
                          check_marks: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """``(read_run_attrs(path), read_series(path, keys))`` in one open of the file: what a plot
    of a run without a current index entry needs. Raises :class:`RunFileError`."""
    keys = tuple(keys)
    return _fast(path, lambda p, fid: (_attrs_body(p, fid, False), _datasets(fid, keys)),
                 check_marks)


def series_names(path: os.PathLike | str) -> list[str]:
    """The names of a run file's trajectory series (``t``, ``loss``, ``params/layer_0`` ...),
    sorted; no data is read. Raises :class:`RunFileError`."""
    path = Path(path)
    names: list[str] = []
    if not path.exists():
        raise RunFileError(path, "no such file")
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise RunFileError(path, f"not a readable HDF5 file ({exc})") from exc
    with f:
        try:
            group = f.get("trajectory")
            if group is not None:
                group.visititems(lambda name, obj: names.append(name)
                                 if isinstance(obj, h5py.Dataset) else None)
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise RunFileError(path, f"unreadable run file ({exc})") from exc
    return names
