"""The experiment folder ``results/<name>/`` (docs/spec.md section 3)::

    experiment.yaml     the spec as given            (atomic; rewritten only when it changed)
    manifest.tsv        index<TAB>run_id<TAB>overrides, one line per sweep point, compact JSON
    runs/<run_id>.h5    one run file each             (lcnrun.store.runfile)
    .lock               flock target serialising manifest writes of concurrent sweeps
"""
from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import operator
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from .atomic import atomic_write_text, clean_stale_temporaries, open_own_file
from .index import bulk
from .runfile import RunFileError, read_run_status

MANIFEST_HEADER = ("index", "run_id", "overrides")
UNREADABLE = "unreadable"


class ExperimentDirError(Exception):
    """The experiment folder cannot be used as one (e.g. ``runs`` is a file): one message."""


def _rows_at_once(lines: list[str]) -> list[ManifestRow] | None:
    """The manifest's rows (``lines`` after the header) as ``write_manifest`` writes them, each
    column at C speed (100,000 rows: json.loads' own wrapper was ~70 % of its time); ``None``
    for anything else (a bad row, spaces around the JSON ...): then the rows are read one by one
    and the bad one is named."""
    parts = [line.split("\t") for line in lines if line]
    if not all(map((3).__eq__, map(len, parts))):
        return None
    index, run_id, overrides = zip(*parts) if parts else ((), (), ())
    scan = json.JSONDecoder().scan_once  # what raw_decode calls: (value, end) or StopIteration
    try:
        decoded = list(map(scan, overrides, itertools.repeat(0)))  # a StopIteration ends the list
        numbers = list(map(int, index))
    except (ValueError, RecursionError):
        return None
    if len(decoded) != len(overrides):
        return None
    values, ends = zip(*decoded) if decoded else ((), ())
    if not (all(map(operator.eq, ends, map(len, overrides)))
            and all(map(dict.__instancecheck__, values))):
        return None
    return list(map(ManifestRow, numbers, run_id, values))


class ManifestRow(NamedTuple):
    """One sweep point: its index, its run id and the overrides (dotted key -> value) it sets."""

    index: int
    run_id: str
    overrides: dict[str, Any]


def _overrides_json(overrides: Any) -> str:
    """Compact JSON of ``overrides`` (a dict, or JSON text of one); key order is kept."""
    if isinstance(overrides, str):
        overrides = json.loads(overrides)
    if not isinstance(overrides, dict):
        raise TypeError(f"overrides must be a dict, got {type(overrides).__name__}")
    return json.dumps(overrides, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class ExperimentDir:
    """Paths and bookkeeping of one experiment folder (nothing is created until written)."""

    def __init__(self, root: os.PathLike | str):
        self.root = Path(root)
        self.experiment_yaml = self.root / "experiment.yaml"
        self.manifest_tsv = self.root / "manifest.tsv"
        self.runs_dir = self.root / "runs"
        self.lock_path = self.root / ".lock"

    def __repr__(self) -> str:
        return f"ExperimentDir({str(self.root)!r})"

    def run_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.h5"

    def create(self) -> "ExperimentDir":
        """Make the folder and ``runs/``; :class:`ExperimentDirError` if something that is not
        a folder is in the way (``OSError`` of a read-only or full file system propagates)."""
        for folder in (self.root.parent, self.root, self.runs_dir):
            if folder.exists() and not folder.is_dir():
                raise ExperimentDirError(f"{folder} is a file, not a folder: cannot keep the "
                                         "experiment's results there (move it away)")
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        return self

    def _unchanged(self, path: Path, text: str) -> bool:
        """Whether ``path`` holds exactly ``text`` (a file that is no UTF-8 text differs)."""
        try:
            return path.read_bytes() == text.encode("utf-8")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False

    # -- experiment.yaml ----------------------------------------------------------------------
    def write_experiment_yaml(self, text: str) -> bool:
        """Store the spec as given; returns False (and touches nothing) if it is unchanged."""
        if self._unchanged(self.experiment_yaml, text):
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.experiment_yaml, text)
        return True

    # -- manifest.tsv -------------------------------------------------------------------------
    def write_manifest(self, rows: Iterable[tuple[int, str, Any]]) -> bool:
        """Replace ``manifest.tsv`` atomically by ``rows`` of ``(index, run_id, overrides)``
        (overrides: a dict or its JSON text). Hold :meth:`lock` when sweeps may run concurrently.
        Returns False (and touches nothing) if the file already says exactly this: thousands of
        array tasks each preparing the folder must not rewrite it.
        """
        lines = ["\t".join(MANIFEST_HEADER)]
        for index, run_id, overrides in rows:
            if not run_id or any(c in run_id for c in "\t\r\n"):
                raise ValueError(f"bad run id {run_id!r} in manifest row {index}")
            lines.append(f"{int(index)}\t{run_id}\t{_overrides_json(overrides)}")
        text = "\n".join(lines) + "\n"
        if self._unchanged(self.manifest_tsv, text):
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.manifest_tsv, text)
        return True

    def read_manifest(self) -> list[ManifestRow]:
        """The rows of ``manifest.tsv`` in file order; ``ValueError`` names file and line."""
        try:
            text = self.manifest_tsv.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            line = self.manifest_tsv.read_bytes().count(b"\n", 0, err.start) + 1
            raise ValueError(f"{self.manifest_tsv}:{line}: not UTF-8 text ({err.reason} at byte "
                             f"{err.start})") from None
        lines = text.splitlines()
        if not lines or tuple(lines[0].split("\t")) != MANIFEST_HEADER:
            raise ValueError(f"{self.manifest_tsv}:1: expected the header "
                             f"{chr(9).join(MANIFEST_HEADER)!r}")
        with bulk():  # 100,000 rows of tuples and dicts: no cycles for the collector to find
            rows = _rows_at_once(lines[1:])
        if rows is not None:
            return rows
        rows = []
        for lineno, line in enumerate(lines[1:], start=2):  # row by row: names the bad one
            if not line:
                continue
            try:
                index, run_id, overrides = line.split("\t")
                value = json.loads(overrides)
                if not isinstance(value, dict):
                    raise ValueError("overrides is not a JSON object")
                rows.append(ManifestRow(int(index), run_id, value))
            except ValueError as exc:
                raise ValueError(f"{self.manifest_tsv}:{lineno}: malformed row ({exc})") from None
        return rows

    def manifest_row_matches(self, index: int, run_id: str, overrides: dict[str, Any],
                             n_rows: int) -> bool:
        """Whether ``manifest.tsv`` has ``n_rows`` rows and row ``index`` is exactly what
        :meth:`write_manifest` writes for ``(index, run_id, overrides)`` (one row parsed: a
        cluster task of a 10,000-point sweep checks its own point only). Never raises."""
        return self.manifest_rows_match([(index, run_id, overrides)], n_rows)

    def manifest_rows_match(self, rows: Iterable[tuple[int, str, dict[str, Any]]], n_rows: int) -> bool:
        """Whether ``manifest.tsv`` has ``n_rows`` rows and each of ``rows`` (``(index, run_id,
        overrides)``) is exactly its row there, as :meth:`write_manifest` writes it (only those
        rows are parsed: a bundled task checks its own points). Never raises."""
        try:
            lines = self.manifest_tsv.read_text(encoding="utf-8").splitlines()
            if len(lines) != n_rows + 1 or tuple(lines[0].split("\t")) != MANIFEST_HEADER:
                return False
            for index, run_id, overrides in rows:
                if not (0 <= index < n_rows
                        and lines[index + 1] == f"{int(index)}\t{run_id}\t{_overrides_json(overrides)}"):
                    return False
        except (OSError, UnicodeDecodeError, ValueError, TypeError):
            return False
        return True

    def experiment_yaml_is(self, text: str) -> bool:
        """Whether ``experiment.yaml`` holds exactly ``text``. Never raises."""
        try:
            return self.experiment_yaml.read_text(encoding="utf-8") == text
        except (OSError, UnicodeDecodeError):
            return False

    # -- runs ---------------------------------------------------------------------------------
    def existing_runs(self) -> dict[str, str]:
        """``{run_id: status}`` of every run file under ``runs/`` (hidden temporaries skipped);
        a file that is not a readable run file maps to ``"unreadable"``."""
        out: dict[str, str] = {}
        try:
            entries = os.scandir(self.runs_dir)
        except FileNotFoundError:
            return out
        with entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.name.endswith(".h5"):
                    continue
                try:
                    out[entry.name[:-3]] = read_run_status(entry.path)
                except RunFileError:
                    out[entry.name[:-3]] = UNREADABLE
        return out

    def clean_stale_temporaries(self, older_than_seconds: float = 600.0) -> list[Path]:
        """Remove temporaries left by killed writers, in the folder and in ``runs/``."""
        return (clean_stale_temporaries(self.root, older_than_seconds)
                + clean_stale_temporaries(self.runs_dir, older_than_seconds))

    @contextlib.contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        """Hold an exclusive ``flock`` on ``<root>/.lock`` (blocks; ``timeout`` seconds at most,
        then ``TimeoutError``). Serialises manifest writes of sweeps of one experiment running
        at once, on one host or, where the file system supports flock (NFSv4, Lustre with
        ``flock`` mount option), across nodes. Not re-entrant."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = open_own_file(self.lock_path, os.O_RDWR | os.O_CREAT)
        try:
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise TimeoutError(f"{self.lock_path}: still locked after "
                                               f"{timeout} s") from None
                        time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the lock
