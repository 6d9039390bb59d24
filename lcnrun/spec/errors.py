"""Spec problems, reported all at once.

A :class:`SpecError` carries every :class:`Problem` found in a spec; ``str()`` renders one per line,

    experiments/x.yaml:12: model.strides[1]: must be a positive integer
    experiments/x.yaml:14: sweep point 3 (model.strides=[0, 1, 1]): model.strides[0]: must be a positive integer

so that the CLI can print it and exit 2 without a traceback.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem: ``file`` (as the user named it, or ``None`` for text), 1-based ``line`` (or
    ``None``), dotted ``key`` (``""`` for the whole file), ``message``; ``context`` names a sweep
    point when the problem belongs to one."""

    file: str | None
    line: int | None
    key: str
    message: str
    context: str = ""

    def __str__(self) -> str:
        where = self.file or "<spec>"
        if self.line is not None:
            where += f":{self.line}"
        parts = [where] + [p for p in (self.context, self.key) if p] + [self.message]
        return ": ".join(parts)


class SpecError(Exception):
    """An invalid spec; ``problems`` lists everything wrong (at least one)."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
