"""A run's resolved spec (the YAML text every run file stores) as flat ``{dotted.key: value}``:
what ``lcnrun summary`` shows and filters on, and what the run index (:mod:`.index`) keeps of
each run so that a report needs no YAML at all.

Its home is the store (not the report layer) because the index's writers, inside the store,
flatten each run's spec once when they journal it; the reports import it from here.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def flatten(obj: Any, prefix: str = "", out: dict | None = None) -> dict[str, Any]:
    """Nested mappings -> ``{dotted.key: value}``; lists (and everything else) are values."""
    out = {} if out is None else out
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                flatten(v, key, out)
            else:
                out[key] = v
    elif prefix:
        out[prefix] = obj
    return out


@lru_cache(maxsize=8192)
def _block(text: str) -> tuple[tuple[str, Any], ...] | None:
    """One top-level entry of a YAML mapping, flattened; ``None`` if it is not exactly one."""
    try:
        value = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError:
        return None
    if not isinstance(value, dict) or len(value) != 1:
        return None
    return tuple(flatten(value).items())


def flatten_spec_text(text: str) -> dict[str, Any]:
    """A run file's resolved spec (YAML text) as ``{dotted.key: value}``; raises
    ``yaml.YAMLError`` for text that is not YAML.

    Fast for many runs of one sweep: the text is cut into its top-level entries (``model: ...``,
    ``data: ...``), each parsed once and cached, since runs of a sweep share most of them. Falls
    back to parsing the whole text if it is not laid out as one entry per unindented line.
    Values are shared between calls: treat them as read-only.
    """
    blocks: list[list[str]] = []
    for line in text.splitlines(keepends=True):
        if line[:1] not in ("", " ", "-", "\n", "#") and not line.startswith(("...", "---")):
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
        elif line.strip():
            blocks = []
            break
    out: dict[str, Any] = {}
    for lines in blocks:
        items = _block("".join(lines))
        if items is None:
            return flatten(yaml.load(text, Loader=_LOADER) or {})
        out.update(items)
    if not blocks and text.strip():
        return flatten(yaml.load(text, Loader=_LOADER) or {})
    return out
