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
4. drop the run settings (:data:`RUN_SETTINGS`: how a run is kept, e.g. its checkpoint
   interval, not what it computes);
5. ``run_id = sha256(json.dumps(d, sort_keys=True, separators=(",", ":"))).hexdigest()[:12]``.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any, Callable

from ..core.diagnostics import DIAGNOSTICS
from ..core.options import Section
from .errors import Problem, SpecError
from .schema import SECTIONS, RunSpec

RUN_ID_LENGTH = 12
#: (section, option) pairs that say how a run is kept, not what it computes: not part of the run id
#: (nor of what a checkpoint must match); the resolved spec and the run file keep them
RUN_SETTINGS = (("record", "checkpoint_every"),)


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


def _plain_diagnostics(diagnostics, on_path: Callable[[str], Any]) -> list:
    # a diagnostic at its default options is its bare name (as specs wrote it before diagnostics
    # had options, so those runs keep their ids), otherwise {kind: name, <every option>}
    return [s.kind if s.options == DIAGNOSTICS[s.kind].Options() else _plain(s, on_path)
            for s in diagnostics]


def _entries(run_spec: RunSpec) -> list[tuple[str, Any, Callable]]:
    """The top-level keys of the resolved dict, the objects their values are made from, and how."""
    return [("name", run_spec.name, _plain), ("description", run_spec.description, _plain),
            *((section, getattr(run_spec, section), _plain) for section in SECTIONS),
            ("diagnostics", run_spec.diagnostics, _plain_diagnostics)]


#: the top-level keys of the resolved dict, in its order (that of :func:`_entries`)
_ALL_KEYS = ("name", "description", *SECTIONS, "diagnostics")
#: the top-level keys of the run-id text in the order it writes them (sorted; no name, description)
_ID_KEYS = tuple(sorted(key for key in _ALL_KEYS if key not in ("name", "description")))


def _resolved(run_spec: RunSpec, on_path: Callable[[str], Any]) -> dict[str, Any]:
    return {key: make(value, on_path) for key, value, make in _entries(run_spec)}


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=None)
def _key_text(key: str) -> str:
    return _dumps(key) + ":"


def file_paths(run_spec: RunSpec, memo: dict[int, tuple[Any, list[str]]] | None = None) -> list[str]:
    """Every ``path`` option of the run (data and init files), in spec order. ``memo`` (a dict
    the caller keeps for many runs, as :func:`canonical_json`'s ``texts``) remembers each
    top-level value's paths by the identity of the value: a sweep's points share their sections."""
    if memo is None:
        paths: list[str] = []
        _resolved(run_spec, lambda p: paths.append(p) or p)
        return paths
    paths = []
    for key in _ALL_KEYS:
        value = getattr(run_spec, key)
        hit = memo.get(id(value))
        if hit is None or hit[0] is not value:  # the entry keeps ``value`` alive: its id stays its own
            found: list[str] = []
            (_plain_diagnostics if key == "diagnostics" else _plain)(value, lambda p: found.append(p) or p)
            hit = memo[id(value)] = (value, found)
        if hit[1]:
            paths += hit[1]
    return paths


def with_file_hashes(run_spec: RunSpec, file_hashes: dict[str, str],
                     memo: dict[int, tuple[Any, list[str]]] | None = None) -> RunSpec:
    """``run_spec`` carrying the hashes (``path -> hex``, as :func:`run_id` used them) of its files
    (``memo``: see :func:`file_paths`)."""
    paths = file_paths(run_spec, memo)
    if not paths:
        return run_spec
    return dataclasses.replace(run_spec, file_hashes=tuple((p, file_hashes[p]) for p in paths))


def _without_run_settings(section: str, make: Callable) -> Callable:
    dropped = [option for sec, option in RUN_SETTINGS if sec == section]
    if not dropped:
        return make

    def made(value, on_path):
        d = make(value, on_path)
        for option in dropped:
            d.pop(option, None)
        return d
    return made


def resolved_dict(run_spec: RunSpec) -> dict[str, Any]:
    """The run as plain data, every default filled in (see module docstring)."""
    return _resolved(run_spec, lambda p: p)


def canonical_json(run_spec: RunSpec, *, file_hashes: dict[str, str] | None = None,
                   texts: dict[int, tuple[Any, str]] | None = None) -> str:
    """The text whose hash is the run id (steps 1-4 of the module docstring). ``file_hashes``
    (path -> hex digest) may carry hashes already computed in the same call of the caller.

    ``texts`` (a dict the caller keeps for many runs, e.g. a sweep's points) remembers the JSON
    text of each top-level value by the identity of the object it is made from: the points of a
    sweep share their section objects (the spec layer validates each distinct section once), so
    each is turned into text once. The text is the same as ``json.dumps(d, sort_keys=True,
    separators=(",", ":"))`` of the whole dict, written key by key in sorted order.
    """
    cache = {} if file_hashes is None else file_hashes

    def hash_path(path: str) -> str:
        if path not in cache:
            try:
                cache[path] = file_sha256(path)
            except OSError as err:
                raise SpecError([Problem(None, None, "", f"cannot hash {path} for the run id: {err}")]) from None
        return "sha256:" + cache[path]

    texts = {} if texts is None else texts
    parts = []
    for key in _ID_KEYS:
        value = getattr(run_spec, key)
        hit = texts.get(id(value))
        if hit is None or hit[0] is not value:  # the entry keeps ``value`` alive: its id stays its own
            make = _plain_diagnostics if key == "diagnostics" else _plain
            hit = texts[id(value)] = (value, _dumps(_without_run_settings(key, make)(value, hash_path)))
        parts.append(_key_text(key) + hit[1])
    return "{" + ",".join(parts) + "}"


def run_id(run_spec: RunSpec, *, file_hashes: dict[str, str] | None = None,
           texts: dict[int, tuple[Any, str]] | None = None) -> str:
    """First 12 hex digits of the sha256 of :func:`canonical_json` (``texts``: see there)."""
    text = canonical_json(run_spec, file_hashes=file_hashes, texts=texts)
    return hashlib.sha256(text.encode()).hexdigest()[:RUN_ID_LENGTH]
