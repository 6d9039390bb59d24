"""A run's checkpoint: the resumable state of a run in progress, beside its future run file.

``runs/.<run_id>.checkpoint.npz`` (hidden: readers of run files glob ``*.h5`` and skip dot files)
is one ``.npz`` holding

- ``meta``: JSON ``{"format", "run_id", "spec_sha256", "code", "saved_at", "resumed_from"}`` --
  ``spec_sha256`` the sha256 of the text the run id hashes (``spec.canonical_json``: the
  computation, without names and run settings, with the data files' hashes), ``code`` the code version that wrote
  it (git commit and dirty flag, package versions), ``resumed_from`` the resumes so far;
- ``state``: the JSON skeleton of the dynamics' state of this member (see
  :mod:`lcnrun.core.control`), each numpy array replaced by ``{"__array__": "a<i>"}``;
- ``a0, a1, ...``: those arrays, bit for bit (floats in JSON are written by ``repr``: exact too).

It is written atomically (a hidden temporary named after the run, so that a claim's clean-up
removes a dead writer's leftover, then a rename), so a reader sees a whole checkpoint or the
previous one. :func:`read_checkpoint` says why a checkpoint cannot be used (unreadable, another
run, another spec, another code version) instead of raising.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_replace

FORMAT = 1


def checkpoint_path(run_path: Path) -> Path:
    """``runs/.<run_id>.checkpoint.npz`` for the run file ``runs/<run_id>.h5``."""
    run_path = Path(run_path)
    return run_path.with_name(f".{run_path.stem}.checkpoint.npz")


def spec_sha256(spec_text: str) -> str:
    return hashlib.sha256(spec_text.encode()).hexdigest()


@dataclass
class Checkpoint:
    """One member's checkpoint: its ``state`` (a dict of plain data) and ``meta`` (see module)."""

    state: dict
    meta: dict = field(default_factory=dict)


def _skeleton(value, arrays: list):
    """``value`` as JSON-able data, numpy arrays moved into ``arrays``."""
    if isinstance(value, np.ndarray):
        arrays.append(value)
        return {"__array__": f"a{len(arrays) - 1}"}
    if isinstance(value, dict):
        if "__array__" in value or "__tuple__" in value:
            raise ValueError("a checkpoint state may not use the keys __array__ / __tuple__")
        return {str(k): _skeleton(v, arrays) for k, v in value.items()}
    if isinstance(value, tuple):
        return {"__tuple__": [_skeleton(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_skeleton(v, arrays) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a checkpoint state cannot hold {type(value).__name__}")


def _restore(value, arrays):
    if isinstance(value, dict):
        if "__array__" in value:
            return arrays[value["__array__"]]
        if "__tuple__" in value:
            return tuple(_restore(v, arrays) for v in value["__tuple__"])
        return {k: _restore(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v, arrays) for v in value]
    return value


def write_checkpoint(path: Path, checkpoint: Checkpoint, fsync: bool = True) -> None:
    """Write ``checkpoint`` to ``path`` atomically (see the module docstring)."""
    path = Path(path)
    arrays: list = []
    skeleton = json.dumps(_skeleton(checkpoint.state, arrays))
    meta = json.dumps(dict(checkpoint.meta, format=FORMAT))
    # the temporary carries the run id as its stem: claims.clean_run_temporaries finds it
    with atomic_replace(path, fsync=fsync, named_as=path.with_name(path.name.lstrip("."))) as tmp:
        with open(tmp, "xb") as fh:
            np.savez(fh, meta=np.array(meta), state=np.array(skeleton),
                     **{f"a{i}": np.asarray(a) for i, a in enumerate(arrays)})


def read_checkpoint(path: Path) -> tuple[Checkpoint | None, str]:
    """``(checkpoint, "")``, or ``(None, why)`` if there is none or it cannot be read."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, ""
    except OSError as err:
        return None, f"cannot read {path.name}: {err}"
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            skeleton = json.loads(str(z["state"]))
            arrays = {k: z[k] for k in z.files if k not in ("meta", "state")}
        state = _restore(skeleton, arrays)
    except (ValueError, KeyError, OSError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        return None, f"{path.name} is not a readable checkpoint ({type(err).__name__}: {err})"
    if meta.get("format") != FORMAT or not isinstance(state, dict):
        return None, f"{path.name} has checkpoint format {meta.get('format')!r}, not {FORMAT}"
    return Checkpoint(state, meta), ""


def mismatch(meta: dict, *, run_id: str, spec_sha: str, code: dict) -> str:
    """Why a checkpoint with ``meta`` cannot resume this run ("" if it can)."""
    if meta.get("run_id") != run_id:
        return f"it belongs to run {meta.get('run_id')!r}"
    if meta.get("spec_sha256") != spec_sha:
        return "it was written for another spec (the text its run id hashes differs)"
    theirs = meta.get("code") or {}
    for key in sorted(set(theirs) | set(code)):
        if theirs.get(key) != code.get(key):
            return (f"it was written by another code version ({key}: {theirs.get(key)!r}, "
                    f"this is {code.get(key)!r})")
    return ""


def remove_checkpoint(path: Path) -> bool:
    """Remove a checkpoint (a run that ended); True if there was one (anything else in its place,
    e.g. a directory, is left alone)."""
    try:
        Path(path).unlink()
    except OSError:
        return False
    return True
