"""Canonical form of a run spec and its run id.

``resolved_dict(run_spec)`` is the run as plain data with every default filled in: each section is
``{kind: ..., <every option field>}`` (nested sections likewise), ``record`` its fields, tuples are
lists, floats floats, ints ints, paths absolute; ``diagnostics`` a list whose entries are a bare name
(the diagnostic at its default options) or ``{kind: name, <every option>}``. ``yaml.safe_dump(resolved_dict(r), sort_keys=True)``
is what a run file stores, and loading that text gives back a RunSpec equal to ``r``.

Run id rule (identity from content, as signac's job ids):

1. take ``resolved_dict(run_spec)`` and drop ``name`` and ``description`` (the same run in two
   experiments has the same id);
2. replace every ``path`` option by ``"sha256:<hex digest of the file's bytes>"`` (moving a data file
   keeps the id, changing its content changes it);
3. floats are Python floats with ``-0.0`` written as ``0.0`` (so ``1`` and ``1.0`` in a float option
   give the same id), ints stay ints, booleans booleans;
4. ``run_id = sha256(json.dumps(d, sort_keys=True, separators=(",", ":"))).hexdigest()[:12]``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Callable

from ..core.diagnostics import DIAGNOSTICS
from ..core.options import Section
from .errors import Problem, SpecError
from .schema import SECTIONS, RunSpec

RUN_ID_LENGTH = 12


def file_sha256(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _plain(value: Any, on_path: Callable[[str], Any]) -> Any:
    if isinstance(value, Section):
        return {"kind": value.kind, **_plain(value.options, on_path)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: (on_path(getattr(value, f.name))
                         if f.metadata.get("kind") == "path" and getattr(value, f.name) is not None
                         else _plain(getattr(value, f.name), on_path))
                for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v, on_path) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, on_path) for k, v in value.items()}
    if isinstance(value, float):
        return float(value) + 0.0
    return value


def _resolved(run_spec: RunSpec, on_path: Callable[[str], Any]) -> dict[str, Any]:
    d: dict[str, Any] = {"name": run_spec.name, "description": run_spec.description}
    for section in SECTIONS:
        d[section] = _plain(getattr(run_spec, section), on_path)
    # a diagnostic at its default options is its bare name (as specs wrote it before diagnostics
    # had options, so those runs keep their ids), otherwise {kind: name, <every option>}
    d["diagnostics"] = [s.kind if s.options == DIAGNOSTICS[s.kind].Options() else _plain(s, on_path)
                        for s in run_spec.diagnostics]
    return d


def resolved_dict(run_spec: RunSpec) -> dict[str, Any]:
    """The run as plain data, every default filled in (see module docstring)."""
    return _resolved(run_spec, lambda p: p)


def canonical_json(run_spec: RunSpec, *, file_hashes: dict[str, str] | None = None) -> str:
    """The text whose hash is the run id (steps 1-3 of the module docstring). ``file_hashes``
    (path -> hex digest) may carry hashes already computed in the same call of the caller."""
    cache = {} if file_hashes is None else file_hashes

    def hash_path(path: str) -> str:
        if path not in cache:
            try:
                cache[path] = file_sha256(path)
            except OSError as err:
                raise SpecError([Problem(None, None, "", f"cannot hash {path} for the run id: {err}")]) from None
        return "sha256:" + cache[path]

    d = _resolved(run_spec, hash_path)
    del d["name"], d["description"]
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def run_id(run_spec: RunSpec, *, file_hashes: dict[str, str] | None = None) -> str:
    """First 12 hex digits of the sha256 of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(run_spec, file_hashes=file_hashes).encode()).hexdigest()[:RUN_ID_LENGTH]
