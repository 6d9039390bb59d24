"""Atomic replacement of a file: write a hidden temporary in the same folder, fsync, rename.

A temporary is named ``.<stem>.<host>.<pid>.<token>.tmp<ext>`` (a run ``abc123.h5`` is written as
``.abc123.node01.4242.9f3a1c07.tmp.h5``): hidden, never matching ``*.h5`` globs of readers that skip
dot files, and carrying the writer's host and pid so that a later sweep can tell a leftover of a
killed writer (:func:`clean_stale_temporaries`) from a file still being written.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

TEMPORARY_PATTERN = re.compile(
    r"^\.(?P<stem>[^.]+)\.(?P<host>[^.]+)\.(?P<pid>\d+)\.(?P<token>[0-9a-f]+)\.tmp(?P<ext>\.[^.]+)?$")


def _tag(text: str) -> str:
    """``text`` with every character outside ``[A-Za-z0-9_-]`` replaced by ``_`` (no dots)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text) or "_"


@lru_cache(maxsize=1)
def host_tag() -> str:
    """This host's name as it appears in temporary names."""
    return _tag(socket.gethostname())


def temporary_path(final: Path) -> Path:
    """A fresh hidden temporary name next to ``final`` (see the module docstring)."""
    final = Path(final)
    stem, ext = (final.name.split(".", 1) + [""])[:2]
    ext = "." + _tag(ext) if ext else ""
    return final.parent / (f".{_tag(stem)}.{host_tag()}.{os.getpid()}.{secrets.token_hex(4)}"
                           f".tmp{ext}")


def open_own_file(path: os.PathLike | str, flags: int, mode: int = 0o666) -> int:
    """``os.open`` of a file lcnrun keeps under a fixed name in a results folder (a claim, the
    experiment's lock, a run-index file, the log of submissions), never through a symbolic link:
    a link planted under such a name (a hostile or carelessly copied folder) would make lcnrun
    create, truncate or append to a file outside the results folder. Raises ``OSError`` (ELOOP,
    with the path) for a link."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "a symbolic link where lcnrun keeps a file of its own: not "
                          "followed (remove the link)", str(path)) from None
        raise


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_replace(final: Path, fsync: bool = True, named_as: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path; on a clean exit it replaces ``final`` atomically (the temporary is
    named as that of ``named_as`` if given: a hidden file's temporary then carries a run's stem).

    The body must write and *close* the temporary. Then: fsync the temporary, ``os.replace`` it
    onto ``final``, fsync the folder. If the body (or any of these steps) raises, including
    ``KeyboardInterrupt``, the temporary is removed and the exception propagates (an ``OSError``
    that names no file, such as a full disk's ``ENOSPC`` of a write, then names ``final``);
    ``final`` is untouched. Concurrent writers of one ``final`` each use their own temporary: the last rename
    wins and ``final`` is always one whole file.
    """
    final = Path(final)
    tmp = temporary_path(final if named_as is None else named_as)
    try:
        yield tmp
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, final)
    except OSError as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if err.filename is None and err.errno is not None:  # a write's error names no file
            raise type(err)(err.errno, err.strerror, str(final)) from err
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(final.parent)


def atomic_write_text(path: Path, text: str, fsync: bool = True) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_replace`)."""
    with atomic_replace(Path(path), fsync=fsync) as tmp:
        with open(tmp, "x", encoding="utf-8", newline="") as fh:
            fh.write(text)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (a zombie counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OverflowError:
        return False
    return True


def clean_stale_temporaries(folder: Path, older_than_seconds: float = 600.0) -> list[Path]:
    """Remove leftover temporaries of dead writers in ``folder``; return the removed paths.

    A temporary is removed only if (1) it was written on this host, (2) its writer pid is no longer
    alive and (3) it was last modified more than ``older_than_seconds`` ago. Files from other hosts
    are never touched (their pid says nothing here); (3) guards against pid namespaces (containers
    sharing a host name). Safe to run from several sweeps at once: a file is only ever removed when
    nobody can still be writing it, and a file already removed by another sweep is skipped.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return removed
    now = time.time()
    for name in names:
        m = TEMPORARY_PATTERN.match(name)
        if m is None or m["host"] != host_tag() or pid_alive(int(m["pid"])):
            continue
        path = folder / name
        try:
            if now - path.stat().st_mtime < older_than_seconds:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed
