"""The ``lcnrun`` command line (typer). Thin: every verb parses its options, calls the library and
renders the result. Each group of verbs lives in its own module, registered below (one line each).

Exit codes (docs/spec.md section 4): 0 success; 1 some runs failed / ``diff`` found differences;
2 bad usage or an invalid spec (one clear message, no traceback).
"""
from __future__ import annotations

from .app import app
from . import run as _run  # noqa: F401  validate, run
from . import sweep as _sweep  # noqa: F401  sweep
from . import submit as _submit  # noqa: F401  submit
from . import report as _report  # noqa: F401  status, summary, diff
from . import figure as _figure  # noqa: F401  figure
from . import plot as _plot  # noqa: F401  plot
from . import html_report as _html_report  # noqa: F401  report
from . import reproduce as _reproduce  # noqa: F401  reproduce


def main() -> None:
    app()


__all__ = ["app", "main"]
