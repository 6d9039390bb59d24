"""The run index: what every run file of an experiment says (status, scalars, spec), kept beside
the run files so that ``lcnrun status`` and ``summary`` over 100,000 runs read one folder instead
of 100,000 HDF5 files. The run files stay the truth; the index is a cache of them.

Layout, under the experiment folder (``results/<name>/.index/``)::

    journal.<host>.<pid>.<random>.jsonl   one per writing process, append-only, one line per run
                                          file written: {"id", "ino", "size", "mtime_ns",
                                          "attrs" (read_run_attrs without "spec"), "spec"}
    snapshot.json                         the journals merged by a reader (atomic replace), with
                                          how far into each journal it read
    unreadable/<run_id>.json              a run file found unreadable where it was needed (e.g.
                                          its data region by ``read_run``): {"ino", "size",
                                          "mtime_ns", "reason"}

Why journals and not SQLite: the results folder is often on NFS, where SQLite's locking is not
reliable (its documentation says so) and a crashed client can leave a lock behind; a journal has a
single writer (no locking at all), and a reader needs nothing but to read. Each entry is written
with one ``write`` of one line to a file opened, appended and closed per entry (close-to-open:
a reader on another node sees whole lines once the writer closed the file); a reader ignores a
last line without its newline (a writer that is still writing, or was killed).

Why it can never hide or invent a run: a reader lists the run files themselves (regular files
``<run_id>.h5``; ``stat`` gives each file's identity: inode, size, mtime in ns) and takes an
entry only for a file of the same identity (run files are replaced by rename, never changed in
place, so a new file has a new identity). Files without a matching entry are read from HDF5 as
before (and their entries written into the next snapshot); entries without a file are ignored;
a damaged, stale or deleted index only costs time.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text, host_tag, pid_alive

INDEX_DIR = ".index"
SNAPSHOT = "snapshot.json"
SNAPSHOT_FORMAT = "lcnrun-run-index"
SNAPSHOT_VERSION = 1
UNREADABLE_DIR = "unreadable"
JOURNAL_PREFIX = "journal."
JOURNAL_SUFFIX = ".jsonl"


def index_dir(runs_dir: os.PathLike | str) -> Path | None:
    """``<experiment>/.index`` for the ``runs/`` folder of an experiment; ``None`` for any other
    folder of run files (no index: read the files)."""
    runs_dir = Path(runs_dir)
    return runs_dir.parent / INDEX_DIR if runs_dir.name == "runs" else None


def identity(st: os.stat_result) -> tuple[int, int, int]:
    """What tells one run file from another under the same name: inode, size, mtime (ns)."""
    return (st.st_ino, st.st_size, st.st_mtime_ns)


# -- writing ---------------------------------------------------------------------------------------
_JOURNAL: dict[str, str] = {}  # index folder -> this process's journal name


def _journal_name(folder: Path) -> str:
    key = str(folder)
    if key not in _JOURNAL or _JOURNAL[key].split(".")[2] != str(os.getpid()):  # forked: a new one
        _JOURNAL[key] = f"{JOURNAL_PREFIX}{host_tag()}.{os.getpid()}.{secrets.token_hex(4)}{JOURNAL_SUFFIX}"
    return _JOURNAL[key]


def _append(folder: Path, entry: dict) -> None:
    line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":"), allow_nan=True) + "\n").encode()
    folder.mkdir(exist_ok=True)
    fd = os.open(folder / _journal_name(folder), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line)  # one write of one line: readers see it whole or not at all
    finally:
        os.close(fd)


def note_written(path: os.PathLike | str) -> None:
    """Journal the run file just written at ``path`` (its final name, after the rename). Best
    effort: an index that cannot be written (read-only or full folder) is only slower to use, so
    nothing is raised. Also drops an ``unreadable`` mark of the run (a new file replaced it)."""
    path = Path(path)
    folder = index_dir(path.parent)
    if folder is None:
        return
    from .runfile import RunFileError, read_run_attrs  # noqa: PLC0415

    try:
        st = os.stat(path)
        attrs = read_run_attrs(path, check_marks=False)
    except (OSError, RunFileError):
        return
    spec = attrs.pop("spec", "")
    with contextlib.suppress(OSError):
        _append(folder, {"id": path.name[:-3], "ino": st.st_ino, "size": st.st_size,
                         "mtime_ns": st.st_mtime_ns, "attrs": attrs, "spec": spec})
    with contextlib.suppress(OSError):
        os.unlink(folder / UNREADABLE_DIR / f"{path.name[:-3]}.json")


def mark_unreadable(path: os.PathLike | str, reason: str) -> None:
    """Record that the run file at ``path`` could not be read where it was needed (its arrays,
    say, while its attributes read fine): from now on every reader calls it ``unreadable`` (until
    a new file replaces it). Best effort, never raises."""
    path = Path(path)
    folder = index_dir(path.parent)
    if folder is None:
        return
    with contextlib.suppress(OSError, ValueError):
        st = os.stat(path)
        (folder / UNREADABLE_DIR).mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / UNREADABLE_DIR / f"{path.name[:-3]}.json", json.dumps(
            {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "reason": reason}))


def unreadable_mark(path: os.PathLike | str, st: os.stat_result | None = None) -> str | None:
    """The reason ``path`` was marked unreadable, if the mark is for this very file; else None."""
    path = Path(path)
    folder = index_dir(path.parent)
    if folder is None:
        return None
    try:
        mark = json.loads((folder / UNREADABLE_DIR / f"{path.name[:-3]}.json").read_text(encoding="utf-8"))
        st = st or os.stat(path)
        if (mark["ino"], mark["size"], mark["mtime_ns"]) == identity(st):
            return str(mark["reason"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


# -- reading ---------------------------------------------------------------------------------------
@dataclass
class IndexedRun:
    """What the index (or the file itself) says of one run file: ``status`` (``unreadable`` with
    ``reason`` for a file that cannot be read), its ``attrs`` (read_run_attrs names, without
    ``spec``) and ``spec`` (the resolved spec YAML text), ``None`` for an unreadable file."""

    run_id: str
    path: str
    status: str
    reason: str = ""
    attrs: dict[str, Any] | None = None
    spec: str | None = None


@dataclass
class _Snapshot:
    entries: dict[str, dict] = field(default_factory=dict)   # run id -> entry (with identity)
    consumed: dict[str, int] = field(default_factory=dict)   # journal name -> bytes read
    changed: bool = False


def _load_snapshot(folder: Path) -> _Snapshot:
    try:
        doc = json.loads((folder / SNAPSHOT).read_text(encoding="utf-8"))
        if doc.get("format") != SNAPSHOT_FORMAT or doc.get("version") != SNAPSHOT_VERSION:
            return _Snapshot(changed=True)
        entries, consumed = doc["entries"], doc["consumed"]
        if not isinstance(entries, dict) or not isinstance(consumed, dict):
            return _Snapshot(changed=True)
        return _Snapshot(entries, {str(k): int(v) for k, v in consumed.items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return _Snapshot(changed=True)  # missing or damaged: rebuilt from the journals and files


def _valid(entry: Any) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("id"), str)
            and all(isinstance(entry.get(k), int) for k in ("ino", "size", "mtime_ns"))
            and isinstance(entry.get("attrs"), dict) and isinstance(entry["attrs"].get("status"), str)
            and isinstance(entry.get("spec"), str))


def _read_journals(folder: Path, snap: _Snapshot) -> None:
    try:
        names = [e.name for e in os.scandir(folder)
                 if e.name.startswith(JOURNAL_PREFIX) and e.name.endswith(JOURNAL_SUFFIX)]
    except OSError:
        return
    for name in names:
        start = snap.consumed.get(name, 0)
        try:
            with open(folder / name, "rb") as fh:
                fh.seek(start)
                data = fh.read()
        except OSError:
            continue
        end = data.rfind(b"\n") + 1  # a last line without its newline is still being written
        if end <= 0:
            continue
        for line in data[:end].splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a damaged line: that run is read from its file
            if _valid(entry):
                snap.entries[entry["id"]] = entry
        snap.consumed[name] = start + end
        snap.changed = True


def _save(folder: Path, snap: _Snapshot) -> None:
    doc = {"format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION, "consumed": snap.consumed,
           "entries": snap.entries}
    with contextlib.suppress(OSError, ValueError):
        folder.mkdir(exist_ok=True)
        atomic_write_text(folder / SNAPSHOT, json.dumps(doc, ensure_ascii=False, separators=(",", ":")),
                          fsync=False)
        _drop_merged_journals(folder, snap)


def _drop_merged_journals(folder: Path, snap: _Snapshot) -> None:
    """Remove journals that the snapshot holds entirely and whose writer (on this host) is gone:
    nobody appends to them again, so 100,000 one-run Slurm tasks leave no 100,000 files."""
    host = host_tag()
    for name, consumed in list(snap.consumed.items()):
        parts = name[len(JOURNAL_PREFIX):-len(JOURNAL_SUFFIX)].rsplit(".", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit() or pid_alive(int(parts[1])):
            continue
        try:
            if os.stat(folder / name).st_size == consumed:
                os.unlink(folder / name)
                # the entry stays: a journal of this name never comes back (random part)
        except OSError:
            pass


def _marks(folder: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    try:
        entries = list(os.scandir(folder / UNREADABLE_DIR))
    except OSError:
        return out
    for e in entries:
        if e.name.endswith(".json") and not e.name.startswith("."):
            with contextlib.suppress(OSError, ValueError):
                mark = json.loads(Path(e.path).read_text(encoding="utf-8"))
                if isinstance(mark, dict):
                    out[e.name[:-5]] = mark
    return out


def run_file_stats(runs_dir: os.PathLike | str) -> dict[str, tuple[str, os.stat_result]]:
    """``{run_id: (path as text, stat)}`` of the run files in ``runs_dir``: regular files (after
    symlinks) named ``<run_id>.h5``, not hidden (temporaries, claims). A FIFO, a folder, a
    dangling link named ``*.h5`` is no run file (and is never opened: a FIFO would block)."""
    out: dict[str, tuple[str, os.stat_result]] = {}
    try:
        entries = os.scandir(runs_dir)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return out
    with entries:
        for entry in entries:
            if not entry.name.endswith(".h5") or entry.name.startswith("."):
                continue
            try:
                st = entry.stat()
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                out[entry.name[:-3]] = (entry.path, st)  # no Path per file: 100,000 of them cost
    return dict(sorted(out.items()))


def scan(runs_dir: os.PathLike | str, run_ids=None) -> dict[str, IndexedRun]:
    """What every run file in ``runs_dir`` says (or only those of ``run_ids``): from the index
    where it knows the very file, else from the file itself (its scalars and spec, which go into
    the next snapshot). The answer is the same as reading every file (see the module docstring),
    only faster."""
    from .runfile import STATUSES, RunFileError, read_run_attrs  # noqa: PLC0415

    files = run_file_stats(runs_dir)
    if run_ids is not None:
        wanted = set(run_ids)
        files = {rid: v for rid, v in files.items() if rid in wanted}
    folder = index_dir(runs_dir)
    snap = _load_snapshot(folder) if folder is not None else _Snapshot()
    marks: dict[str, dict] = {}
    if folder is not None:
        _read_journals(folder, snap)
        marks = _marks(folder)
    out: dict[str, IndexedRun] = {}
    for rid, (path, st) in files.items():
        ident = identity(st)
        mark = marks.get(rid)
        if mark is not None and (mark.get("ino"), mark.get("size"), mark.get("mtime_ns")) == ident:
            out[rid] = IndexedRun(rid, path, "unreadable", str(mark.get("reason", "")))
            continue
        entry = snap.entries.get(rid)
        if entry is None or (entry["ino"], entry["size"], entry["mtime_ns"]) != ident:
            try:
                attrs = read_run_attrs(path, check_marks=False)
            except RunFileError as err:
                out[rid] = IndexedRun(rid, path, "unreadable", err.reason)
                continue
            entry = {"id": rid, "ino": ident[0], "size": ident[1], "mtime_ns": ident[2],
                     "spec": attrs.pop("spec", ""), "attrs": attrs}
            if folder is not None:
                snap.entries[rid] = entry
                snap.changed = True
        attrs = entry["attrs"]
        if attrs["status"] not in STATUSES:  # as read_run_status says of such a file
            out[rid] = IndexedRun(rid, path, "unreadable", f"bad status {attrs['status']!r}")
            continue
        out[rid] = IndexedRun(rid, path, attrs["status"], "", attrs, entry["spec"])
    if folder is not None and snap.changed:
        _save(folder, snap)
    return out
