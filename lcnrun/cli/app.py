"""The typer application and what every verb shares: consoles, error handling, common options."""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="lcnrun",
    help="Experiments on the training geometry of deep linear and linear convolutional networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Not on a terminal (a log, a pipe, a test): wide tables are not cut at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: colour of a run state in every table (status, sweep, submit); a scheduler's live states as running
STATE_STYLE = {"completed": "green", "diverged": "red", "failed": "red", "unreadable": "red",
               "stopped": "yellow", "running": "cyan", "queued": "cyan", "pending": "dim"}

ResultsOption = typer.Option(Path("results"), "--results", help="results folder (one sub-folder per experiment)")


class UsageError(Exception):
    """Bad usage found by a verb (a missing folder, an index out of range ...): exit code 2."""


def fail(message: str, code: int = EXIT_USAGE) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(fn):
    """Turn the library's expected errors into one message and exit code 2 (never a traceback)."""
    from ..spec import SpecError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SpecError as err:
            err_console.print(str(err), highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None
        except UsageError as err:
            fail(str(err))
        except KeyboardInterrupt:
            err_console.print("interrupted", highlight=False)
            raise typer.Exit(130) from None
    return wrapper


def is_terminal() -> bool:
    return sys.stdout.isatty()
