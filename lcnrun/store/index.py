"""The run index: what every run file of an experiment says (status, scalars, the flattened
resolved spec), kept beside the run files so that ``lcnrun status`` and ``summary`` over 100,000
runs read one folder instead of 100,000 HDF5 files. The run files stay the truth; the index is a
cache of them.

Layout, under the experiment folder (``results/<name>/.index/``)::

    journal.<host>.<pid>.<random>.jsonl   one per writing process, append-only, one line per run
                                          file written: {"id", "ino", "size", "mtime_ns",
                                          "ctime_ns", "attrs" (read_run_attrs without "spec"),
                                          "spec" (the spec flattened: {dotted.key: value}) or
                                          "spec_text" (when its values are not plain JSON),
                                          "series" ({name: base64 of the little-endian float64
                                          bytes} of KEPT_SERIES; an older lcnrun: JSON lists)};
                                          renamed ``<...>.final.jsonl`` when its writer ends
                                          (close_journals), removed once a snapshot holds it
    snapshot.bin                          the journals merged by a reader (atomic replace),
                                          column by column (see :func:`_encode`), with how far
                                          into each journal it read and a CRC-32 of it all
    unreadable/<run_id>.json              a run file found unreadable where it was needed (e.g.
                                          its data region by ``read_run``): its identity and
                                          the "reason"

Why journals and not SQLite: the results folder is often on NFS, where SQLite's locking is not
reliable (its documentation says so) and a crashed client can leave a lock behind; a journal has a
single writer (no locking at all), and a reader needs nothing but to read. Each entry is written
with one ``write`` of one line to a file opened, appended and closed per entry (close-to-open:
a reader on another node sees whole lines once the writer closed the file); a reader ignores a
last line without its newline (a writer that is still writing, or was killed).

Why the snapshot is columns and not JSON: 100,000 runs of a sweep share most values (every key of
the spec but the swept ones, the kinds, the version), and JSON spends ~0.5 us parsing each float
of the rest; a column is one constant, or one array of float64 / int64 / bool read with
``numpy.frombuffer``, or (strings, lists) a JSON list. Status reads five columns of it.

Why it can never hide or invent a run: a reader lists the run files themselves (regular files
``<run_id>.h5``; ``stat`` gives each file's identity: inode, size, mtime and ctime in ns) and takes
an entry only for a file of the same identity, compared for equality, never as "newer" (clocks of
a shared file system disagree). Run files are replaced by rename, never changed in place, so a new
write is a new inode with a new ctime; on a file system with 1 s timestamps that may reuse inode
numbers, a file is entered only once it is a few seconds old by the file system's clock (:func:`racy`). The entry also keeps
the file's ``write_token`` (the content token of :mod:`lcnrun.policy`) for the readers that show
it; the match itself is the identity. Files without a matching entry are read from HDF5 as before (and their entries written into
the next snapshot); entries without a file are ignored; a damaged, stale or deleted index only
costs time.
"""
from __future__ import annotations

import atexit
import binascii
import contextlib
import functools
import gc
import itertools
import json
import operator
import os
import secrets
import stat
import struct
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_replace, host_tag, open_own_file, pid_alive

INDEX_DIR = ".index"
SNAPSHOT = "snapshot.bin"
SNAPSHOT_MAGIC = b"lcnrun-run-index 2\n"
UNREADABLE_DIR = "unreadable"
JOURNAL_PREFIX = "journal."
JOURNAL_SUFFIX = ".jsonl"
FINAL_SUFFIX = ".final" + JOURNAL_SUFFIX  # a journal whose writer has ended (close_journals)
_IDENTITY = ("ino", "size", "mtime_ns", "ctime_ns")
#: trajectory series every entry keeps (1-D float64, at most KEPT_TIMES stored times): what
#: ``lcnrun plot``, the report's default plots and most ``exp.trajectories`` calls draw
KEPT_SERIES = ("t", "loss", "grad_norm")
KEPT_TIMES = 1024


@contextlib.contextmanager
def bulk() -> Iterator[None]:
    """No cyclic garbage collection while 100,000 rows of dicts are built: they hold no cycles,
    and each full collection would walk all of them again (~40 % of the time of ``summary``)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def index_dir(runs_dir: os.PathLike | str) -> Path | None:
    """``<experiment>/.index`` for the ``runs/`` folder of an experiment; ``None`` for any other
    folder of run files (no index: read the files)."""
    runs_dir = Path(runs_dir)
    return runs_dir.parent / INDEX_DIR if runs_dir.name == "runs" else None


def identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """What tells one run file from another under the same name: inode, size, mtime and ctime
    (ns). A rename sets the ctime, so a file replaced by a later write differs even if the inode
    number was reused."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


#: a file whose mtime and ctime are whole seconds (a file system with 1 s timestamps: sshfs, some
#: FUSE and SMB mounts) is not entered in the index until it is this much older than now
RACY_SECONDS = 3
#: the index folder's probe file: its mtime, written just now, is the file system's clock
CLOCK = "clock"


def racy(st: os.stat_result, now_ns: int | None = None) -> bool:
    """Whether an entry made now for the file of ``st`` could describe a later write too (git's
    "racily clean" case): on a file system with 1 s timestamps, a rewrite of the same size in the
    same second, where inode numbers are reused and the ctime is the mtime, has the same identity.
    Such a file (mtime and ctime both whole seconds, less than :data:`RACY_SECONDS` older than
    ``now_ns``) is read from itself until it is older; files with finer timestamps (ext4, xfs,
    NFS, Lustre, GPFS: ns) are entered at once.

    ``now_ns`` is the *file system's* clock (:func:`file_system_now_ns`), never this machine's:
    the server of a shared mount may be seconds behind, and a file that looks old by the local
    clock may be new by the one that stamped it. Without it (``None``: the clock could not be
    read, or the caller has just written the file) such a file is racy."""
    if not whole_seconds(st):
        return False
    return now_ns is None or now_ns - st.st_mtime_ns < RACY_SECONDS * 1_000_000_000


def whole_seconds(st: os.stat_result) -> bool:
    """Whether a file's mtime and ctime are both whole seconds (its file system's resolution)."""
    return not (st.st_mtime_ns % 1_000_000_000 or st.st_ctime_ns % 1_000_000_000)


def file_system_now_ns(folder: Path) -> int | None:
    """The clock of the file system holding ``folder`` (an index folder, made if missing): the
    mtime of its :data:`CLOCK` file written just now (the file server sets it, as it sets a run
    file's). ``None`` if the folder is not writable (then no index is saved either)."""
    probe = Path(folder) / CLOCK
    try:
        probe.parent.mkdir(exist_ok=True)
        fd = open_own_file(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"\n")
        finally:
            os.close(fd)
        return os.lstat(probe).st_mtime_ns
    except OSError:
        return None


def _ident(entry: dict) -> tuple:
    return tuple(entry.get(k) for k in _IDENTITY)


# -- the spec of an entry ---------------------------------------------------------------------------
def _plain(value: Any, int64: bool = True) -> bool:
    """Whether JSON gives ``value`` back as it is (same types, same values); ``int64``: with its
    integers within int64, as a journal line's are (what the snapshot's header holds is read by
    ``json`` alone, which keeps every integer exactly)."""
    if value is None or isinstance(value, (str, bool, float)):
        return True
    if isinstance(value, int):
        return not int64 or -(2 ** 63) <= value < 2 ** 63
    if isinstance(value, list):
        return all(_plain(v, int64) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, int64) for k, v in value.items())
    return False  # a date, a set, bytes ... (YAML can make them): kept as text


def flat_spec(text: str) -> tuple[dict[str, Any] | None, str]:
    """``(flattened spec, "")`` of a run's spec text, or ``(None, why)`` if it is not YAML."""
    import yaml  # noqa: PLC0415

    from .specflat import flatten_spec_text  # noqa: PLC0415

    try:
        return flatten_spec_text(text), ""
    except yaml.YAMLError as err:
        return None, f"its spec is not valid YAML ({err})"


def kept_series(series: dict | None) -> dict | None:
    """The :data:`KEPT_SERIES` of ``series`` (``{name: array}`` as read from the file) that an
    entry keeps: 1-D float64 arrays of at most :data:`KEPT_TIMES` values. ``None`` (nothing
    known: readers open the file for any series) unless every kept name that the file has
    can be kept."""
    if series is None:
        return None
    out = {}
    for name in KEPT_SERIES:
        a = series.get(name)
        if a is None:
            continue  # the file has no such series (a failed run): known, and kept as absent
        if getattr(a, "dtype", None) != "float64" or a.ndim != 1 or len(a) > KEPT_TIMES:
            return None
        out[name] = a
    return out


def _entry(rid: str, st: os.stat_result, attrs: dict, series: dict | None = None) -> dict:
    """The index entry of the run file ``rid`` of identity ``st`` whose ``read_run_attrs`` is
    ``attrs`` (its "spec" text is flattened) and whose kept series are ``series``."""
    attrs = dict(attrs)
    spec, error = flat_spec(attrs.pop("spec", "") or "")
    return {"id": rid, **dict(zip(_IDENTITY, identity(st))), "attrs": attrs,
            "spec": spec, "spec_error": error, "series": kept_series(series)}


# -- writing ---------------------------------------------------------------------------------------
_JOURNAL: dict[str, str] = {}  # index folder -> this process's journal name


def _journal_name(folder: Path) -> str:
    key = str(folder)
    if key not in _JOURNAL or _JOURNAL[key].split(".")[2] != str(os.getpid()):  # forked: a new one
        _JOURNAL[key] = f"{JOURNAL_PREFIX}{host_tag()}.{os.getpid()}.{secrets.token_hex(4)}{JOURNAL_SUFFIX}"
        if not _CLOSE_AT_EXIT:
            atexit.register(close_journals)
            _CLOSE_AT_EXIT.append(True)
    return _JOURNAL[key]


_CLOSE_AT_EXIT: list[bool] = []  # [True] once close_journals is registered to run at exit


def close_journals() -> None:
    """Give this process's journals their final name (``journal.<host>.<pid>.<random>.final.jsonl``):
    nobody appends to them again, which every reader then knows, on any host (a reader can ask
    whether a writer is alive only on the writer's own host): the first one that has merged a
    final journal removes it, so that the journals of 100,000 Slurm tasks on other nodes do not
    stay. Run at exit (normal, ``SystemExit``, after SIGTERM's stop; not after SIGKILL: such a
    journal stays as it is, read and kept as before). Best effort, never raises."""
    pid = str(os.getpid())
    for folder, name in list(_JOURNAL.items()):
        if name.split(".")[2] != pid:
            continue  # a parent's, inherited by fork
        del _JOURNAL[folder]  # a later write starts a journal of another name
        with contextlib.suppress(OSError):
            os.rename(os.path.join(folder, name), os.path.join(folder, name[:-len(JOURNAL_SUFFIX)] + FINAL_SUFFIX))


def _journal_key(name: str) -> str:
    """The name a journal is known by in the snapshot (``consumed``): as its writer made it,
    without the ``.final`` it adds when it ends (see :func:`close_journals`)."""
    return name[:-len(FINAL_SUFFIX)] + JOURNAL_SUFFIX if name.endswith(FINAL_SUFFIX) else name


def _append(folder: Path, entry: dict) -> None:
    line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":"), allow_nan=True) + "\n").encode()
    folder.mkdir(exist_ok=True)
    fd = open_own_file(folder / _journal_name(folder), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)  # one write of one line: readers see it whole or not at all
    finally:
        os.close(fd)


def note_written(path: os.PathLike | str, contents: tuple[dict, dict] | None = None) -> None:
    """Journal the run file just written at ``path`` (its final name, after the rename): its
    identity, scalars and flattened spec. Best effort: an index that cannot be written (read-only
    or full folder) is only slower to use, so nothing is raised. Also drops an ``unreadable`` mark
    of the run (a new file replaced it).

    ``contents``: ``(read_run_attrs(path), read_series(path, KEPT_SERIES))`` as the writer knows
    them without reading the file back (:func:`lcnrun.store.runfile.write_run`, which gives them
    only where they are exactly what reading the file gives); ``None``: read from the file."""
    path = Path(path)
    folder = index_dir(path.parent)
    if folder is None:
        return
    from .runfile import RunFileError  # noqa: PLC0415
    from .series import read_attrs_and_series  # noqa: PLC0415

    try:
        st = os.stat(path)
        if racy(st):  # just written here: read from the file until it is older (see racy)
            return
        attrs, series = contents if contents is not None else \
            read_attrs_and_series(path, KEPT_SERIES, check_marks=False)
    except (OSError, RunFileError):
        return
    text = attrs.get("spec", "") or ""
    entry = _entry(path.name[:-3], st, attrs, series)
    line = {k: entry[k] for k in ("id", *_IDENTITY, "attrs")}
    if entry["series"] is not None:
        line["series"] = {k: _series_text(v) for k, v in entry["series"].items()}
    if entry["spec"] is not None and _plain(entry["spec"]):
        line["spec"] = entry["spec"]
    else:  # not plain JSON (or not YAML): the reader flattens the text itself
        line["spec_text"] = text
    with contextlib.suppress(OSError, ValueError):
        _append(folder, line)
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
    from .atomic import atomic_write_text  # noqa: PLC0415

    with contextlib.suppress(OSError, ValueError):
        st = os.stat(path)
        (folder / UNREADABLE_DIR).mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / UNREADABLE_DIR / f"{path.name[:-3]}.json", json.dumps(
            {**dict(zip(_IDENTITY, identity(st))), "reason": reason}))


def _mark_reason(mark: Any, st: os.stat_result) -> str | None:
    if isinstance(mark, dict) and _ident(mark) == identity(st):
        return str(mark.get("reason", ""))
    return None


def unreadable_mark(path: os.PathLike | str, st: os.stat_result | None = None) -> str | None:
    """The reason ``path`` was marked unreadable, if the mark is for this very file; else None."""
    path = Path(path)
    folder = index_dir(path.parent)
    if folder is None:
        return None
    try:
        mark = json.loads((folder / UNREADABLE_DIR / f"{path.name[:-3]}.json").read_text(encoding="utf-8"))
        return _mark_reason(mark, st or os.stat(path))
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- the snapshot's columns ------------------------------------------------------------------------
class _Absent:
    __slots__ = ()


_ABSENT = _Absent()  # a key a run does not have (a spec value may well be None)
_COLUMN_KEYS = {"enc", "value", "values", "at", "mask", "lens"}
#: the columns every reader relies on, decoded and type-checked when the snapshot is loaded
_CHECKED_AT_LOAD = (*_IDENTITY, "a:status", "spec_error")


def _has_absent(values: list) -> bool:
    """Whether some value is ``_ABSENT`` (by identity, at C speed: ``in`` would call ``==``)."""
    return any(map(operator.is_, values, itertools.repeat(_ABSENT)))


def _all_absent(values: list) -> bool:
    """Whether every value is ``_ABSENT`` (by identity, at C speed)."""
    return all(map(operator.is_, values, itertools.repeat(_ABSENT)))


def _same(values: list) -> bool:
    """Whether all of ``values`` (not empty, all of one type) are one value, as the snapshot tells
    values apart: floats by their bits (-0.0 == 0.0 and nan != nan otherwise), lists and dicts by
    ``repr`` (which tells 1 from 1.0 and True, as JSON does), the rest by ``==`` (exact within
    one type)."""
    kind = type(values[0])
    if kind is float:
        import numpy as np  # noqa: PLC0415

        bits = np.asarray(values, dtype=np.float64).view(np.int64)
        return bool((bits == bits[0]).all())
    if kind is list or kind is dict:
        return all(map(repr(values[0]).__eq__, map(repr, values)))
    return values.count(values[0]) == len(values)


def _encode(values: list, blob: bytearray) -> dict:
    """One column (``_ABSENT`` where a run has no such key) as its description, appending its
    arrays to ``blob``: ``{"enc": "const", "value"}``, ``{"enc": "f8" | "i8" | "b1", "at"}`` (the
    byte offset of ``n`` values), ``{"enc": "json", "values"}``; plus ``"mask"`` (the offset of
    ``n`` bytes, 1 where the run has the key) unless every run has it. The values' types are
    taken once (one pass at C speed: 60 columns of 100,000 values); they also say whether some
    value is ``_ABSENT``."""
    import numpy as np  # noqa: PLC0415

    out: dict[str, Any] = {}
    kinds = set(map(type, values))
    if _Absent in kinds:
        has = list(map(operator.is_not, values, itertools.repeat(_ABSENT)))
        present = list(itertools.compress(values, has))
        out["mask"] = len(blob)
        blob += bytes(has)
        fill = present[0] if present else None
        values = [fill if v is _ABSENT else v for v in values]
        kinds.discard(_Absent)
        kinds = kinds or {type(None)}
    else:
        present = values
    if present and len(kinds) == 1 and _same(present) and _plain(present[0], False):
        return {**out, "enc": "const", "value": present[0]}
    if kinds == {float}:
        enc, dtype = "f8", "<f8"
    elif kinds == {int} and -(2 ** 63) <= min(values) and max(values) < 2 ** 63:
        enc, dtype = "i8", "<i8"
    elif kinds == {bool}:
        enc, dtype = "b1", "u1"
    else:
        if not (kinds <= {str, bool, float, type(None)} or all(_plain(v, False) for v in values)):
            raise ValueError("a value JSON cannot keep")
        return {**out, "enc": "json", "values": values}
    out.update(enc=enc, at=len(blob))
    blob += np.asarray(values, dtype=dtype).tobytes()
    return out


def _encode_series(values: list, blob: bytearray) -> dict:
    """A column of 1-D float64 series, each given as its little-endian bytes (``None``: not
    known), as ``{"enc": "ragged", "at", "lens"}``: the series one after the other, and the ``n``
    lengths (int64, -1 for ``None``) at ``lens``."""
    import numpy as np  # noqa: PLC0415

    lens = np.array([-1 if v is None else len(v) // 8 for v in values], dtype="<i8")
    out = {"enc": "ragged", "lens": len(blob)}
    blob += lens.tobytes()
    out["at"] = len(blob)
    blob += b"".join(v for v in values if v is not None)
    return out


def _check_series(col: dict, blob: memoryview, n: int) -> None:
    """Raise ValueError unless the ragged column ``col`` fits the snapshot."""
    import numpy as np  # noqa: PLC0415

    lens = np.frombuffer(blob, dtype="<i8", count=n, offset=int(col["lens"]))
    if n and (lens.min() < -1 or lens.max() > KEPT_TIMES):
        raise ValueError("bad lengths")
    np.frombuffer(blob, dtype="<f8", count=int(np.where(lens < 0, 0, lens).sum()),
                  offset=int(col["at"]))


def _decode_series(col: dict, blob: memoryview, n: int) -> list:
    """The arrays of a ragged column (views into the snapshot, read-only), ``None`` where not
    known; raises ValueError if they do not fit."""
    import numpy as np  # noqa: PLC0415

    lens = np.frombuffer(blob, dtype="<i8", count=n, offset=int(col["lens"]))
    if n and (lens.min() < -1 or lens.max() > KEPT_TIMES):
        raise ValueError("bad lengths")
    sizes = np.where(lens < 0, 0, lens)
    data = np.frombuffer(blob, dtype="<f8", count=int(sizes.sum()), offset=int(col["at"]))
    ends = np.cumsum(sizes).tolist()
    out, start = [], 0
    for length, end in zip(lens.tolist(), ends):
        out.append(None if length < 0 else data[start:end])
        start = end
    return out


def _decode(col: dict, blob: memoryview, n: int, values: bool = True) -> list | None:
    """The values of one column (see :func:`_encode`); raises ValueError/TypeError/KeyError if
    it does not fit the snapshot (a damaged file). ``values=False``: only that check (no list
    of ``n`` Python objects; ``None``)."""
    import numpy as np  # noqa: PLC0415

    enc = col["enc"]
    if enc == "ragged":
        return _decode_series(col, blob, n)
    if enc == "const":
        out = [col["value"]] * n if values else None
    elif enc == "json":
        out = col["values"]
        if not isinstance(out, list) or len(out) != n:
            raise ValueError("bad column")
    else:
        dtype = {"f8": "<f8", "i8": "<i8", "b1": "u1"}[enc]
        array = np.frombuffer(blob, dtype=dtype, count=n, offset=int(col["at"]))
        out = (array.astype(bool).tolist() if enc == "b1" else array.tolist()) if values else None
    if "mask" in col:
        mask = np.frombuffer(blob, dtype="u1", count=n, offset=int(col["mask"]))
        if values:
            out = [v if m else _ABSENT for v, m in zip(out, mask.tolist())]
    return out


def _rows(names: list[str], columns: list[list], masked: list[bool]) -> list[dict]:
    """One dict per run from columns, keys in column order (``_ABSENT`` values left out;
    ``masked[i]``: column ``i`` may hold some)."""
    if not any(masked):
        return [dict(zip(names, vals)) for vals in zip(*columns)]
    return [{k: v for k, v in zip(names, vals) if v is not _ABSENT} for vals in zip(*columns)]


def _rows_any_order(names: list[str], columns: list[list], masked: list[bool]) -> list[dict]:
    """As :func:`_rows`, faster when the order of the keys does not matter: the columns every
    run has first (one ``dict(zip(...))`` per run), then the masked ones where present."""
    full = [i for i, m in enumerate(masked) if not m]
    rows = [dict(zip([names[i] for i in full], vals)) for vals in zip(*(columns[i] for i in full))] \
        if full else [{} for _ in columns[0]]
    for i, m in enumerate(masked):
        if m:
            name = names[i]
            for row, v in zip(rows, columns[i]):
                if v is not _ABSENT:
                    row[name] = v
    return rows


@dataclass
class _Snapshot:
    """The merged index: the snapshot's columns (decoded when asked for) and the entries found
    since (journals, run files read), which win over the columns."""

    ids: list[str] = field(default_factory=list)
    columns: dict[str, dict] = field(default_factory=dict)
    blob: memoryview = field(default_factory=lambda: memoryview(b""))
    consumed: dict[str, int] = field(default_factory=dict)   # journal name -> bytes read
    newer: dict[str, dict] = field(default_factory=dict)     # run id -> entry
    changed: bool = False
    #: journal name (as listed) -> its size, of the journals read whose writer was gone before
    #: (or that are final): that size is final (a new process of the same pid writes a journal
    #: of another name)
    final: dict[str, int] = field(default_factory=dict)
    #: the :func:`identity` of the snapshot file this was loaded from or saved as (``None``:
    #: there was none); a save goes over that file only (:func:`_save`)
    on_disk: tuple | None = None
    _decoded: dict[str, list] = field(default_factory=dict)
    _built: dict[str, dict] | None = None

    def column(self, name: str) -> list:
        if name not in self._decoded:
            self._decoded[name] = (_decode(self.columns[name], self.blob, len(self.ids))
                                   if name in self.columns else [_ABSENT] * len(self.ids))
        return self._decoded[name]

    def identity_and_status(self) -> dict[str, tuple[tuple, Any]]:
        """``{run_id: (identity, status)}`` of every entry, reading only those columns."""
        idents = zip(*(self.column(k) for k in _IDENTITY))
        out = dict(zip(self.ids, zip(idents, self.column("a:status"))))
        for rid, e in self.newer.items():
            out[rid] = (_ident(e), e["attrs"].get("status"))
        return out

    def position(self) -> dict[str, int]:
        """``{run_id: i}``: where each entry of the snapshot's columns is."""
        return dict(zip(self.ids, range(len(self.ids))))

    def flat_rows(self, drop_attrs: frozenset[str] = frozenset()) -> tuple[list[dict], list[tuple]] | None:
        """For each entry of the snapshot's columns (``ids`` order): one dict of its flattened spec
        and its attributes (an attribute wins over a spec key of the same name; ``drop_attrs``
        left out; keys a run has not left out) and the tuple of its spec keys (in column order,
        as :meth:`entries` makes the spec). ``None`` where that would not be the same: a key
        that is a spec key and an attribute and is missing in some spec (then use
        :meth:`entries`). The entries found since (``newer``) are not in it."""
        spec = [n for n in self.columns if n.startswith("s:")]
        attrs = [n for n in self.columns if n.startswith("a:") and n[2:] not in drop_attrs]
        attr_keys = {n[2:] for n in attrs}
        masked = [n for n in spec + attrs if "mask" in self.columns[n]]
        if any(n.startswith("s:") and n[2:] in attr_keys for n in masked):
            return None
        full = [n for n in spec + attrs if "mask" not in self.columns[n]]
        names = [n[2:] for n in full]
        if full:
            rows = [dict(zip(names, vals)) for vals in zip(*(self.column(n) for n in full))]
        else:
            rows = [{} for _ in self.ids]
        for n in masked:  # spec ones first: an attribute of the same name is set after them
            key = n[2:]
            for row, v in zip(rows, self.column(n)):
                if v is not _ABSENT:
                    row[key] = v
        spec_full = tuple(n[2:] for n in spec if "mask" not in self.columns[n])
        spec_masked = [n for n in spec if "mask" in self.columns[n]]
        if not spec_masked:
            keys = [spec_full] * len(self.ids)
        else:  # the run's own keys, in column order
            present = [self.column(n) for n in spec]
            keys = [tuple(n[2:] for n, v in zip(spec, vals) if v is not _ABSENT)
                    for vals in zip(*present)]
        return rows, keys

    def entries(self, series: bool = True) -> dict[str, dict]:
        """Every entry (``{run_id: entry}``), built column by column (once). ``series=False``:
        without the kept series of the snapshot's entries (``"series": None``; 100,000 summary
        rows need none of them); never what is saved."""
        if not series:
            out = self._build(series=False) if self.ids else {}
            out.update(self.newer)
            return out
        if self._built is None:
            self._built = self._build() if self.ids else {}
        out = dict(self._built)
        out.update(self.newer)
        return out

    def _build(self, series: bool = True) -> dict[str, dict]:
        names = list(self.columns)
        parts = []
        for prefix, rows in (("a:", _rows_any_order), ("s:", _rows)):
            chosen = [n for n in names if n.startswith(prefix)]
            parts.append(rows([n[2:] for n in chosen], [self.column(n) for n in chosen],
                              ["mask" in self.columns[n] for n in chosen])
                         if chosen else [{} for _ in self.ids])
        errors = self.column("spec_error")
        idents = zip(*(self.column(k) for k in _IDENTITY))
        known = (self.column("series") if series and "series" in self.columns
                 else [False] * len(self.ids))
        kept = [(name, self.column("t:" + name)) for name in KEPT_SERIES
                if series and "t:" + name in self.columns]
        out = {}
        for i, (rid, ident, a, sp, err) in enumerate(zip(self.ids, idents, parts[0], parts[1], errors)):
            arrays = None
            if known[i] is True:
                arrays = {name: col[i] for name, col in kept if col[i] is not None}
            out[rid] = {"id": rid, "ino": ident[0], "size": ident[1], "mtime_ns": ident[2],
                        "ctime_ns": ident[3], "attrs": a, "spec": None if err else sp,
                        "spec_error": err, "series": arrays}
        return out


def _snapshot_identity(folder: Path) -> tuple | None:
    """The :func:`identity` of ``folder``'s snapshot file now (``None``: there is none)."""
    try:
        return identity(os.stat(folder / SNAPSHOT))
    except OSError:
        return None


def _load_snapshot(folder: Path) -> _Snapshot:
    try:
        with open(folder / SNAPSHOT, "rb") as fh:
            on_disk = identity(os.fstat(fh.fileno()))
            data = fh.read()
    except OSError:
        return _Snapshot(changed=True)  # none (or none that can be read): made from the journals and files
    damaged = _Snapshot(changed=True, on_disk=on_disk)
    try:
        if not data.startswith(SNAPSHOT_MAGIC):
            return damaged
        at = len(SNAPSHOT_MAGIC)
        size, crc = struct.unpack_from("<QI", data, at)
        at += struct.calcsize("<QI")
        if zlib.crc32(memoryview(data)[at:]) != crc:  # a changed byte anywhere: not used
            return damaged
        doc = json.loads(data[at:at + size].decode("utf-8"))
        snap = _Snapshot(list(doc["ids"]), dict(doc["columns"]), memoryview(data)[at + size:],
                         {str(k): int(v) for k, v in doc["consumed"].items()}, on_disk=on_disk)
        if not all(isinstance(r, str) for r in snap.ids) or len(set(snap.ids)) != len(snap.ids):
            return damaged
        if not all(isinstance(c, dict) and c.keys() <= _COLUMN_KEYS for c in snap.columns.values()):
            return damaged
        for name, col in snap.columns.items():  # every column decodes (a damaged one raises
            if col.get("enc") == "ragged":       # here, not later); series: their bounds only
                _check_series(col, snap.blob, len(snap.ids))
            elif name in _CHECKED_AT_LOAD:
                snap.column(name)
            else:  # fits the snapshot; its Python values only when a reader asks for them
                _decode(col, snap.blob, len(snap.ids), values=False)
        for name, kind in (*((k, int) for k in _IDENTITY), ("a:status", str), ("spec_error", str)):
            if not set(map(type, snap.column(name))) <= {kind}:  # what every reader relies on
                return damaged
        return snap
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error,
            UnicodeDecodeError):
        return damaged  # rebuilt from the journals and files


def _columns_of(shapes: list[tuple], rows: list[tuple]) -> dict[str, list]:
    """``{key: [value of each run, _ABSENT where it has no such key]}`` of runs given as their
    keys (``shapes[i]``, a tuple) and values (``rows[i]``, the tuple of the same length), keys in
    first-seen order. 100,000 runs x 60 keys at C speed: the runs of each key set (those of a sweep
    share theirs) transposed by ``zip``, the key sets' columns laid into place with numpy (object
    arrays made by ``fromiter``, which never mistakes a list value for a dimension)."""
    import numpy as np  # noqa: PLC0415

    n = len(shapes)
    distinct = dict.fromkeys(shapes)  # key sets in first-seen order
    if len(distinct) == 1:
        (shape,) = distinct
        return dict(zip(shape, map(list, zip(*rows)))) if shape else {}
    order = dict.fromkeys(k for shape in distinct for k in shape)
    code = {shape: i for i, shape in enumerate(distinct)}
    codes = np.fromiter(map(code.__getitem__, shapes), dtype=np.int64, count=n)
    columns = {k: np.full(n, _ABSENT, dtype=object) for k in order}
    for shape, i in code.items():
        if not shape:
            continue
        where = np.flatnonzero(codes == i)
        for key, values in zip(shape, zip(*_take(rows, where.tolist()))):
            columns[key][where] = np.fromiter(values, dtype=object, count=len(where))
    return {k: column.tolist() for k, column in columns.items()}


def _take(values: list, where: list[int]) -> list:
    """``[values[i] for i in where]`` at C speed."""
    return list(map(values.__getitem__, where))


def _row_shapes(snap: _Snapshot, names: list[str], any_order: bool) -> list[tuple]:
    """For each entry of the snapshot's columns, the keys (``names`` without their prefix) of the
    dict :meth:`_Snapshot._build` makes of them, in its order: column order (``any_order``: the
    columns every run has first, then the masked ones), leaving out those the run lacks. One
    tuple per distinct presence pattern (numpy finds them), not a walk of every run's keys."""
    import numpy as np  # noqa: PLC0415

    n = len(snap.ids)
    masked = [c for c in names if "mask" in snap.columns[c]]
    if not masked:
        return [tuple(c[2:] for c in names)] * n
    present = np.stack([np.frombuffer(snap.blob, dtype="u1", count=n, offset=int(snap.columns[c]["mask"])) != 0
                        for c in masked], axis=1)
    patterns, which = np.unique(present, axis=0, return_inverse=True)
    shapes = []
    for pattern in patterns.tolist():
        have = set(itertools.compress(masked, pattern))
        if any_order:
            shapes.append(tuple(c[2:] for c in names if c not in masked)
                          + tuple(c[2:] for c in masked if c in have))
        else:
            shapes.append(tuple(c[2:] for c in names if c in have or "mask" not in snap.columns[c]))
    return _take(shapes, which.reshape(-1).tolist())


def _record(ident: tuple, attrs: dict, spec: dict | None, error: str, series: tuple | None,
            shapes: dict[tuple, tuple]) -> tuple:
    """An entry as :func:`_merged` takes it: ``(identity, attribute keys, their values, spec keys,
    their values, spec_error, series)``, ``series`` ``None`` (not known) or the little-endian
    float64 bytes (or ``None``) of each of :data:`KEPT_SERIES`. Key tuples are shared through
    ``shapes``: 100,000 entries hold one copy of each key set, not their own key strings."""
    a, sp = tuple(attrs), tuple(spec or ())
    return (ident, shapes.setdefault(a, a), tuple(attrs.values()), shapes.setdefault(sp, sp),
            tuple(spec.values()) if spec else (), error, series)


def _records(entries: dict[str, dict]) -> dict[str, tuple]:
    """:func:`_record` of entries as :func:`_entry` makes them (``{run_id: entry}``)."""
    import numpy as np  # noqa: PLC0415

    shapes: dict[tuple, tuple] = {}
    out = {}
    for rid, e in entries.items():
        series = e.get("series")
        if series is not None:
            series = tuple(None if v is None else np.asarray(v, dtype="<f8").tobytes()
                           for v in map(series.get, KEPT_SERIES))
        out[rid] = _record(_ident(e), e["attrs"], e["spec"], e["spec_error"], series, shapes)
    return out


def _entry_of(rid: str, record: tuple) -> dict:
    """The entry (as :func:`_entry` makes it) of a :func:`_record`."""
    import numpy as np  # noqa: PLC0415

    ident, a, av, sp, sv, error, series = record
    if series is not None:
        series = {k: np.frombuffer(v, dtype="<f8") for k, v in zip(KEPT_SERIES, series) if v is not None}
    return {"id": rid, **dict(zip(_IDENTITY, ident)), "attrs": dict(zip(a, av)),
            "spec": None if error else dict(zip(sp, sv)), "spec_error": error, "series": series}


def _merged(snap: _Snapshot, records: dict[str, tuple]) -> tuple[list[str], dict[str, dict], bytearray]:
    """What :func:`_save` writes for the snapshot's entries and ``records`` (:func:`_record` of
    newer entries, which win): ``(run ids in order, the columns' descriptions, the blob)``. Made
    column by column: each column's values, in run id order, are the entries' values, so the
    bytes are those of encoding the entries one by one (an entry of the snapshot as
    :meth:`_Snapshot.entries` makes it), without a dict per entry. Columns in the order of the
    keys' first appearance in the entries (in run id order). Raises ValueError for a value the
    snapshot cannot keep."""
    n_old = len(snap.ids)
    new_ids = sorted(records)
    idents, a_keys, a_values, s_keys, s_values, errors, series = \
        map(list, zip(*map(records.__getitem__, new_ids))) if records else ([] for _ in range(7))
    absent_old, absent_new = [_ABSENT] * n_old, [_ABSENT] * len(records)
    if n_old:
        kept = [i for i, rid in enumerate(snap.ids) if rid not in records] if records else list(range(n_old))
        ids = _take(snap.ids, kept) + new_ids
        order = sorted(range(len(ids)), key=ids.__getitem__)
        ids = _take(ids, order)
    else:
        ids = new_ids

    def gather(old: list, new: list) -> list:
        """The column of the kept snapshot entries (``old``, one value per snapshot entry) and of
        the records (``new``, in run id order) in run id order."""
        return _take(_take(old, kept) + new, order) if n_old else new

    blob = bytearray()
    columns = {k: _encode(gather(snap.column(k) if n_old else [], list(new)), blob)
               for k, new in zip(_IDENTITY, zip(*idents) if idents else ([] for _ in _IDENTITY))}
    old_errors = snap.column("spec_error") if n_old else []
    for prefix, keys, values in (("a:", a_keys, a_values), ("s:", s_keys, s_values)):
        names = [c for c in snap.columns if c.startswith(prefix)]
        old_shapes = _row_shapes(snap, names, prefix == "a:") if n_old else []
        no_spec = prefix == "s:" and any(old_errors)  # an entry whose spec is not YAML has none
        if no_spec:
            old_shapes = [() if err else shape for shape, err in zip(old_shapes, old_errors)]
        new_columns = _columns_of(keys, values)
        shapes = gather(old_shapes, keys)
        distinct = dict(zip(map(id, shapes), shapes)).values()  # the key sets, first seen first
        for key in dict.fromkeys(itertools.chain.from_iterable(distinct)):
            old = snap.column(prefix + key) if prefix + key in snap.columns else absent_old
            if no_spec and old is not absent_old:
                old = [_ABSENT if err else v for v, err in zip(old, old_errors)]
            columns[prefix + key] = _encode(gather(old, new_columns.get(key, absent_new)), blob)
    columns["spec_error"] = _encode(gather(old_errors, errors), blob)
    known = [v is True for v in snap.column("series")] if "series" in snap.columns else [False] * n_old
    columns["series"] = _encode(gather(known, [s is not None for s in series]), blob)
    for i, name in enumerate(KEPT_SERIES):
        old = ([None if a is None or not k else a.tobytes() for a, k in zip(snap.column("t:" + name), known)]
               if "t:" + name in snap.columns else [None] * n_old)
        columns["t:" + name] = _encode_series(gather(old, [None if s is None else s[i] for s in series]), blob)
    return ids, columns, blob


def _save(folder: Path, snap: _Snapshot, records: dict[str, tuple]) -> _Snapshot | None:
    """Write the snapshot of ``snap``'s entries and ``records`` (:func:`_merged`) atomically into
    ``folder`` and drop the journals it holds whose writer is gone, unless another reader has
    saved one since ``snap`` was loaded (then that one stays). Returns it as a reader of it would
    load it, or ``None`` if some value cannot be kept in one (then nothing is written: the
    journals and files still answer)."""
    try:
        ids, columns, blob = _merged(snap, records)
    except ValueError:
        return None
    header = json.dumps({"ids": ids, "columns": columns, "consumed": snap.consumed},
                        ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    written = snap.on_disk
    # only over the snapshot this reader started from: one another reader saved meanwhile may
    # hold the entries of journals it has removed since, which this one never read (replacing it
    # would cost the next reader those files; leaving it costs it only this merge)
    if _snapshot_identity(folder) == snap.on_disk:
        with contextlib.suppress(OSError, ValueError):
            folder.mkdir(exist_ok=True)
            with atomic_replace(folder / SNAPSHOT, fsync=False) as tmp:
                with open(tmp, "xb") as fh:
                    fh.write(SNAPSHOT_MAGIC + struct.pack("<QI", len(header), zlib.crc32(blob, zlib.crc32(header)))
                             + header + blob)
            written = _snapshot_identity(folder)
            _drop_merged_journals(folder, snap)
    with contextlib.suppress(OSError):
        os.unlink(folder / "snapshot.json")  # an older lcnrun's snapshot: never read again
    doc = json.loads(header)  # what a reader of the file finds: the header's values, not ours
    return _Snapshot(doc["ids"], doc["columns"], memoryview(blob).toreadonly(), doc["consumed"],
                     on_disk=written)


_SERIES_NAMES = frozenset(KEPT_SERIES)
#: for finding runs of digits by ``in``: digits as b"0", "-" kept, the bytes a JSON number may
#: follow (``:``, ``,``, ``[``, white space) as b"S", every other byte a space
_DIGIT_RUNS = bytes(48 if 48 <= i <= 57 else 45 if i == 45 else 83 if i in b":,[ \t\r\n" else 32
                    for i in range(256))


def _may_hold_big_int(data: bytes) -> bool:
    """Whether ``data`` may hold an integer beyond int64 (20 digits after a byte a number may
    follow, or 19 after a minus), which orjson would read as a float (the standard parser, as an
    int). One C pass of ``translate`` and two ``in`` (200 MB: 0.3 s; a regular expression takes
    5 s). A float's fraction (after ".") is no such run; text holding one is only parsed slower."""
    runs = data.translate(_DIGIT_RUNS)
    return (b"S00000000000000000000" in runs or b"-0000000000000000000" in runs
            or runs.startswith(b"00000000000000000000"))


def _json_line(line: bytes, checked: bool = False) -> Any:
    """A journal line's JSON value (``None`` if it is not JSON), exactly as ``json.loads`` reads
    it. orjson reads 100,000 lines of 2 KB 3.5x faster (1.3 s, not 4.6 s); what it refuses (NaN and
    infinities, a lone surrogate, nesting beyond 1,024) or may read otherwise (an integer beyond
    int64: :func:`_may_hold_big_int`, unless ``checked`` says the caller found none) is left to
    ``json.loads``."""
    import orjson  # noqa: PLC0415

    if checked or not _may_hold_big_int(line):
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def _line_record(line: bytes, shapes: dict[tuple, tuple], checked: bool = False) -> tuple[str, tuple] | None:
    """A journal line as ``(run id, its entry's record)`` (:func:`_record`, key tuples shared
    through ``shapes``), or ``None`` for a damaged line or one of an older lcnrun (without the
    ctime: such entries are never used, the file is read instead). 100,000 lines: kept lean.
    ``checked``: the line holds no integer beyond int64 (:func:`_json_line`)."""
    entry = _json_line(line, checked)
    if type(entry) is not dict:
        return None
    ident = (entry.get("ino"), entry.get("size"), entry.get("mtime_ns"), entry.get("ctime_ns"))
    rid, attrs = entry.get("id"), entry.get("attrs")
    if not (type(rid) is str and type(attrs) is dict and type(attrs.get("status")) is str
            and type(ident[0]) is int and type(ident[1]) is int and type(ident[2]) is int
            and type(ident[3]) is int):
        return None
    spec, error = entry.get("spec"), ""
    if type(spec) is not dict:
        text = entry.get("spec_text")
        if type(text) is not str:
            return None
        spec, error = flat_spec(text)
    series, kept = entry.get("series"), None
    if type(series) is dict and series.keys() <= _SERIES_NAMES:
        with contextlib.suppress(ValueError, TypeError):
            raw = tuple(map(_series_bytes, map(series.get, KEPT_SERIES)))
            if raw.count(None) == len(KEPT_SERIES) - len(series):  # each one given is a series
                kept = raw
    return rid, _record(ident, attrs, spec, error, kept, shapes)


def _series_text(array) -> str:
    """A kept series (1-D float64, :func:`kept_series`) as a journal line holds it: the base64
    text of its little-endian bytes. Exact to the bit (a NaN's sign and payload too), ~1/3 of the
    bytes of the numbers' reprs, and read back by one C call instead of a float parse per number."""
    import numpy as np  # noqa: PLC0415

    return binascii.b2a_base64(np.asarray(array, dtype="<f8").tobytes(), newline=False).decode("ascii")


#: ``a2b_base64``'s strict mode (Python 3.11 and later)
_STRICT = {"strict_mode": True} if sys.version_info >= (3, 11) else {}


def _series_bytes(values: Any) -> bytes | None:
    """A journal line's series as the little-endian bytes of at most :data:`KEPT_TIMES` float64,
    or ``None`` if it is not one. Either :func:`_series_text`'s text, taken only if it is exactly
    that text of its bytes (which must be whole float64s), or, as an older lcnrun wrote it, a JSON
    list of numbers (no bool, no string, no null, no list: checked by numpy's own reading of the
    list, its dtype, not number by number)."""
    if type(values) is str:
        try:  # strict: only the alphabet, in whole quanta, padded as the encoder pads
            raw = binascii.a2b_base64(values, **_STRICT)
        except (binascii.Error, ValueError):
            return None
        if len(raw) % 8 or len(raw) > 8 * KEPT_TIMES or len(values) != (len(raw) + 2) // 3 * 4:
            return None
        if not _STRICT:  # Python 3.10: the lenient decoder skips what is not base64
            return raw if binascii.b2a_base64(raw, newline=False) == values.encode("ascii", "replace") else None
        # what strict mode lets through besides: padding after a whole quantum (the length
        # above), and bits set in the last character before the padding, which no encoder sets
        # (re-encoding the last one or two bytes, not the whole series: only the canonical text
        # is taken)
        tail = len(raw) % 3
        if tail and binascii.b2a_base64(raw[-tail:], newline=False) != values[-4:].encode("ascii"):
            return None
        return raw
    if type(values) is not list or len(values) > KEPT_TIMES:
        return None  # None too: a series the line does not have
    import numpy as np  # noqa: PLC0415

    array = np.array(values)
    if array.ndim != 1 or (array.dtype.kind not in "fi" and array.size):
        return None
    return array.astype("<f8").tobytes()


def _writer_gone(name: str, host: str) -> bool:
    """Whether nobody appends to the journal ``name`` again: it is final (its writer ended,
    :func:`close_journals`), or it was written on this host (``host``) by a process that is gone."""
    if name.endswith(FINAL_SUFFIX):
        return True
    parts = name[len(JOURNAL_PREFIX):-len(JOURNAL_SUFFIX)].rsplit(".", 2)
    return len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not pid_alive(int(parts[1]))


def _read_journals(folder: Path, snap: _Snapshot) -> dict[str, tuple]:
    """The journals' lines after what ``snap.consumed`` says was read (which it advances):
    ``{run_id: record}`` (:func:`_record`) of every whole line that is an entry (a later line of
    a run wins; a damaged line is left out: that run is read from its file). 100,000 one-run
    journals: no Path and no file object per journal, and one unchanged is not read (one that
    nobody appends to is removed: the snapshot read holds it all). Journals no longer there are
    dropped from ``snap.consumed``: after 100,000 one-run tasks the snapshot does not keep, load
    and check 100,000 names for ever."""
    out: dict[str, tuple] = {}
    try:
        names = [e.name for e in os.scandir(folder)
                 if e.name.startswith(JOURNAL_PREFIX) and e.name.endswith(JOURNAL_SUFFIX)]
    except OSError:
        return out
    where, host = os.fspath(folder), host_tag()
    shapes: dict[tuple, tuple] = {}
    consumed = snap.consumed
    # each journal once, by the name it is known by (one listed under both names, renamed while
    # listed, or a foreign copy of the same name: the first listed)
    listed: dict[str, str] = {}
    for name in names:
        listed.setdefault(_journal_key(name), name)
    for key in [k for k in consumed if k not in listed]:
        del consumed[key]  # its journal was removed (merged, nobody appends): left out of the next save
    for key, name in listed.items():
        start = consumed.get(key, 0)
        gone = _writer_gone(name, host)  # asked before the size is taken: that size is then final
        try:
            fd = os.open(os.path.join(where, name), os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                data = os.pread(fd, size - start, start) if size > start else b""
            finally:
                os.close(fd)
        except OSError:
            continue
        if gone:
            if size == start:  # the snapshot read holds it all and nobody appends: not needed
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(where, name))
                continue
            snap.final[name] = size
        end = data.rfind(b"\n") + 1  # a last line without its newline is still being written
        if end <= 0:
            continue
        data = data[:end]
        checked = not _may_hold_big_int(data)  # one pass over the journal, not one per line
        for line in data.splitlines():
            got = _line_record(line, shapes, checked)
            if got is not None:
                out[got[0]] = got[1]
        consumed[key] = start + end
        snap.changed = True
    return out


def _drop_merged_journals(folder: Path, snap: _Snapshot) -> None:
    """Remove journals that the snapshot holds entirely and that nobody appends to again (final,
    or their writer on this host is gone), so 100,000 one-run Slurm tasks leave no 100,000 files.
    One that was so before it was read is known by its size then (no ``stat`` again)."""
    host, where = host_tag(), os.fspath(folder)
    for name, size in list(snap.final.items()):
        if snap.consumed.get(_journal_key(name)) == size:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(where, name))
                # its entry in consumed goes with the next save (a name never comes back)
    known = {_journal_key(name) for name in snap.final}
    for name, consumed in list(snap.consumed.items()):
        if name in known or not _writer_gone(name, host):
            continue
        path = os.path.join(where, name)
        try:
            if os.stat(path).st_size == consumed:
                os.unlink(path)
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
    """``{run_id: (path as text, stat)}`` of the run files in ``runs_dir``, in run id order:
    regular files (after symlinks) named ``<run_id>.h5``, not hidden (temporaries, claims). A
    FIFO, a folder, a dangling link named ``*.h5`` is no run file (and is never opened: a FIFO
    would block)."""
    with bulk():  # 100,000 stat results and tuples: no cycles for the collector to find
        return _list_files(runs_dir, ordered=True)


_NAME = operator.attrgetter("name")


def _list_files(runs_dir: os.PathLike | str, ordered: bool = False) -> dict[str, tuple[str, os.stat_result]]:
    """:func:`run_file_stats`, in directory order unless ``ordered``."""
    out: dict[str, tuple[str, os.stat_result]] = {}
    try:
        entries = os.scandir(runs_dir)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return out
    with entries:
        # the names sorted before any stat (not the 100,000 items after: strings sort fast)
        chosen = [e for e in entries if e.name.endswith(".h5") and not e.name.startswith(".")]
    for entry in sorted(chosen, key=_NAME) if ordered else chosen:
        try:
            st = entry.stat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            out[entry.name[:-3]] = (entry.path, st)  # no Path per file: 100,000 of them cost
    return out


# -- reading ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class IndexedRun:
    """What the index (or the file itself) says of one run file: ``status`` (``unreadable`` with
    ``reason`` for a file that cannot be read), its ``attrs`` (read_run_attrs names, without
    ``spec``; ``None`` for an unreadable file or when only statuses were asked for), ``spec``
    (the resolved spec flattened, ``{dotted.key: value}``; ``None`` if it is not YAML, then
    ``spec_error`` says why) and ``extra`` (what a ``reader`` returned beside the attributes, for
    a file that was read)."""

    run_id: str
    path: str
    status: str
    reason: str = ""
    attrs: dict[str, Any] | None = None
    spec: dict[str, Any] | None = None
    spec_error: str = ""
    extra: Any = None
    series: dict | None = None  # the kept series (KEPT_SERIES) if the entry has them


#: ``reader(items)``: for each ``(run_id, path)`` of ``items``, ``(attrs, series)``: the
#: attributes as ``read_run_attrs`` returns them (with "spec") and ``{name: array}`` of the
#: series read in the same open (at least :data:`KEPT_SERIES`, or ``None``), or the
#: ``RunFileError``
Reader = Callable[[list[tuple[str, str]]], list]


def _read_serially(items: list[tuple[str, str]]) -> list:
    from .runfile import RunFileError  # noqa: PLC0415
    from .series import read_attrs_and_series  # noqa: PLC0415

    out = []
    for _, path in items:
        try:
            out.append(read_attrs_and_series(path, KEPT_SERIES, check_marks=False))
        except RunFileError as err:
            out.append(err)
    return out


def scan(runs_dir: os.PathLike | str, run_ids=None, *, details: bool = True,
         reader: Reader | None = None,
         listing: dict[str, tuple[str, os.stat_result]] | None = None,
         kept_series: bool = True) -> dict[str, IndexedRun]:
    """What every run file in ``runs_dir`` says (or only those of ``run_ids``): from the index
    where it knows the very file, else from the file itself (its entry then goes into the next
    snapshot). The answer is the same as reading every file (see the module docstring), only
    faster. ``details=False``: statuses only (``attrs`` and ``spec`` stay ``None``).
    ``reader``: how the files without a current entry are read (default: one after the other
    here; e.g. in worker processes, or with a few series beside the attributes). ``listing``:
    :func:`run_file_stats` of ``runs_dir`` if the caller has it already. ``kept_series=False``:
    a run the index answers for comes without its kept series (``series=None``, as an entry that
    has none; a summary needs none). Runs without cyclic garbage collection (:func:`bulk`)."""
    with bulk():
        res = _resolve(runs_dir, run_ids, listing)
        out = _unreadable_runs(res)
        out.update(_current_runs(res, res.current, details, kept_series))
        out.update(_read_missing(res, reader, details))
        _finish(res)
        return {rid: out[rid] for rid in sorted(out)}


def statuses(runs_dir: os.PathLike | str, *, reader: Reader | None = None,
             listing: dict[str, tuple[str, os.stat_result]] | None = None) -> dict[str, str]:
    """``{run_id: status}`` of every run file in ``runs_dir``, in run id order: what
    ``scan(runs_dir, details=False)`` says of each (``unreadable`` for a file that cannot be
    read), without an :class:`IndexedRun` per file (``lcnrun status`` of 100,000 runs)."""
    with bulk():
        res = _resolve(runs_dir, None, listing)
        out = {rid: run.status for rid, run in _unreadable_runs(res).items()}
        ok = _statuses()
        column = (res.snap.column("a:status")
                  if not res.snap.newer and res.current == res.snap.ids else None)
        if column is not None and set(column) <= set(ok):  # every file is its snapshot entry
            out.update(zip(res.current, column))
        else:
            known = res.known
            for rid in res.current:
                status = known[rid][1]
                out[rid] = status if status in ok else "unreadable"
        out.update((rid, run.status) for rid, run in _read_missing(res, reader, False).items())
        _finish(res)
        return {rid: out[rid] for rid in sorted(out)}


def scan_flat(runs_dir: os.PathLike | str, run_ids=None, *, reader: Reader | None = None,
              listing: dict[str, tuple[str, os.stat_result]] | None = None,
              drop_attrs: Iterable[str] = ()) -> tuple[dict[str, tuple[str, str, dict, tuple]],
                                                       dict[str, IndexedRun]]:
    """:func:`scan` for a table of 100,000 runs: ``(flat, others)``. ``flat``: ``{run_id: (path,
    status, row, spec_keys)}`` of the runs the snapshot's columns answer, ``row`` one new dict of
    the flattened spec and the attributes (an attribute wins over a spec key of the same name;
    ``drop_attrs`` left out), built column by column (:meth:`_Snapshot.flat_rows`), ``spec_keys``
    the run's spec keys in order; ``others``: :class:`IndexedRun` (with details, no kept series)
    of every other run file (journal entries not yet merged, files read, unreadable ones, a spec
    that is not YAML).
    Together: every run file of ``scan(..., kept_series=False)``, the same values."""
    with bulk():
        res = _resolve(runs_dir, run_ids, listing)
        others = _unreadable_runs(res)
        made = res.snap.flat_rows(frozenset(drop_attrs)) if res.current and res.snap.ids else None
        flat: dict[str, tuple[str, str, dict, tuple]] = {}
        if made is None:  # nothing current, or columns that do not make rows that way
            newer_too = res.current
        else:
            rows, keys = made
            at = res.snap.position()
            newer, ok, known = res.snap.newer, _statuses(), res.known
            errors = res.snap.column("spec_error")
            newer_too = []
            for rid in res.current:
                status = known[rid][1]
                if rid in newer or status not in ok or errors[at[rid]]:
                    newer_too.append(rid)
                else:
                    i = at[rid]
                    flat[rid] = (res.files[rid][0], status, rows[i], keys[i])
        others.update(_current_runs(res, newer_too, True, False))
        others.update(_read_missing(res, reader, True))
        _finish(res)
        return flat, others


@dataclass
class ColumnView:
    """Run files exactly as the snapshot's columns hold them (:func:`scan_columns`), ``ids`` in
    run id order: ``status``; ``spec``: ``{spec key: values}`` (every run has every
    key; ``constant``: the keys stored as one value); ``attrs``: ``{attribute: values}``, ``None``
    where a run has no such attribute, only those some run has; ``present``: for an attribute that
    some runs lack, whether each run has it."""

    ids: list[str]
    status: list[str]
    spec: dict[str, list]
    constant: set[str]
    attrs: dict[str, list]
    present: dict[str, list[bool]] = field(default_factory=dict)


def scan_columns(runs_dir: os.PathLike | str, run_ids=None, *,
                 listing: dict[str, tuple[str, os.stat_result]] | None = None,
                 drop_attrs: Iterable[str] = (), reserved: tuple[str, ...] = ()) -> ColumnView | None:
    """The run files of ``runs_dir`` (or those of ``run_ids``) as columns (:class:`ColumnView`),
    when the snapshot's columns answer for every one of them as they are: no file to read, no
    journal entry since, no unreadable mark, a known status and a YAML spec in each, every spec
    key in all of them or in none, no spec key named like an attribute that some of them lack
    (``drop_attrs`` left out), nor like a name of ``reserved``. ``None`` otherwise (then
    :func:`scan_flat` answers; the journals merged here are saved either way, so that it does not
    merge them again). 100,000 runs of a sweep in a few column copies, without a dict per run."""
    with bulk():
        res = _resolve(runs_dir, run_ids, listing)
        view = _column_view(res, set(drop_attrs), reserved)
        _finish(res)  # journals it merged are kept either way: the rows' reading then finds them
        return view


def _column_view(res: _Resolved, drop: set[str], reserved: tuple[str, ...]) -> ColumnView | None:
    """:func:`scan_columns`' answer from what ``res`` resolved, or ``None``."""
    snap = res.snap
    if res.missing or res.unreadable or not res.current or (
            snap.newer and not snap.newer.keys().isdisjoint(res.current)):
        return None
    spec = [n for n in snap.columns if n.startswith("s:")]
    attrs = [n for n in snap.columns if n.startswith("a:") and n[2:] not in drop]
    if any(n[2:] in reserved for n in spec):
        return None
    if not set(snap.column("a:status")) <= set(_statuses()) or any(snap.column("spec_error")):
        return None
    if res.current == snap.ids:
        take = list
    else:
        at = snap.position()
        where = [at[rid] for rid in res.current]
        take = lambda col: [col[i] for i in where]  # noqa: E731
    spec_values = {}
    for n in spec:
        values = take(snap.column(n))
        if "mask" in snap.columns[n] and _has_absent(values):
            if not _all_absent(values):
                return None  # a spec key some of these runs lack (the rows say which)
            continue  # a key of other runs only
        spec_values[n[2:]] = values
    view = ColumnView(list(res.current), take(snap.column("a:status")), spec_values,
                      {n[2:] for n in spec if snap.columns[n]["enc"] == "const"} & spec_values.keys(), {})
    for n in attrs:
        values = take(snap.column(n))
        if "mask" in snap.columns[n] and _has_absent(values):
            if n[2:] in spec_values:
                return None  # a spec key's value in some rows, the attribute's in others
            if _all_absent(values):
                continue  # no run of these has it
            view.present[n[2:]] = [v is not _ABSENT for v in values]
            values = [None if v is _ABSENT else v for v in values]
        view.attrs[n[2:]] = values
    return view


def merge_journals(runs_dir: os.PathLike | str) -> None:
    """Merge the writers' journals into the snapshot now, as the next reader would (a sweep does
    it when it ends: 100,000 journal lines take ~20 s to merge). Files without an entry are not
    read here (a reader reads them). Best effort: never raises for a missing or read-only index."""
    if index_dir(runs_dir) is None:
        return
    with bulk(), contextlib.suppress(OSError):
        _finish(_resolve(runs_dir, None, None))


def _statuses() -> tuple[str, ...]:
    from .runfile import STATUSES  # noqa: PLC0415

    return STATUSES


@dataclass
class _Resolved:
    """Which run files the index answers for: ``files`` (the listing, ``{run_id: (path, stat)}``),
    the index ``folder`` and its merged ``snap``; ``unreadable``: ``{run_id: reason}`` of files
    marked so; ``current``: the run ids whose entry (``known``: ``{run_id: (identity, status)}``)
    is for this very file; ``missing``: ``(run_id, path)`` of the files to read."""

    files: dict[str, tuple[str, os.stat_result]]
    folder: Path | None
    snap: _Snapshot
    unreadable: dict[str, str]
    current: list[str]
    missing: list[tuple[str, str]]

    @functools.cached_property
    def known(self) -> dict[str, tuple[tuple, Any]]:
        return self.snap.identity_and_status()


def _resolve(runs_dir: os.PathLike | str, run_ids,
             listing: dict[str, tuple[str, os.stat_result]] | None) -> _Resolved:
    files = _list_files(runs_dir, ordered=True) if listing is None else listing
    if run_ids is not None:
        wanted = set(run_ids)
        files = {rid: v for rid, v in files.items() if rid in wanted}
    folder = index_dir(runs_dir)
    snap = _load_snapshot(folder) if folder is not None else _Snapshot()
    marks: dict[str, dict] = {}
    if folder is not None:
        marks = _marks(folder)
        lines = _read_journals(folder, snap)
        if lines:  # merged and saved now: all that follows reads columns, not entries
            merged = _save(folder, snap, lines)
            if merged is None:  # a value the columns cannot keep: the entries answer
                snap.newer.update((rid, _entry_of(rid, r)) for rid, r in lines.items())
            else:
                snap = merged
    res = _Resolved(files, folder, snap, {}, [], [])
    if not marks and not snap.newer and list(files) == snap.ids and _same_identities(files, snap, res):
        return res  # every file is the one its snapshot entry is for, compared column by column
    unreadable, missing, current = res.unreadable, res.missing, res.current
    current.clear()
    known_of = res.known.get
    for rid, (path, st) in files.items():  # 100,000 files: kept lean
        if marks and rid in marks:
            reason = _mark_reason(marks[rid], st)
            if reason is not None:
                unreadable[rid] = reason
                continue
        k = known_of(rid)
        if k is not None and k[0] == (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns):
            current.append(rid)
        else:
            missing.append((rid, path))
    return res


def _same_identities(files: dict[str, tuple[str, os.stat_result]], snap: _Snapshot,
                     res: _Resolved) -> bool:
    """Whether every file of ``files`` (in the order of ``snap.ids``) has the identity of its
    entry, compared as int64 arrays; ``res.current`` then lists them all. ``False`` (nothing
    said) when some do not, or a column is not int64: the caller compares file by file."""
    import numpy as np  # noqa: PLC0415

    n = len(files)
    stats = [st for _, st in files.values()]
    for name, attr in zip(_IDENTITY, ("st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")):
        col = snap.columns.get(name, {})
        if "mask" in col or col.get("enc") not in ("i8", "const") or (
                col["enc"] == "const" and type(col.get("value")) is not int):
            return False
        try:
            now = np.fromiter(map(operator.attrgetter(attr), stats), dtype=np.int64, count=n)
            stored = (np.frombuffer(snap.blob, dtype="<i8", count=n, offset=int(col["at"]))
                      if col["enc"] == "i8" else np.int64(col["value"]))
        except OverflowError:  # past 2**63 (an inode number): compared file by file
            return False
        if not (now == stored).all():
            return False
    res.current.extend(files)
    return True


def _current_runs(res: _Resolved, run_ids: list[str], details: bool,
                  kept_series: bool) -> dict[str, IndexedRun]:
    """:class:`IndexedRun` of the runs ``run_ids`` (of ``res.current``) from their entries (see
    :func:`scan` for ``details`` and ``kept_series``)."""
    out: dict[str, IndexedRun] = {}
    entries = res.snap.entries(series=kept_series) if (details and run_ids) else {}
    for rid in run_ids:
        path, status = res.files[rid][0], res.known[rid][1]
        if status not in _statuses():  # as read_run_status says of such a file
            out[rid] = IndexedRun(rid, path, "unreadable", f"bad status {status!r}")
        elif not details:
            out[rid] = IndexedRun(rid, path, status)
        else:
            e = entries[rid]
            out[rid] = IndexedRun(rid, path, status, "", e["attrs"], e["spec"], e["spec_error"],
                                  None, e.get("series"))
    return out


def _unreadable_runs(res: _Resolved) -> dict[str, IndexedRun]:
    return {rid: IndexedRun(rid, res.files[rid][0], "unreadable", reason)
            for rid, reason in res.unreadable.items()}


def _read_missing(res: _Resolved, reader: Reader | None, details: bool) -> dict[str, IndexedRun]:
    """The files of ``res.missing`` read (by ``reader``); their entries go into the snapshot."""
    from .runfile import RunFileError  # noqa: PLC0415

    out: dict[str, IndexedRun] = {}
    if not res.missing:
        return out
    now = functools.cache(lambda: file_system_now_ns(res.folder))  # read only if a file needs it
    for (rid, path), got in zip(res.missing, (reader or _read_serially)(res.missing)):
        if isinstance(got, RunFileError):
            out[rid] = IndexedRun(rid, path, "unreadable", got.reason)
            continue
        attrs, extra = got
        e = _entry(rid, res.files[rid][1], attrs, extra)
        st = res.files[rid][1]
        if res.folder is not None and not racy(st, now() if whole_seconds(st) else None):
            res.snap.newer[rid] = e
            res.snap.changed = True
        status = e["attrs"].get("status")
        if status not in _statuses():
            out[rid] = IndexedRun(rid, path, "unreadable", f"bad status {status!r}")
            continue
        out[rid] = IndexedRun(rid, path, status, "", e["attrs"] if details else None,
                              e["spec"] if details else None, e["spec_error"], extra,
                              e["series"] if details else None)
    return out


def _finish(res: _Resolved) -> None:
    if res.folder is not None and res.snap.changed:
        _save(res.folder, res.snap, _records(res.snap.newer))
