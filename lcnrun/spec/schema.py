"""Validation of a spec mapping into frozen dataclasses, driven by the core's ``option()`` metadata.

The top-level sections live in one table, :data:`SECTIONS` (section name -> registry or fixed
options dataclass, and the default kind); adding a section is one line there plus its field in
:class:`RunSpec`. A section with a registry is a mapping ``{kind: <name>, <options of that kind>}``
and becomes :class:`~lcnrun.core.options.Section`; a fixed section (``record``) has no kind.

Every problem is collected (not only the first) as ``(file, line, dotted key, message)``; a missing
key gets the line of its closest existing parent. After the sections validate, the cross-section
checks build the model, check the data against it (``core.data.check_dataset``) and build the
initializations that read numbers from the spec or a file (so an impossible architecture is an
error at validation time, with the key that causes it).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..core.data import DATA, TARGETS, check_dataset
from ..core.diagnostics import DIAGNOSTICS
from ..core.dynamics import DYNAMICS
from ..core.init import INITS
from ..core.losses import LOSSES
from ..core.models import MODELS
from ..core.options import CHECKS, OptionError, Section, is_required, option_fields
from ..core.recording import RecordOptions
from ..core.regularization import RegularizationOptions
from .errors import Problem

#: top-level sections: name -> (registry of kinds, or a fixed options dataclass; default kind).
#: A default kind of ``None`` makes a registry section (and its ``kind``) required.
SECTIONS: dict[str, tuple[dict[str, type] | type, str | None]] = {
    "model": (MODELS, None),
    "data": (DATA, "gaussian"),
    "init": (INITS, "gaussian"),
    "loss": (LOSSES, "square"),
    "dynamics": (DYNAMICS, None),
    "record": (RecordOptions, None),
    "regularization": (RegularizationOptions, None),
}

#: registries that nested sections name in their option kind ``section:<registry>``
REGISTRIES: dict[str, dict[str, type]] = {
    "models": MODELS, "targets": TARGETS, "data": DATA, "inits": INITS, "losses": LOSSES,
    "dynamics": DYNAMICS,
}

#: init kinds whose ``build`` reads numbers from the spec or a file: built at validation time
INITS_CHECKED_BY_BUILDING = ("file", "explicit")

#: keys of model options named by core errors raised while checking the data against the model
#: (the fields of every registered family's ``Options``)
MODEL_KEY_RE = re.compile(r"^(%s)(\[|\.|$)" % "|".join(sorted(
    {re.escape(f.name) for family in MODELS.values() for f in dataclasses.fields(family.Options)})))
NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
#: an experiment's name is a folder name under the results folder: at most this long (file
#: systems allow 255 bytes; the folder also appears in Slurm job names and log paths)
NAME_MAX = 100
TOP_KEYS = ("name", "description", *SECTIONS, "diagnostics", "sweep")


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """One fully resolved run: every section validated, every default filled in.

    ``spec_path`` (the experiment file it came from) and ``file_hashes`` are not part of equality
    or of the run id.
    """

    name: str
    description: str = ""
    model: Section
    data: Section
    init: Section
    loss: Section
    dynamics: Section
    record: RecordOptions
    regularization: RegularizationOptions
    #: ``Section(name, options)`` per diagnostic, in the spec's order
    diagnostics: tuple[Section, ...] = ()
    spec_path: str | None = field(default=None, compare=False)
    #: ``((path, sha256 hex), ...)`` of the files its run id was computed from (set when a sweep
    #: is expanded): the runner checks that it computes on this very content
    file_hashes: tuple[tuple[str, str], ...] = field(default=(), compare=False)


@dataclass
class Context:
    """Where problems go: the file as named, its line map, the folder relative paths start from."""

    file: str | None
    lines: dict[str, int]
    base_dir: Path
    check_files: bool = True
    problems: list[Problem] = field(default_factory=list)
    #: results of validation steps already taken (:func:`_memoized`), shared by the contexts of one
    #: sweep's points (same file, lines, folder): ``None`` validates everything afresh
    memo: dict | None = None

    def line_of(self, key: str) -> int | None:
        """Line of ``key``, or of its closest parent that exists in the file."""
        while True:
            if key in self.lines:
                return self.lines[key]
            if not key:
                return None
            key = parent_key(key)

    def add(self, key: str, message: str) -> None:
        self.problems.append(Problem(self.file, self.line_of(key), key, message))


def parent_key(key: str) -> str:
    """``model.strides[1]`` -> ``model.strides`` -> ``model`` -> ``""``."""
    if key.endswith("]"):
        return key[: key.rindex("[")]
    return key[: key.rindex(".")] if "." in key else ""


def did_you_mean(word: Any, candidates) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# -------------------------------------------------------------------------------------------------
# value converters: raise _Invalid(sub-key suffix, message); return the frozen value
class _Invalid(Exception):
    def __init__(self, sub: str, message: str):
        super().__init__(message)
        self.sub, self.message = sub, message


def _show(v: Any) -> str:
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return "null" if v is None else repr(v)


def _int(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        raise _Invalid("", f"must be an integer, not {_show(v)}")
    return int(v)


def _pos_int(v):
    number = isinstance(v, (int, float)) and not isinstance(v, bool)
    if not number or (isinstance(v, float) and not v.is_integer()) or v < 1:
        raise _Invalid("", "must be a positive integer" + ("" if number else f", not {_show(v)}"))
    return int(v)


def _float(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Invalid("", f"must be a number, not {_show(v)}")
    if not math.isfinite(v):
        raise _Invalid("", f"must be a finite number, not {v}")
    return float(v) + 0.0  # -0.0 -> 0.0


def _str(v):
    if not isinstance(v, str):
        raise _Invalid("", f"must be a string, not {_show(v)}")
    return v


def _bool(v):
    if not isinstance(v, bool):
        raise _Invalid("", f"must be true or false, not {_show(v)}")
    return v


def _items(v, conv: Callable) -> tuple:
    if not isinstance(v, (list, tuple)):
        raise _Invalid("", f"must be a list, not {_show(v)}")
    out = []
    for i, x in enumerate(v):
        try:
            out.append(conv(x))
        except _Invalid as err:
            raise _Invalid(f"[{i}]{err.sub}", err.message) from None
    return tuple(out)


def _shape_item(v):
    return _items(v, _pos_int) if isinstance(v, (list, tuple)) else _pos_int(v)


def _array(v):
    """A (nested) list of numbers, rectangular, as nested tuples of floats."""
    if not isinstance(v, (list, tuple)):
        raise _Invalid("", f"must be a (nested) list of numbers, not {_show(v)}")
    out = _items(v, lambda x: _array(x) if isinstance(x, (list, tuple)) else _float(x))
    kinds = {type(x) for x in out}
    if len(kinds) > 1 or (tuple in kinds and len({len(x) for x in out}) > 1):
        raise _Invalid("", "must be a rectangular (nested) list of numbers")
    return out


def _mapping(v):
    if not isinstance(v, dict):
        raise _Invalid("", f"must be a mapping, not {_show(v)}")
    return dict(v)


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "int": _int, "float": _float, "str": _str, "bool": _bool, "path": _str,
    "int_list": lambda v: _items(v, _pos_int),
    "shape_list": lambda v: _items(v, _shape_item),
    "shape": _shape_item,
    "array": _array,
    "array_list": lambda v: _items(v, _array),
    "str_list": lambda v: _items(v, _str),
    "mapping": _mapping,
}


def _check(value, meta) -> None:
    """The ``check`` and ``choices`` of an option (elementwise over a tuple of numbers)."""
    check, choices = meta.get("check"), meta.get("choices")
    if check is not None:
        ok, words = CHECKS[check]
        for i, x in enumerate(value) if isinstance(value, tuple) else [(None, value)]:
            if isinstance(x, (int, float)) and not ok(x):
                raise _Invalid("" if i is None else f"[{i}]", words)
    if choices is not None and value not in choices:
        raise _Invalid("", f"must be one of {', '.join(map(str, choices))}, not {value!r}"
                           + did_you_mean(value, choices))


def _resolve_path(value: str, ctx: Context) -> str:
    p = Path(os.path.expanduser(value))
    p = Path(os.path.abspath(p if p.is_absolute() else ctx.base_dir / p))
    if ctx.check_files and not p.is_file():
        raise _Invalid("", f"file not found: {p}" if not p.exists() else f"is not a file: {p}")
    return str(p)


# -------------------------------------------------------------------------------------------------
# memo: a sweep of 100,000 points has a few distinct sections; each is validated once
def _memoized(key_of: Callable[..., tuple]):
    """Remember a validation step's result and the problems it added, in ``ctx.memo`` (the
    step's last positional argument is the context).

    ``key_of(memo, *args, **kwargs)`` (without ``ctx``) names everything the step reads besides
    the context's file, lines, folder and ``check_files``, which are the same for every context
    that shares a memo: raw YAML values by their text (:func:`_raw_text`), classes, registries and
    validated sections by identity (the memo keeps the arguments alive, so an id stays its
    object's). A hit returns the very same frozen objects and adds the same problems as the first
    call.
    """
    def wrap(fn):
        @functools.wraps(fn)
        def step(*args, **kwargs):
            ctx = args[-1]
            memo = ctx.memo
            if memo is None:
                return fn(*args, **kwargs)
            key = (step, key_of(memo, *args[:-1], **kwargs))
            hit = memo.get(key)
            if hit is None:
                start = len(ctx.problems)
                result = fn(*args, **kwargs)
                hit = memo[key] = (result, tuple(ctx.problems[start:]), args[:-1])
            elif hit[1]:
                ctx.problems.extend(hit[1])
            return hit[0]
        return step
    return wrap


def _raw_text(memo: dict, raw: Any) -> str:
    """``repr(raw)``: exact for YAML data (``1``, ``1.0`` and ``true`` differ); remembered by
    identity (int keys of the memo), since a sweep's points share the mappings their overrides
    do not change, and the memo keeps ``raw`` alive."""
    if not raw or not isinstance(raw, (dict, list)):
        return repr(raw)
    hit = memo.get(id(raw))
    if hit is None or hit[0] is not raw:
        hit = memo[id(raw)] = (raw, repr(raw))
    return hit[1]


# -------------------------------------------------------------------------------------------------
# sections
@_memoized(lambda memo, cls, raw, path, *, ignore=(): (id(cls), _raw_text(memo, raw), path, ignore))
def validate_options(cls: type, raw: dict, path: str, ctx: Context, *, ignore: tuple = ()) -> Any:
    """An instance of the options dataclass ``cls`` from ``raw``, or ``None`` (problems in ctx)."""
    fields = option_fields(cls)
    names = [f.name for f in fields]
    ok = True
    for key in raw:
        if key not in names and key not in ignore:
            ctx.add(f"{path}.{key}", f"unknown key '{key}'" + did_you_mean(key, names)
                    + ("" if names else " (this kind has no options)"))
            ok = False
    values = {}
    for f in fields:
        key, meta = f"{path}.{f.name}", f.metadata
        if f.name not in raw:
            if is_required(f):
                ctx.add(key, f"is required ({meta.get('doc', '')})")
                ok = False
            continue
        v, kind = raw[f.name], meta.get("kind", "")
        if v is None:
            if meta.get("nullable"):
                values[f.name] = None
            else:
                ctx.add(key, "must not be null")
                ok = False
            continue
        if kind.startswith("section:"):
            default = f.default if isinstance(f.default, Section) else None
            sec = validate_section(v, key, REGISTRIES[kind.split(":", 1)[1]],
                                   default.kind if default else None, ctx)
            ok = ok and sec is not None
            values[f.name] = sec
            continue
        try:
            value = CONVERTERS[kind](v)
            if kind == "path":
                value = _resolve_path(value, ctx)
            _check(value, meta)
        except _Invalid as err:
            ctx.add(key + err.sub, err.message)
            ok = False
            continue
        values[f.name] = value
    if not ok:
        return None
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        ctx.add(path, str(err))
        return None


@_memoized(lambda memo, raw, path, registry, default_kind: (_raw_text(memo, raw), path, id(registry),
                                                            default_kind))
def validate_section(raw: Any, path: str, registry: dict[str, type], default_kind: str | None,
                     ctx: Context) -> Section | None:
    """``{kind: k, ...}`` -> ``Section(k, registry[k].Options(...))`` after ``check_options``."""
    known = ", ".join(registry)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        ctx.add(path, f"must be a mapping with a 'kind' key (one of {known}), not {_show(raw)}")
        return None
    kind = raw.get("kind", default_kind)
    if kind is None:
        ctx.add(f"{path}.kind", f"is required (known kinds: {known})")
        return None
    if not isinstance(kind, str) or kind not in registry:
        ctx.add(f"{path}.kind", f"unknown kind {kind!r}" + did_you_mean(kind, registry) + f"; known kinds: {known}")
        return None
    cls = registry[kind]
    options = validate_options(cls.Options, raw, path, ctx, ignore=("kind",))
    if options is None:
        return None
    check = getattr(cls, "check_options", None)
    if check is not None:
        try:
            check(options)
        except OptionError as err:
            ctx.add(f"{path}.{err.key}", err.message)
            return None
    resolve = getattr(cls, "resolve_options", None)  # one written form: equal runs, equal ids
    if resolve is not None:
        options = resolve(options)
    return Section(kind, options)


def _cross_check_key(memo: dict, sections: dict[str, Any]) -> tuple:
    """What :func:`_cross_check` reads (keep in step with it): the model, data and init sections
    (init only for the kinds it builds), the dynamics' kind (``check_model`` is a class method)."""
    init, dynamics = sections.get("init"), sections.get("dynamics")
    return (id(sections.get("model")), id(sections.get("data")),
            dynamics.kind if dynamics is not None else None,
            id(init) if init is not None and init.kind in INITS_CHECKED_BY_BUILDING else
            (init.kind if init is not None else None))


@_memoized(_cross_check_key)
def _cross_check(sections: dict[str, Any], ctx: Context) -> None:
    """Model against data and init: an impossible architecture is a spec error."""
    model_section = sections.get("model")
    if model_section is None:
        return
    try:
        model = MODELS[model_section.kind](model_section.options)
    except OptionError as err:
        ctx.add(f"model.{err.key}", err.message)
        return
    dynamics = sections.get("dynamics")
    if dynamics is not None:
        try:
            DYNAMICS[dynamics.kind].check_model(model)
        except OptionError as err:
            ctx.add(f"dynamics.{err.key}", err.message)
    data = sections.get("data")
    if data is not None and (ctx.check_files or data.kind != "file"):
        try:
            check_dataset(data, model)
        except OptionError as err:
            ctx.add(("model." if MODEL_KEY_RE.match(err.key) else "data.") + err.key, err.message)
        except Exception as err:  # a broken data file can fail in many ways
            ctx.add("data", f"cannot be checked against the model: {err}")
    init = sections.get("init")
    if init is not None and init.kind in INITS_CHECKED_BY_BUILDING and (ctx.check_files or init.kind != "file"):
        try:
            INITS[init.kind].build(init.options, model)
        except OptionError as err:
            ctx.add(f"init.{err.key}", err.message)
        except Exception as err:
            ctx.add("init", f"cannot be checked against the model: {err}")


def validate_diagnostics(raw: Any, ctx: Context) -> tuple[Section, ...]:
    """``[name, {kind: name, option: value}, ...]`` -> one :class:`Section` per diagnostic (its
    ``Options`` validated like any section's); a bare name has the default options."""
    if not isinstance(raw, (list, tuple)):
        ctx.add("diagnostics", f"must be a list of diagnostic names or {{kind: name, ...}} mappings, not {_show(raw)}")
        return ()
    out, seen = [], {}
    for i, item in enumerate(raw):
        where = f"diagnostics[{i}]"
        if isinstance(item, str):
            if item not in DIAGNOSTICS:
                ctx.add(where, f"unknown diagnostic {item!r} (known: {', '.join(DIAGNOSTICS) or 'none yet'})"
                        + did_you_mean(item, DIAGNOSTICS))
                continue
            item = {"kind": item}
        elif not isinstance(item, dict):
            ctx.add(where, f"must be a diagnostic name or a mapping {{kind: name, option: value}}, not {_show(item)}")
            continue
        section = validate_section(item, where, DIAGNOSTICS, None, ctx)
        if section is None:
            continue
        if section.kind in seen:
            ctx.add(where, f"{section.kind} is already diagnostics[{seen[section.kind]}] (each diagnostic once)")
            continue
        seen[section.kind] = i
        out.append(section)
    return tuple(out)


_ABSENT = object()


def _run_section(sec: str, value: Any, present: bool, sections: dict[str, Any], ctx: Context) -> None:
    """Validate top-level section ``sec`` of a run spec (``value``; ``present``: the key is
    written) into ``sections[sec]`` (left out if it is required and missing)."""
    registry, default_kind = SECTIONS[sec]
    if isinstance(registry, dict):
        if value is None and default_kind is None and not present:
            ctx.add(sec, f"is required (a mapping with a 'kind' key: one of {', '.join(registry)})")
            return
        sections[sec] = validate_section(value, sec, registry, default_kind, ctx)
    elif value is None or isinstance(value, dict):
        sections[sec] = validate_options(registry, value or {}, sec, ctx)
    else:
        ctx.add(sec, f"must be a mapping, not {_show(value)}")


def validate_run(raw: dict, ctx: Context, *, spec_path: str | None = None) -> RunSpec | None:
    """A :class:`RunSpec` from a spec mapping without ``sweep``; ``None`` if ctx got problems."""
    start = len(ctx.problems)
    for key in raw:
        if key not in TOP_KEYS:
            ctx.add(str(key), f"unknown top-level key '{key}'" + did_you_mean(key, TOP_KEYS))
        elif key == "sweep":
            ctx.add("sweep", "a run spec has no sweep")
    name = raw.get("name")
    if name is None:
        ctx.add("name", "is required (the experiment's name; results go to results/<name>/)")
    elif not isinstance(name, str) or not NAME_RE.match(name):
        ctx.add("name", f"must be letters, digits, '.', '_' or '-', not {_show(name)}")
    elif name.startswith("."):  # '.', '..' and hidden folders: results go to results/<name>/
        ctx.add("name", f"must not start with '.' (results go to results/<name>/), not {name!r}")
    elif len(name) > NAME_MAX:
        ctx.add("name", f"is {len(name)} characters long; at most {NAME_MAX} (it names the "
                        "experiment's folder)")
    description = raw.get("description", "")
    if not isinstance(description, str):
        ctx.add("description", f"must be a string, not {_show(description)}")
    sections: dict[str, Any] = {}
    memo = ctx.memo
    for sec in SECTIONS:
        value = raw.get(sec)
        if memo is None:
            _run_section(sec, value, sec in raw, sections, ctx)
            continue
        # a sweep's points share the mappings of the sections their overrides leave alone (and
        # equal overrides share theirs): a section object seen before gives what it gave then
        # (the memoized steps would too, after writing out its key)
        key = (_run_section, sec, id(value), sec in raw)
        hit = memo.get(key)
        if hit is None or hit[0] is not value:
            start_sec = len(ctx.problems)
            _run_section(sec, value, sec in raw, sections, ctx)
            memo[key] = (value, sections.get(sec, _ABSENT), tuple(ctx.problems[start_sec:]))
            continue
        if hit[1] is not _ABSENT:
            sections[sec] = hit[1]
        if hit[2]:
            ctx.problems.extend(hit[2])
    diagnostics = validate_diagnostics(raw.get("diagnostics") or [], ctx)
    if len(ctx.problems) > start or any(s is None for s in sections.values()):
        return None
    _cross_check(sections, ctx)
    for i, d in enumerate(diagnostics):
        applies_to = getattr(DIAGNOSTICS[d.kind], "models", None)
        if applies_to is not None and sections["model"].kind not in applies_to:
            ctx.add(f"diagnostics[{i}]", f"{d.kind} applies to model kind {' or '.join(applies_to)}, "
                                         f"not {sections['model'].kind}")
    if len(ctx.problems) > start:
        return None
    return RunSpec(name=name, description=description, diagnostics=tuple(diagnostics),
                   spec_path=spec_path, **sections)


assert set(SECTIONS) <= {f.name for f in dataclasses.fields(RunSpec)}, "every section needs a RunSpec field"
