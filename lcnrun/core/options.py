"""Declarative options of every registered family member (models, losses, data, inits, dynamics).

Each member of a core family (a model, a loss, an init, a dynamics ...) declares its spec keys as a
frozen dataclass whose fields are made with :func:`option`. The field metadata says what a value must
be (``kind``), a simple check, the allowed choices and a one-line doc. The spec layer reads this
metadata to validate YAML generically, so a new family member is a new file plus one registry line,
and the core stays free of YAML: it only describes its own parameters as plain Python data.

Kinds understood by the spec layer:

``int``, ``float``, ``str``, ``bool``   scalars (``float`` accepts ints and ``1e-10``)
``int_list``                            list of positive integers, e.g. ``[4, 3, 2]``
``shape_list``                          list of int, or list of lists of int (D-dim), e.g. ``[[3, 3], [2, 2]]``
``shape``                               an int or a list of ints, e.g. ``64`` or ``[32, 32]``
``array``                               a (nested) list of numbers
``array_list``                          a list of (nested) lists of numbers, one per layer
``path``                                a file path, relative to the spec file
``mapping``                             a nested mapping validated by its owner (e.g. a teacher model)
``str_list``                            a list of strings
"""
from __future__ import annotations

import dataclasses
from dataclasses import MISSING
from typing import Any, Callable

# Checks are names (not lambdas) so that error messages can say them in words.
CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "positive": (lambda x: x > 0, "must be positive"),
    "nonnegative": (lambda x: x >= 0, "must be non-negative"),
    "at_least_one": (lambda x: x >= 1, "must be at least 1"),
    "at_least_two": (lambda x: x >= 2, "must be at least 2"),
    "probability": (lambda x: 0 <= x <= 1, "must be between 0 and 1"),
}


def option(
    default: Any = MISSING,
    *,
    kind: str,
    doc: str,
    check: str | None = None,
    choices: tuple[str, ...] | None = None,
    nullable: bool = False,
) -> Any:
    """A dataclass field carrying its validation metadata (see module docstring)."""
    if check is not None and check not in CHECKS:
        raise ValueError(f"unknown check {check!r}")
    metadata = {"kind": kind, "doc": doc, "check": check, "choices": choices, "nullable": nullable}
    if isinstance(default, (list, dict)):
        raise TypeError("mutable defaults are not allowed; use a tuple")
    return dataclasses.field(default=default, metadata=metadata)


def option_fields(options_cls: type) -> list[dataclasses.Field]:
    """The fields of an options dataclass, in declaration order."""
    return list(dataclasses.fields(options_cls))


def is_required(field: dataclasses.Field) -> bool:
    return field.default is MISSING and field.default_factory is MISSING  # type: ignore[misc]


class OptionError(ValueError):
    """A problem with one option value, found by the core's own consistency checks.

    ``key`` is the dotted key relative to the section (e.g. ``strides[1]``), ``message`` says what
    is wrong in words ("must be a positive integer").
    """

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclasses.dataclass(frozen=True)
class Section:
    """A resolved spec section or nested sub-section: ``kind`` plus that kind's options dataclass."""

    kind: str
    options: Any
