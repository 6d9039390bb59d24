"""The ``lcnrun`` command line (typer). Thin: every verb parses its options, calls the library and
renders the result. Each group of verbs lives in its own module, registered below (one line each).

Exit codes (SPEC.md section 4): 0 success; 1 some runs failed / ``diff`` found differences;
2 bad usage or an invalid spec (one clear message, no traceback).
"""
from __future__ import annotations

from .app import app
from . import run as _run  # noqa: F401  validate, run


def main() -> None:
    app()


__all__ = ["app", "main"]
