"""The typer application and what every verb shares: consoles, error handling, common options.

Start-up matters (``lcnrun status`` and ``validate`` are typed by hand, thousands of Slurm tasks
start ``lcnrun run``): nothing here imports rich before something is printed, and the verb modules
import scipy, numba, h5py, matplotlib and the runner inside the verbs that use them
(tests/test_cli_startup.py reads what ``lcnrun --help`` and ``validate`` import).
"""
from __future__ import annotations

import errno
import functools
import os
import sys
from pathlib import Path

import typer

app = typer.Typer(
    name="lcnrun",
    help="Experiments on the training geometry of deep linear and linear convolutional networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)



class _LazyConsole:
    """A ``rich.console.Console`` made on first use (importing rich costs ~0.1 s of start-up)."""

    def __init__(self, stderr: bool):
        self._stderr = stderr
        self._console = None

    def real(self):
        """The console itself (for rich objects that want one, e.g. a Progress)."""
        return self._get()

    def _get(self):
        if self._console is None:
            from rich.console import Console  # noqa: PLC0415
            stream = sys.stderr if self._stderr else sys.stdout
            # Not on a terminal (a log, a pipe, a test): wide tables are not cut at 80 columns.
            self._console = Console(stderr=self._stderr, width=None if stream.isatty() else 200)
        return self._console

    def __getattr__(self, name: str):
        return getattr(self._get(), name)

    def styled(self, *parts: str | tuple[str, str]) -> None:
        """One line of ``parts`` (texts, or ``(text, style)`` pairs). Where rich would print no
        colour anyway (not a terminal, no forced colour) and has not been loaded yet, the text is
        written directly: a verb that prints one line (``validate``) does not import rich for it
        (~0.1 s). Never wrapped there (a log stays greppable)."""
        stream = sys.stderr if self._stderr else sys.stdout
        if self._console is None and not _colour_wanted(stream):
            stream.write("".join(p if isinstance(p, str) else p[0] for p in parts) + "\n")
            return
        from rich.text import Text  # noqa: PLC0415
        self._get().print(Text.assemble(*parts), highlight=False)


#: environment variables with which rich colours output that is not a terminal
_FORCE_COLOUR = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def _colour_wanted(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool((isatty is not None and isatty()) or any(os.environ.get(v) for v in _FORCE_COLOUR))


console = _LazyConsole(stderr=False)
err_console = _LazyConsole(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: colour of a run state in every table (status, sweep, submit); a scheduler's live states as running
STATE_STYLE = {"completed": "green", "diverged": "red", "failed": "red", "unreadable": "red",
               "stopped": "yellow", "running": "cyan", "queued": "cyan", "pending": "dim"}

ResultsOption = typer.Option(Path("results"), "--results", help="results folder (one sub-folder per experiment)")


class UsageError(Exception):
    """Bad usage found by a verb (a missing folder, an index out of range ...): exit code 2."""


def escape(text: str) -> str:
    """``rich.markup.escape`` (imported on use)."""
    from rich.markup import escape as rich_escape  # noqa: PLC0415
    return rich_escape(text)


def fail(message: str, code: int = EXIT_USAGE) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


#: what to add to the operating system's words for the errors a results folder meets
OS_ERROR_HINTS = {
    errno.ENOSPC: "the disk is full; nothing was written for this run (free space, or --results "
                  "elsewhere, and run again)",
    errno.EDQUOT: "the disk quota is exhausted; nothing was written for this run",
    errno.EROFS: "the folder is on a read-only file system (--results elsewhere?)",
    errno.EACCES: "no permission to write there (--results elsewhere?)",
    errno.EPERM: "no permission to write there (--results elsewhere?)",
    errno.ENAMETOOLONG: "a file name is too long for this file system",
    errno.ELOOP: "a symbolic link points to itself (a loop of links)",
}


def describe_os_error(err: OSError) -> str:
    """``path: words of the OS; what it means here`` for an OSError met reading or writing."""
    what = err.strerror or str(err)
    where = err.filename if err.filename is not None else ""
    # the hint explains the OS's own words; an error lcnrun words itself says what it means
    hint = OS_ERROR_HINTS.get(err.errno or 0, "") if what == os.strerror(err.errno or 0) else ""
    return ": ".join(str(p) for p in (where, what, hint) if p)


def _expected_kind(err: BaseException) -> str | None:
    """``"spec"`` for a bad spec (``SpecError``), ``"usage"`` for an experiment folder that is not
    one (``ExperimentDirError``) or a file that is not a run file (``RunFileError``), else None;
    without importing the spec and store layers (and the core) into verbs that never load them:
    such an error exists only once its module is."""
    for module, name, kind in (("lcnrun.spec.errors", "SpecError", "spec"),
                               ("lcnrun.store.experiment", "ExperimentDirError", "usage"),
                               ("lcnrun.store.runfile", "RunFileError", "usage")):
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(err, cls):
            return kind
    return None


def handle_errors(fn):
    """Turn the library's expected errors into one message and exit code 2 (never a traceback):
    a bad spec, bad usage, a results folder that cannot be written (read-only, full, a file where
    a folder belongs), a file that is not a run file."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UsageError as err:
            fail(str(err))
        except OSError as err:
            fail(describe_os_error(err))
        except KeyboardInterrupt:
            err_console.print("interrupted", highlight=False)
            raise typer.Exit(130) from None
        except Exception as err:
            kind = _expected_kind(err)
            if kind is None:
                raise
            if kind == "usage":
                fail(str(err))
            err_console.print(str(err), highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None
    return wrapper


def is_terminal() -> bool:
    return sys.stdout.isatty()
