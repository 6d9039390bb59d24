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


#: the first character of a line that starts a top-level entry ``key: ...`` with a plain key
_KEY_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
#: the first character of a line that continues an entry (indented, blank, a comment, a
#: sequence item of the entry's value)
_CONTINUED = frozenset(" \n\r#-")


@lru_cache(maxsize=8192)
def _block(text: str) -> tuple[Any, tuple[tuple[str, Any], ...]] | None:
    """``(key, flattened items)`` of one top-level entry of a YAML mapping; ``None`` if the text
    is not exactly one entry."""
    try:
        value = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError:
        return None
    if not isinstance(value, dict) or len(value) != 1:
        return None
    return next(iter(value)), tuple(flatten(value).items())


def _whole(text: str) -> dict[str, Any]:
    return flatten(yaml.load(text, Loader=_LOADER) or {})


def flatten_spec_text(text: str) -> dict[str, Any]:
    """A run file's resolved spec (YAML text) as ``{dotted.key: value}``, always equal to
    ``flatten(yaml.load(text, Loader=_LOADER) or {})`` (the whole text parsed); raises
    ``yaml.YAMLError`` for text that is not YAML.

    Fast for many runs of one sweep: the text is cut into its top-level entries (``model: ...``,
    ``data: ...``: a line starting with a letter, digit or ``_``, up to the next one), each parsed
    once and cached, since runs of a sweep share most of them. The parts give the whole's entries
    (in YAML a line at column 0 ends whatever the entry before it was in; an entry cut inside a
    quoted or flow value does not parse alone) unless two entries have equal keys (``a`` twice,
    ``1`` and ``true``: the whole keeps the last value) or an anchor is defined twice (the whole
    is an error): the text is then parsed whole, as it is when any line is of another kind
    (``...``, ``%``, ``?``, ``<<``, a quoted key, a tab) or any entry does not parse alone (one
    with a ``---`` line, say). Values are shared between calls: treat them as read-only.
    """
    if "&" in text:  # anchors: a name defined in two entries is an error only in the whole
        return _whole(text)
    blocks: list[list[str]] = []
    for line in text.splitlines(keepends=True):
        head = line[:1]
        if head in _KEY_START:
            blocks.append([line])
        elif head in _CONTINUED:  # (a "---" line: its entry is two documents, an error)
            if blocks:
                blocks[-1].append(line)
            elif line.strip():
                return _whole(text)
        else:
            return _whole(text)
    out: dict[str, Any] = {}
    keys = set()
    for lines in blocks:
        got = _block("".join(lines))
        if got is None or got[0] in keys:
            return _whole(text)
        keys.add(got[0])
        out.update(got[1])
    if not blocks and text.strip():
        return _whole(text)
    return out
