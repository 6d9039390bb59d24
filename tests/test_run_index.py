"""The run index beside the run files (lcnrun.store.index): whatever state it is in (fresh,
merged, deleted, damaged, stale, inventing runs), ``status`` and ``summary`` answer exactly what
reading every run file answers (the independent value: each file read by the HDF5 readers). Also
issue 11.7 (a FIFO named *.h5 is no run file) and 11.8 (a file whose data region cannot be read is
``unreadable`` everywhere once a full read found it so)."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from sameness import assert_same
from typer.testing import CliRunner

from lcnrun.cli import app
from lcnrun.report.source import open_experiment, read_runs, scan_runs
from lcnrun.report.status import experiment_status
from lcnrun.policy import UNREADABLE, file_state, should_run
from lcnrun.store import RunRecord, read_run, read_run_attrs, read_run_status, write_run
from lcnrun.store.experiment import ExperimentDir
from lcnrun.store.index import INDEX_DIR, SNAPSHOT, SNAPSHOT_MAGIC, flat_spec, scan
from lcnrun.store.runfile import RunFileError

STATUSES = ("completed", "diverged", "failed", "stopped")


def spec_text(i: int) -> str:
    return f"name: idx\ninit:\n  kind: gaussian\n  seed: {i}\ndynamics:\n  kind: gradient_descent\n  lr: {0.01 * (1 + i % 3)}\n"


def make_experiment(tmp_path: Path, n: int = 12) -> ExperimentDir:
    xdir = ExperimentDir(tmp_path / "results" / "idx").create()
    rows = []
    for i in range(n):
        rid = f"run{i:04d}"
        write_run(xdir.run_path(rid), RunRecord(rid, STATUSES[i % 4], spec_text(i),
                                                final_attrs={"loss": 1.0 / (i + 1), "t": float(i)}),
                  fsync=False)
        rows.append((i, rid, {"init.seed": i}))
    rows.append((n, "pending0000", {"init.seed": n}))  # a point without a run file
    xdir.write_manifest(rows)
    return xdir


def truth(xdir: ExperimentDir) -> dict[str, str]:
    """Every run file read by the HDF5 reader: ``{run_id: status or 'unreadable'}``."""
    out = {}
    for p in sorted(xdir.runs_dir.glob("*.h5")):
        if p.name.startswith(".") or not p.is_file():
            continue
        try:
            out[p.stem] = read_run_status(p)
        except RunFileError:
            out[p.stem] = "unreadable"
    return out


def truth_rows(xdir: ExperimentDir) -> list[tuple]:
    files = {p.stem: p for p in sorted(xdir.runs_dir.glob("*.h5")) if p.is_file() and not p.name.startswith(".")}
    return [(i.run_id, i.status, i.attrs.get("final.loss"), sorted(i.spec.items())) for i in read_runs(files, processes=1)]


def answers(xdir: ExperimentDir):
    src = open_experiment(xdir.root)
    st = experiment_status(src)
    states = {s.run_id: s.state for s in [*st.states, *st.orphans]}  # orphans: files too
    rows = [(i.run_id, i.status, i.attrs.get("final.loss"), sorted(i.spec.items()))
            for i in scan_runs(xdir.runs_dir, src.run_files())]
    return {rid: s for rid, s in states.items() if s != "pending"}, states.get("pending0000"), rows


def check_same_as_full_scan(xdir: ExperimentDir, pending: str | None = "pending") -> None:
    """Status and rows are those of every file read; ``pending``: the state of the point
    ``pending0000`` (``None``: an experiment without it)."""
    states, point, rows = answers(xdir)
    assert states == truth(xdir)
    assert point == pending
    assert rows == truth_rows(xdir)


def test_fresh_index_from_the_writers_journals(tmp_path):
    xdir = make_experiment(tmp_path)
    journals = list((xdir.root / INDEX_DIR).glob("journal.*.jsonl"))
    assert journals and sum(len(j.read_text().splitlines()) for j in journals) == 12
    check_same_as_full_scan(xdir)
    assert (xdir.root / INDEX_DIR / SNAPSHOT).exists()  # the first reader merged them
    check_same_as_full_scan(xdir)  # and the next reads the snapshot


def test_deleted_index_is_rebuilt(tmp_path):
    xdir = make_experiment(tmp_path)
    shutil.rmtree(xdir.root / INDEX_DIR)
    check_same_as_full_scan(xdir)
    assert (xdir.root / INDEX_DIR / SNAPSHOT).exists()
    check_same_as_full_scan(xdir)


def _snapshot_with_header(data: bytes, change) -> bytes:
    """The snapshot ``data`` with its JSON header changed by ``change(header)``, its checksum
    made right again (so that the reader's other checks are what must refuse it)."""
    at = len(SNAPSHOT_MAGIC)
    size, _ = struct.unpack_from("<QI", data, at)
    at += 12
    header = json.loads(data[at:at + size])
    change(header)
    text = json.dumps(header).encode()
    blob = data[at + size:]
    return SNAPSHOT_MAGIC + struct.pack("<QI", len(text), zlib.crc32(blob, zlib.crc32(text))) + text + blob



def _float_column(header: dict) -> str:
    return next(k for k, c in header["columns"].items() if c["enc"] == "f8")


SNAPSHOT_DAMAGE = {
    "garbage": lambda d: b"\x00not a snapshot{{" * 10,
    "truncated": lambda d: d[: len(d) // 2],
    "blob-cut": lambda d: d[:-9],  # the arrays end early: offsets out of range
    "empty": lambda d: b"",
    "magic-only": lambda d: SNAPSHOT_MAGIC,
    "wrong-shape": lambda d: _snapshot_with_header(d, lambda h: h.update(ids=[1, 2])),
    "fewer-ids": lambda d: _snapshot_with_header(d, lambda h: h["ids"].pop()),
    "bad-status": lambda d: _snapshot_with_header(
        d, lambda h: h["columns"].update({"a:status": {"enc": "const", "value": 3}})),
    "bad-offset": lambda d: _snapshot_with_header(
        d, lambda h: h["columns"][_float_column(h)].update(at=10 ** 9)),
    "unknown-encoding": lambda d: _snapshot_with_header(
        d, lambda h: h["columns"][_float_column(h)].update(enc="f4")),
    "bad-series": lambda d: _snapshot_with_header(d, lambda h: h["columns"]["t:loss"].update(lens=len(d))),
    "flipped-byte-in-a-float": lambda d: _flip_final_loss(d),  # same shape, another loss
}


def _flip_final_loss(data: bytes) -> bytes:
    """One bit of the first run's final.loss changed, nothing else (the checksum refuses it)."""
    at = len(SNAPSHOT_MAGIC)
    size, _ = struct.unpack_from("<QI", data, at)
    header = json.loads(data[at + 12:at + 12 + size])
    i = at + 12 + size + header["columns"]["a:final.loss"]["at"] + 6
    return data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1:]


@pytest.mark.parametrize("damage", sorted(SNAPSHOT_DAMAGE))
def test_damaged_snapshot_changes_no_answer(tmp_path, damage):
    xdir = make_experiment(tmp_path)
    check_same_as_full_scan(xdir)  # writes the snapshot
    snapshot = xdir.root / INDEX_DIR / SNAPSHOT
    snapshot.write_bytes(SNAPSHOT_DAMAGE[damage](snapshot.read_bytes()))
    check_same_as_full_scan(xdir)
    check_same_as_full_scan(xdir)  # and the snapshot it wrote instead


def test_damaged_and_truncated_journals_change_no_answer(tmp_path):
    """A journal cut in the middle of a line (a writer killed, a full disk), garbage lines, lines
    of the wrong shape, an entry claiming another file's identity: none of them is used."""
    xdir = make_experiment(tmp_path)
    journal = next((xdir.root / INDEX_DIR).glob("journal.*.jsonl"))
    lines = journal.read_bytes().splitlines(keepends=True)
    wrong = json.loads(lines[3])
    wrong["attrs"]["status"] = "completed" if wrong["attrs"]["status"] != "completed" else "failed"
    wrong["ino"] += 1  # the entry of another file: never used for run0003
    journal.write_bytes(b"".join(lines[:5]) + lines[5][: len(lines[5]) // 2] + b"\n"
                        + b"\x00\xffnot json\n" + b'{"id": 3}\n' + b"[1, 2]\n"
                        + json.dumps(wrong).encode() + b"\n"
                        + b"".join(lines[6:]) + lines[0][:17])  # a last line without its end
    check_same_as_full_scan(xdir)
    check_same_as_full_scan(xdir)


def test_run_files_added_and_removed_behind_the_index(tmp_path):
    """Run files the index never heard of (copied in, written by a writer without a journal) are
    reported from the files; removed ones are not reported, also after the snapshot knew them."""
    xdir = make_experiment(tmp_path)
    check_same_as_full_scan(xdir)
    other = tmp_path / "elsewhere" / "runs"  # not an experiment's runs/: no journal
    for i in (90, 91):
        rid = f"run{i:04d}"
        write_run(other / f"{rid}.h5", RunRecord(rid, "diverged", spec_text(i),
                                                 final_attrs={"loss": float(i)}), fsync=False)
        shutil.copy(other / f"{rid}.h5", xdir.run_path(rid))
    os.unlink(xdir.run_path("run0002"))
    os.unlink(xdir.run_path("run0005"))
    states, _, rows = answers(xdir)
    status = experiment_status(open_experiment(xdir.root))
    orphans = {s.run_id: s.state for s in status.orphans}
    assert orphans == {"run0090": "diverged", "run0091": "diverged"}  # no points of the sweep
    assert "run0002" not in states and "run0005" not in states
    assert [s.state for s in status.states if s.run_id in ("run0002", "run0005")] == ["pending"] * 2
    assert [r[2] for r in rows if r[0] == "run0091"] == [91.0]
    assert not [r for r in rows if r[0] in ("run0002", "run0005")]
    check_same_as_full_scan(xdir)
    os.unlink(xdir.run_path("run0090"))  # now known to the snapshot, then removed
    check_same_as_full_scan(xdir)


def test_stale_entries_never_hide_a_change(tmp_path):
    """A run file replaced behind the index's back (a writer that kept no journal, another host,
    an older lcnrun): the entry is for another file (inode, size, mtime), so the file is read."""
    xdir = make_experiment(tmp_path)
    check_same_as_full_scan(xdir)
    other = tmp_path / "elsewhere" / "runs"
    write_run(other / "run0000.h5", RunRecord("run0000", "failed", spec_text(99),
                                               final_attrs={"loss": 123.0}), fsync=False)
    os.replace(other / "run0000.h5", xdir.run_path("run0000"))  # was completed
    os.unlink(xdir.run_path("run0001"))  # a run file removed: the index must not keep it
    states, _, rows = answers(xdir)
    assert states["run0000"] == "failed" and "run0001" not in states
    assert [r for r in rows if r[0] == "run0000"][0][2] == 123.0
    check_same_as_full_scan(xdir)


def test_an_index_entry_without_a_file_is_no_run(tmp_path):
    xdir = make_experiment(tmp_path)
    journal = next((xdir.root / INDEX_DIR).glob("journal.*.jsonl"))
    entry = json.loads(journal.read_text().splitlines()[0])
    entry["id"] = "pending0000"  # the manifest's point without a file
    with open(journal, "a") as fh:
        fh.write(json.dumps(entry) + "\n")
    check_same_as_full_scan(xdir)


def test_fifo_named_like_a_run_file_is_no_run_file(tmp_path):
    xdir = make_experiment(tmp_path, n=3)
    os.mkfifo(xdir.runs_dir / "fifo00000000.h5")
    os.mkdir(xdir.runs_dir / "dir000000000.h5")
    assert "fifo00000000" not in scan(xdir.runs_dir) and "dir000000000" not in scan(xdir.runs_dir)
    for verb in (["status", str(xdir.root), "--json"], ["summary", str(xdir.root), "--csv"]):
        # a fresh process, so that a read that blocked on the FIFO would fail this test, not hang it
        out = subprocess.run([sys.executable, "-m", "lcnrun.cli", *verb], capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        assert "fifo00000000" not in out.stdout and "dir000000000" not in out.stdout
    doc = json.loads(subprocess.run([sys.executable, "-m", "lcnrun.cli", "status", str(xdir.root), "--json"],
                                    capture_output=True, text=True, timeout=300).stdout)
    assert doc["orphans"] == 0 and sum(doc["counts"].values()) == 4
    with pytest.raises(RunFileError, match="not a regular file"):
        read_run_status(xdir.runs_dir / "fifo00000000.h5")


def garble_data_region(path: Path) -> None:
    """Overwrite bytes in the middle of the (gzip-compressed) trajectory data; the attributes and
    the spec stay readable."""
    with h5py.File(path, "r") as f:
        info = f["trajectory/x"].id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(b"\xff" * 4096)


def test_garbled_data_region_is_unreadable_everywhere(tmp_path):
    xdir = make_experiment(tmp_path, n=2)
    rng = np.random.default_rng(0)
    big = rng.standard_normal((200, 1000))  # 1.6 MB: stored compressed, in chunks
    rid = "garbled00000"
    write_run(xdir.run_path(rid), RunRecord(rid, "completed", spec_text(7), trajectory={"x": big},
                                            final_attrs={"loss": 0.5}), fsync=False)
    xdir.write_manifest([(0, "run0000", {}), (1, "run0001", {}), (2, rid, {})])
    garble_data_region(xdir.run_path(rid))
    # attributes only: the damage is not seen (status and summary stay fast)
    assert read_run_status(xdir.run_path(rid)) == "completed"
    with pytest.raises(RunFileError, match="unreadable run file"):
        read_run(xdir.run_path(rid))  # where the data is needed
    # from now on every reader says so
    with pytest.raises(RunFileError):
        read_run_status(xdir.run_path(rid))
    with pytest.raises(RunFileError):
        read_run_attrs(xdir.run_path(rid))
    states, _, rows = answers(xdir)
    assert states[rid] == "unreadable"
    assert [r[1] for r in rows if r[0] == rid] == ["unreadable"]
    r = CliRunner().invoke(app, ["summary", str(xdir.root), "--csv"])
    assert r.exit_code == 0 and any(line.startswith(f"2,{rid},") and "unreadable" in line
                                    for line in r.output.splitlines()), r.output
    # the sweep's hint ("--force replaces it") is true: the point is kept, and run with --force
    state = file_state(xdir.run_path(rid))
    assert state.status == UNREADABLE and "unreadable run file" in state.reason
    assert not should_run(state.status, force=False, rerun_failed=True)
    assert should_run(state.status, force=True, rerun_failed=False)
    # a new file replaces it: readable again, everywhere
    write_run(xdir.run_path(rid), RunRecord(rid, "completed", spec_text(7), trajectory={"x": big},
                                            final_attrs={"loss": 0.5}), fsync=False)
    assert read_run_status(xdir.run_path(rid)) == "completed"
    assert answers(xdir)[0][rid] == "completed"
    assert np.array_equal(read_run(xdir.run_path(rid)).trajectory["x"], big)


def test_files_with_one_second_timestamps_are_entered_only_once_old(tmp_path, monkeypatch):
    """git's "racily clean" case: on a file system with 1 s timestamps (sshfs, some FUSE/SMB
    mounts) that reuses inode numbers, a rewrite of the same size within the second has the
    identity of the file before it. Such a file is not entered until it is RACY_SECONDS old: until
    then every reader reads the file itself, so the answer is the file's."""
    from lcnrun.store import index  # noqa: PLC0415

    second = 1_700_000_000 * 10 ** 9
    coarse = os.stat_result((0o100644, 7, 1, 1, 0, 0, 100, 1, 1, 1, 1.0, 1.0, 1.0, second, second, second))
    fine = os.stat_result((0o100644, 7, 1, 1, 0, 0, 100, 1, 1, 1, 1.0, 1.0, 1.0, second + 5, second + 5, second + 5))
    assert index.racy(coarse, now_ns=second + 10 ** 9)
    assert not index.racy(coarse, now_ns=second + index.RACY_SECONDS * 10 ** 9)
    assert not index.racy(fine, now_ns=second + 1)
    # every file racy: no journal lines, no snapshot entries; each scan reads every file again
    monkeypatch.setattr(index, "racy", lambda st, now_ns=None: True)
    xdir = make_experiment(tmp_path)
    assert not any(j.read_text() for j in (xdir.root / INDEX_DIR).glob("journal.*.jsonl"))
    read = []

    def counting(items):
        read.extend(rid for rid, _ in items)
        return index._read_serially(items)
    for _ in range(2):
        scan(xdir.runs_dir, reader=counting)
    assert sorted(read) == sorted(2 * [f"run{i:04d}" for i in range(12)])
    check_same_as_full_scan(xdir)


def test_the_racy_rule_uses_the_file_systems_clock_not_this_machines(tmp_path, monkeypatch):
    """On a shared mount whose server's clock is behind this machine's, a file with 1 s
    timestamps that is seconds old by the local clock may be new by the server's, which stamped
    it: it is entered only once RACY_SECONDS old by the clock of its file system (the index
    folder's probe file, written by the same server)."""
    from lcnrun.store import index  # noqa: PLC0415

    xdir = make_experiment(tmp_path)
    folder = xdir.root / INDEX_DIR
    shutil.rmtree(folder)  # no journal lines nor snapshot: every file is read
    # on this (local) file system the probe's mtime is this machine's clock, taken between two reads
    before = time.time_ns()
    fs_now = index.file_system_now_ns(folder)
    assert before - 10 ** 7 <= fs_now <= time.time_ns() + 10 ** 7  # (a 10 ms margin for the kernel's coarse clock)
    assert fs_now == os.stat(folder / index.CLOCK).st_mtime_ns
    # a folder that cannot be made has no clock: whole-second files are then racy
    assert index.file_system_now_ns(xdir.runs_dir / "run0000.h5" / "no") is None
    assert index.racy(os.stat_result((0o100644, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1.0, 1.0, 1.0, 10 ** 9, 10 ** 9, 10 ** 9)), None)

    stamp = (time.time_ns() // 10 ** 9 - 100) * 10 ** 9  # 100 s ago by the local clock, whole seconds
    for p in xdir.runs_dir.glob("*.h5"):
        os.utime(p, ns=(stamp, stamp))
    monkeypatch.setattr(index, "whole_seconds", lambda st: True)  # as if the mount had 1 s timestamps
    read = []

    def counting(items):
        read.extend(rid for rid, _ in items)
        return index._read_serially(items)
    for server_lag, entered in [(1, False), (index.RACY_SECONDS - 1, False), (index.RACY_SECONDS, True)]:
        # the server's clock: `server_lag` seconds after the files' stamp
        monkeypatch.setattr(index, "file_system_now_ns", lambda folder, lag=server_lag: stamp + lag * 10 ** 9)
        read.clear()
        scan(xdir.runs_dir, reader=counting)
        assert len(read) == 12, server_lag  # nothing was entered before
        read.clear()
        scan(xdir.runs_dir, reader=counting)
        assert len(read) == (0 if entered else 12), server_lag
        if entered:
            check_same_as_full_scan(xdir)


def test_writers_journal_entry_is_what_reading_the_file_gives(tmp_path):
    """``write_run`` journals its file from what it wrote (no read back); each line is the line
    journalled by reading that file (``note_written(path)`` alone, the HDF5 readers)."""
    from lcnrun.store.index import note_written

    xdir = ExperimentDir(tmp_path / "results" / "idx").create()
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, 1 / 3])
    trajectories = [
        {"t": np.linspace(0, 1, 7), "loss": special, "grad_norm": special[::-1].copy(),
         "params/layer_0": np.ones((7, 2))},
        {"t": np.arange(3.0), "loss": np.arange(3.0)[::-1]},  # strided, no grad_norm
        {"t": np.arange(3.0), "loss": np.arange(3.0).astype(">f8")},  # read back from the file
        {"t": np.arange(2000.0), "loss": np.zeros(2000), "grad_norm": np.zeros(2000)},  # too long
        {"t": np.arange(3, dtype=np.int64), "loss": np.zeros((3, 1))},
        {},  # a failed run has no trajectory
    ]
    texts = [spec_text(0), "name: ünï ✓\ninit: {seed: 3}\n", "not: [yaml\n", spec_text(1), spec_text(2),
             "a: 'nul \\0 in it'\n"]
    paths = []
    for i, (traj, text) in enumerate(zip(trajectories, texts)):
        rid = f"run{i:04d}"
        record = RunRecord(rid, STATUSES[i % 4], text, trajectory=traj,
                           final_attrs={"loss": float("nan") if i == 0 else 0.5, "steps": i,
                                        "converged": bool(i % 2), "h": np.float32(0.1)},
                           diagnostics={"d": {"arrays": {}, "scalars": {"ρ": -0.0, "n": np.int8(i)}}},
                           attrs={"message": "Ünïcödé", "none": None})
        paths.append(write_run(xdir.run_path(rid), record, fsync=False))
    journal, = (xdir.root / INDEX_DIR).glob("journal.*.jsonl")
    written = journal.read_text().splitlines()
    for path in paths:
        note_written(path)  # the entry made by reading the file back
    lines = journal.read_text().splitlines()
    assert len(written) == len(paths) and lines[:len(paths)] == written
    assert lines[len(paths):] == written
    from lcnrun.store.index import _series_bytes  # noqa: PLC0415

    loss = _series_bytes(json.loads(written[0])["series"]["loss"])  # every bit: -0.0, nan, 5e-324
    assert loss == special.astype("<f8").tobytes()


def _truth_table(xdir: ExperimentDir) -> dict[str, dict]:
    """Each run file read by the HDF5 readers, as a summary row: its flattened spec, then its
    attributes (a spec key named like an attribute gives way to it, except the file's own
    ``format`` / ``format_version``, which are no row keys), its id and status; ``message`` says
    why the file is unreadable (a spec that is not YAML)."""
    import yaml

    from lcnrun.store.specflat import flatten

    out = {}
    for p in sorted(xdir.runs_dir.glob("*.h5")):
        attrs = read_run_attrs(p)
        try:
            spec, error = flatten(yaml.safe_load(attrs.pop("spec"))), ""
        except yaml.YAMLError as err:
            spec, error = {}, "its spec is not valid YAML"  # the parser's own words follow
        file_keys = {k: spec[k] for k in ("format", "format_version") if k in spec}
        row = {**spec, **{k: v for k, v in attrs.items() if k not in ("format", "format_version")},
               **file_keys, "run_id": p.stem, "status": "unreadable" if error else attrs["status"]}
        if error:
            row["message"] = error
        out[p.stem] = row
    return out


def test_summary_rows_from_the_index_columns_are_the_files(tmp_path, monkeypatch):
    """``summary``'s rows come from the snapshot's columns (``index.scan_flat``), the journals,
    or the files: in each state the same rows as reading every file, also with keys only some
    runs have (masked columns), a spec key named like an attribute (in some runs only: the rows
    are then built entry by entry), a spec that is not YAML, and runs added behind the index."""
    from lcnrun.report.summary import load_runs
    from lcnrun.store import index

    made = []  # what each call's columns made: rows, or None (entry by entry)
    flat_rows = index._Snapshot.flat_rows
    monkeypatch.setattr(index._Snapshot, "flat_rows", lambda self, *a: made.append(flat_rows(self, *a)) or made[-1])
    xdir = ExperimentDir(tmp_path / "results" / "idx").create()
    texts = {0: spec_text(0) + "data:\n  noise: 0.5\n", 1: spec_text(1), 2: "not: [yaml\n",
             3: spec_text(3) + "format: mine\n", 4: spec_text(4)}
    rows = []
    for i, text in texts.items():
        rid = f"run{i:04d}"
        final = {"loss": 1.0 / (i + 1), **({"extra": float(i)} if i % 2 else {})}
        write_run(xdir.run_path(rid), RunRecord(rid, STATUSES[i % 4], text, final_attrs=final,
                                                attrs={"message": f"m{i}"}), fsync=False)
        rows.append((i, rid, {"init.seed": i}))
    xdir.write_manifest(rows)

    def check(columns: bool):
        made.clear()
        got = load_runs(open_experiment(xdir.root))
        assert (made[-1] is not None if made else False) == columns
        table = {r["run_id"]: {k: v for k, v in r.items() if k != "index"} for r in got.rows}
        truth = _truth_table(xdir)
        for rid, row in truth.items():
            if row["status"] == "unreadable":
                assert table[rid].pop("message").startswith(row.pop("message") + " (")
        assert table == truth
        assert [r["index"] for r in got.rows] == list(range(len(table)))
        return got

    check(True)   # the writers' journals, merged into the columns by this first reader
    check(True)   # the snapshot's columns
    shutil.rmtree(xdir.root / INDEX_DIR)
    check(False)  # rebuilt from the files
    check(True)
    # a spec key "status" in one run only (masked, named like an attribute): entry by entry
    write_run(xdir.run_path("run0005"), RunRecord("run0005", "completed", spec_text(5) + "status: x\n"),
              fsync=False)
    xdir.write_manifest(rows + [(5, "run0005", {"init.seed": 5})])
    check(False)  # its journal line merged first: the snapshot's columns do not make the rows
    got = check(False)
    assert "data.noise" in got.spec_keys and got.rows[5]["status"] == "completed"


def test_summary_rows_where_every_spec_has_a_key_named_like_an_attribute(tmp_path):
    """A spec key every run has (an unmasked column) named like an attribute every run has
    (``message``): the attribute wins, from the columns as from the files."""
    from lcnrun.report.summary import load_runs

    xdir = ExperimentDir(tmp_path / "results" / "idx").create()
    for i in range(4):
        rid = f"run{i:04d}"
        write_run(xdir.run_path(rid), RunRecord(rid, "completed", spec_text(i) + "message: from the spec\n",
                                                attrs={"message": f"m{i}"}), fsync=False)
    xdir.write_manifest([(i, f"run{i:04d}", {"init.seed": i}) for i in range(4)])
    for _ in range(2):  # the journals, then the snapshot's columns
        rows = load_runs(open_experiment(xdir.root)).rows
        assert [r["message"] for r in rows] == ["m0", "m1", "m2", "m3"]
        assert {r["run_id"]: {k: v for k, v in r.items() if k != "index"} for r in rows} == _truth_table(xdir)


def test_snapshot_columns_gathered_per_key_set_are_the_per_run_gets():
    """``_save`` gathers each column by key set (``_columns_of``); the columns, their order and
    every value (``_ABSENT`` where a run has no such key) are those of one ``get`` per run and
    key, on random mixes of key sets, missing dicts and values that compare equal across types."""
    import random

    from lcnrun.store import index

    def per_run(dicts):
        order = {}
        for d in dicts:
            order.update(dict.fromkeys(d or ()))
        return {k: [(d or {}).get(k, index._ABSENT) for d in dicts] for k in order}

    rng = random.Random(0)
    for _ in range(300):
        dicts = []
        for _ in range(rng.randint(0, 30)):
            if rng.random() < 0.1:
                dicts.append(None)
                continue
            keys = rng.sample("abcde", rng.randint(0, 5)) if rng.random() < 0.5 else ["a", "b", "c"]
            dicts.append({k: rng.choice([1, 1.0, True, [1, 2], None, "x"]) for k in keys})
        got = index._columns_of([tuple(d or ()) for d in dicts], [tuple((d or {}).values()) for d in dicts])
        want = per_run(dicts)
        assert list(got) == list(want)
        assert all(list(map(repr, got[k])) == list(map(repr, want[k])) for k in want)


def _snapshot_parts(folder: Path) -> tuple[list, dict, bytes]:
    """``(ids, columns, blob)`` of the snapshot in ``folder`` (the journals it consumed left out)."""
    data = (folder / SNAPSHOT).read_bytes()
    at = len(SNAPSHOT_MAGIC)
    size, _ = struct.unpack_from("<QI", data, at)
    header = json.loads(data[at + 12:at + 12 + size])
    return header["ids"], header["columns"], data[at + 12 + size:]


def make_mixed_experiment(tmp_path: Path) -> ExperimentDir:
    """Runs whose index entries differ in shape: keys in some runs only (attributes and spec), a
    spec that is not YAML, a failed run without series, series with -0.0, nan, inf and a NaN
    whose sign is set (which JSON numbers cannot keep), a series too long to keep."""
    xdir = ExperimentDir(tmp_path / "results" / "mixed").create()
    negative_nan = np.copysign(np.nan, -1.0)
    rows = []
    for i in range(10):
        rid = f"run{i:04d}"
        n = 5 + i
        traj = {"t": np.linspace(0.0, 1.0, n), "loss": np.full(n, 0.5 / (i + 1)), "grad_norm": np.arange(n, dtype=float)}
        if i == 1:
            traj["loss"][:4] = [-0.0, np.nan, np.inf, negative_nan]
        if i == 6:
            traj = {}  # a failed run has no trajectory
        if i == 7:
            traj = {"t": np.arange(2000.0), "loss": np.zeros(2000)}  # too long to keep
        text = "not: [yaml\n" if i == 4 else spec_text(i) + ("data:\n  noise: 0.5\n" if i % 3 == 0 else "")
        final = {**({"extra": float(i)} if i % 2 == 0 else {}), "loss": 1.0 / (i + 1)}  # before loss, in some
        write_run(xdir.run_path(rid), RunRecord(rid, STATUSES[i % 4], text, trajectory=traj, final_attrs=final,
                                                attrs={"message": f"m{i}"}), fsync=False)
        rows.append((i, rid, {"init.seed": i}))
    xdir.write_manifest(rows)
    return xdir


def _old_format(journal: Path) -> None:
    """Rewrite ``journal``'s lines as an older lcnrun wrote them: each series a JSON list."""
    from lcnrun.store.index import _series_bytes  # noqa: PLC0415

    lines = []
    for line in journal.read_bytes().splitlines():
        entry = json.loads(line)
        if "series" in entry:
            entry["series"] = {k: np.frombuffer(_series_bytes(v), dtype="<f8").tolist()
                               for k, v in entry["series"].items()}
        lines.append(json.dumps(entry, separators=(",", ":")).encode())
    journal.write_bytes(b"\n".join(lines) + b"\n")


def test_first_readers_snapshot_is_the_snapshot_of_the_files(tmp_path):
    """The snapshot that the first reader merges from the writers' journals is, byte for byte
    (ids, columns, arrays), the snapshot made by reading every run file (index deleted): also
    the series' bits (a NaN with its sign set), keys in some runs only, a spec that is not YAML.
    Journal lines of an older lcnrun (series as JSON lists) give the same answers, and the same
    snapshot but for that NaN's sign, which JSON numbers cannot keep."""
    from lcnrun.store.series import read_series  # noqa: PLC0415

    xdir = make_mixed_experiment(tmp_path)
    folder = xdir.root / INDEX_DIR
    journals = {j.name: j.read_bytes() for j in folder.glob("journal.*.jsonl")}
    check_same_as_full_scan(xdir, pending=None)
    merged = _snapshot_parts(folder)
    shutil.rmtree(folder)
    check_same_as_full_scan(xdir, pending=None)  # every file read
    from_files = _snapshot_parts(folder)
    assert merged[0] == from_files[0] == sorted(truth(xdir))
    assert merged[1] == from_files[1] and merged[2] == from_files[2]
    series = scan(xdir.runs_dir)
    for rid, run in series.items():  # and the kept series are the files' (every bit)
        kept = run.series
        if rid in ("run0007",):
            assert kept is None  # too long: not kept, read from the file when needed
            continue
        want = read_series(xdir.run_path(rid), ("t", "loss", "grad_norm"))
        assert sorted(kept) == sorted(want) and all(kept[k].tobytes() == want[k].tobytes() for k in want)
    # the same journals as an older lcnrun wrote them
    shutil.rmtree(folder)
    folder.mkdir()
    for name, data in journals.items():
        (folder / name).write_bytes(data)
        _old_format(folder / name)
    assert b'"loss":[' in b"".join(j.read_bytes() for j in folder.glob("journal.*.jsonl"))
    check_same_as_full_scan(xdir, pending=None)
    old = _snapshot_parts(folder)
    assert old[:2] == from_files[:2] and old[2] != from_files[2]
    nan_bits = np.copysign(np.nan, -1.0).tobytes()
    assert from_files[2].count(nan_bits) == 1 and old[2].replace(np.float64(np.nan).tobytes(), b"") == \
        from_files[2].replace(nan_bits, b"").replace(np.float64(np.nan).tobytes(), b"")
    for rid, run in scan(xdir.runs_dir).items():
        if run.series is not None:
            want = read_series(xdir.run_path(rid), ("t", "loss", "grad_norm"))
            assert all(np.array_equal(run.series[k], want[k], equal_nan=True) for k in want)


def test_damaged_series_of_a_journal_line_are_not_used(tmp_path):
    """A line whose series text is not exactly the base64 text of whole float64s (characters
    outside the alphabet, which a decoder would skip; cut to a length that is no whole number;
    too long; not text; a series not kept) gives an entry without kept series: readers read them
    from the file. Its other values are still the file's, and every answer is the files'."""
    xdir = make_experiment(tmp_path, n=8)
    paths = {f"run{i:04d}": xdir.run_path(f"run{i:04d}") for i in range(8)}
    for rid, path in paths.items():  # rewritten with series, journalled again
        write_run(path, RunRecord(rid, "completed", spec_text(1), trajectory={
            "t": np.arange(6.0), "loss": np.linspace(1.0, 0.1, 6)}, final_attrs={"loss": 0.1}), fsync=False)
    journal = next((xdir.root / INDEX_DIR).glob("journal.*.jsonl"))
    lines = [json.loads(line) for line in journal.read_bytes().splitlines()][-8:]
    good = lines[0]["series"]["loss"]
    damage = {
        "run0001": good[:4] + " " + good[4:],       # a character the decoder skips
        "run0002": good[:4] + "!" + good[5:],       # one outside the alphabet
        "run0003": good[:-4],                       # cut: 4 bytes short of a whole float64
        "run0004": 12.5,                            # not text
        "run0005": "A" * (4 * (8 * 1025 // 3 + 1)),  # more than KEPT_TIMES values
    }
    for e in lines:
        if e["id"] in damage:
            e["series"]["loss"] = damage[e["id"]]
        if e["id"] == "run0006":
            e["series"]["params/x"] = e["series"]["t"]  # no kept series of that name
    journal.write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in lines))
    check_same_as_full_scan(xdir)
    runs = scan(xdir.runs_dir)
    for rid in paths:
        if rid in damage or rid == "run0006":
            assert runs[rid].series is None, rid
        else:
            assert runs[rid].series["loss"].tolist() == np.linspace(1.0, 0.1, 6).tolist()
        assert runs[rid].attrs["final.loss"] == 0.1 and runs[rid].status == "completed"


def test_merge_into_a_snapshot_is_encoding_its_entries_one_by_one(tmp_path):
    """Journal lines merged into an existing snapshot (column by column) give the snapshot of
    encoding, one by one, its entries (as it gives them) updated by those of the files read
    from HDF5: same ids, same columns in the same order, same arrays. Also with keys in some
    runs only, whose order in an entry of the snapshot differs from that of a file's."""
    from lcnrun.store import index  # noqa: PLC0415
    from lcnrun.store.series import read_attrs_and_series  # noqa: PLC0415

    xdir = make_mixed_experiment(tmp_path)
    folder = xdir.root / INDEX_DIR
    scan(xdir.runs_dir)  # the first reader merges the journals
    # a snapshot whose spec column claims a value for the run whose spec is not YAML: its entry
    # has no spec all the same (so neither has the merged snapshot)
    snapshot = folder / SNAPSHOT
    snapshot.write_bytes(_snapshot_with_header(snapshot.read_bytes(), lambda h: h["columns"]["s:name"].pop("mask")))
    before = index._load_snapshot(folder)
    assert before.ids and before.entries()["run0004"]["spec"] is None and not before.changed
    assert any("mask" in c for n, c in before.columns.items() if n.startswith("a:"))
    changed = {"run0002": spec_text(2), "run0009": spec_text(9) + "extra: [1, 2]\n", "run0100": "not: [yaml\n"}
    for rid, text in changed.items():  # a run rewritten, one with a new spec key, a new run
        write_run(xdir.run_path(rid), RunRecord(rid, "diverged", text, trajectory={"t": np.arange(3.0)},
                                                final_attrs={"loss": 7.0, "late": True}), fsync=False)
    scan(xdir.runs_dir)
    got = _snapshot_parts(folder)

    entries = before.entries()
    for rid in changed:
        path = xdir.run_path(rid)
        attrs, series = read_attrs_and_series(path, index.KEPT_SERIES, check_marks=False)
        entries[rid] = index._entry(rid, os.stat(path), attrs, series)
    es = [e for _, e in sorted(entries.items())]
    blob = bytearray()
    columns = {k: index._encode([e[k] for e in es], blob) for k in ("ino", "size", "mtime_ns", "ctime_ns")}
    for part, prefix in (("attrs", "a:"), ("spec", "s:")):
        keys = {}
        for e in es:
            keys.update(dict.fromkeys(e[part] or ()))
        for k in keys:
            columns[prefix + k] = index._encode([(e[part] or {}).get(k, index._ABSENT) for e in es], blob)
    columns["spec_error"] = index._encode([e["spec_error"] for e in es], blob)
    columns["series"] = index._encode([e["series"] is not None for e in es], blob)
    for name in index.KEPT_SERIES:
        columns["t:" + name] = index._encode_series(
            [None if a is None else np.asarray(a, dtype="<f8").tobytes()
             for a in ((e["series"] or {}).get(name) for e in es)], blob)
    assert got[0] == sorted(entries)
    assert list(got[1]) == list(columns) and got[1] == json.loads(json.dumps(columns))
    assert got[2] == bytes(blob)
    check_same_as_full_scan(xdir, pending=None)


def _json_or_none(line: bytes):
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def test_journal_lines_are_read_as_the_standard_json_parser_reads_them():
    """The journal's fast parser (orjson, where it agrees) gives what ``json.loads`` gives, type for
    type and bit for bit, also where orjson alone would not: integers beyond int64 after every
    byte a number may follow (orjson reads them as floats), NaN and infinities, a lone
    surrogate, nesting beyond orjson's limit (and ``json``'s: no value), invalid UTF-8; and
    floats of every exponent."""
    from lcnrun.store.index import _json_line, _may_hold_big_int

    big = [2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, 2 ** 64, 10 ** 20 + 1, 3 * 10 ** 40,
           -(2 ** 63), -(2 ** 63) - 1, -(10 ** 25) - 7]
    lines = []
    for v in big:
        lines += [b'{"a":%d}' % v, b'{"a": %d}' % v, b'[1,%d]' % v, b'[%d]' % v, b'{"a":\n%d}' % v,
                  b'{"a":\t%d,"b":1}' % v, b'%d' % v, b' %d' % v,
                  b'{"a":{"b":[0.5,%d]}}' % v]
    rng = np.random.default_rng(3)
    floats = rng.standard_normal(200) * 10.0 ** rng.integers(-300, 300, 200)
    lines += [json.dumps({"x": floats[i:i + 20].tolist()}).encode() for i in range(0, 200, 20)]
    lines += [b'{"a":0.00030162175234141607}', b'{"a":1796195422897003759}', b'[1e400]',
              b'{"a":NaN,"b":-Infinity,"c":Infinity}', b'{"a":"\\ud800"}', b'{"a":1,"a":2}',
              b'[' * 5000 + b']' * 5000, b'[' * 1100 + b']' * 1100, b'{"a":"\xff"}', b'{"a":1} x', b'',
              b'{"a":"x:12345678901234567890"}', b'{"a":-0.0,"b":1E5,"c":true,"d":null}']
    for line in lines:
        want = _json_or_none(line)
        got = _json_line(line)
        assert_same(got, want, repr(line[:60]))
        if not _may_hold_big_int(line):  # what a journal's one check lets through
            assert_same(_json_line(line, checked=True), want, repr(line[:60]))
    for v in big[1:]:  # beyond int64 (2**63 - 1 is within): found however it is written
        if -(2 ** 63) <= v < 2 ** 64:
            continue  # orjson still reads it as an int: found or not, the answer is right
        for text in (b'{"a":%d}', b'[1,%d]', b'[ %d]', b'%d', b'{"a":\r\n%d}'):
            assert _may_hold_big_int(text % v), text % v
    assert _may_hold_big_int(b'[-9223372036854775809]')


def test_journaled_spec_integers_beyond_int64_stay_integers(tmp_path):
    """Runs whose specs hold integers beyond int64 (YAML reads them exactly), journalled as a
    writer journals them (the spec's text) and in plain JSON: the first reader's answers
    (status, rows, each spec value, type and all) are the files', not floats near them, and the
    snapshot keeps them (a constant column and one that varies), so that the next reader reads it."""
    xdir = make_experiment(tmp_path, n=6)
    values = [10 ** 20 + 1, -(2 ** 63) - 1, 2 ** 64, 7]
    for i, v in enumerate(values):
        rid = f"run{i:04d}"
        write_run(xdir.run_path(rid), RunRecord(rid, "completed", spec_text(i) + f"extra: {v}\nhuge: {2 ** 70}\n",
                                                final_attrs={"loss": 0.25}), fsync=False)
    index = xdir.root / INDEX_DIR
    (index / SNAPSHOT).unlink(missing_ok=True)
    journals = {j: j.read_bytes() for j in index.glob("journal.*.jsonl")}
    lines = [json.loads(line) for data in journals.values() for line in data.splitlines()]
    assert sum("spec_text" in e for e in lines) == 4  # what JSON cannot keep exactly in an int64 ...
    for e in lines:  # ... and as JSON writes big integers all the same (another writer might)
        if "spec_text" in e:
            e["spec"] = flat_spec(e.pop("spec_text"))[0]
    plain = b"".join(json.dumps(e).encode() + b"\n" for e in lines)
    for journalled in (journals, {next(iter(journals)): plain}):
        shutil.rmtree(index)
        index.mkdir()
        for path, data in journalled.items():
            path.write_bytes(data)
        check_same_as_full_scan(xdir)
        assert (index / SNAPSHOT).exists()  # the columns keep them (JSON's integers are exact)
        for _ in range(2):  # the first reader merged the journal, the next reads the snapshot
            runs = scan(xdir.runs_dir)
            for i, v in enumerate(values):
                spec = runs[f"run{i:04d}"].spec
                assert type(spec["extra"]) is int and spec["extra"] == v and spec["huge"] == 2 ** 70


def test_series_texts_are_taken_exactly_when_they_are_the_encoding_of_their_bytes():
    """A journal line's series text gives its bytes exactly when it is the base64 text of whole
    float64s (at most KEPT_TIMES of them), i.e. when encoding what a decoder reads of it gives the
    text back: checked against that definition for series of every length modulo 3 bytes and
    texts changed at every place (each character replaced by letters of the alphabet, padding,
    white space, characters outside the alphabet or ASCII; one cut; one added), which covers the
    bits left over before the padding that strict decoding does not look at."""
    import binascii  # noqa: PLC0415

    from lcnrun.store.index import KEPT_TIMES, _series_bytes, _series_text  # noqa: PLC0415

    def canonical(text: str) -> bytes | None:
        try:
            raw = binascii.a2b_base64(text)  # the lenient decoder: skips what is not base64
        except (binascii.Error, ValueError):
            return None
        if len(raw) % 8 or len(raw) > 8 * KEPT_TIMES:
            return None
        return raw if binascii.b2a_base64(raw, newline=False) == text.encode("ascii", "replace") else None

    rng = np.random.default_rng(5)
    texts = [_series_text(rng.standard_normal(n)) for n in (0, 1, 2, 3, 4, 5, 6, 7, 1024, 1025)]
    replacements = "AQgwB/+9=\n !\x00é"
    seen = {True: 0, False: 0}
    for text in texts:
        variants = {text, text + "=", text + "==", text.rstrip("="), "=" + text, text + "\n"}
        # every place of the short ones; the first and last 8 of the long ones
        places = range(len(text)) if len(text) < 80 else [*range(8), *range(len(text) - 8, len(text))]
        for i in places:
            variants.update(text[:i] + c + text[i + 1:] for c in replacements)
            variants.update((text[:i] + text[i + 1:], text[:i] + "A" + text[i:]))
        for v in variants:
            want = canonical(v)
            assert _series_bytes(v) == want, (text[:12], v[-8:])
            seen[want is not None] += 1
    assert seen[True] >= 10 and seen[False] > 1000  # both kinds were tried


def test_a_writer_that_ends_leaves_a_final_journal_which_any_host_removes_once_merged(tmp_path, monkeypatch):
    """A process that journalled runs gives its journal the final name when it ends; a reader on
    another host (which cannot ask whether that writer is alive) then knows nobody appends to it:
    what it read of it under its first name is not read again, and the journal is removed (the
    snapshot holds it all). Before, such a journal stayed for ever. A journal of a live writer
    on another host is read and kept. Every answer is the files' throughout."""
    from lcnrun.store import index  # noqa: PLC0415

    monkeypatch.setattr(index, "_JOURNAL", {})  # this test's journals only (close_journals below)
    xdir = make_experiment(tmp_path, n=6)  # journalled by this process: a live writer
    folder = xdir.root / INDEX_DIR
    monkeypatch.setattr(index, "host_tag", lambda: "othernode")  # the readers below
    (journal,) = folder.glob("journal.*.jsonl")
    check_same_as_full_scan(xdir)  # merged, and kept: its writer may still append
    assert journal.exists() and not journal.name.endswith(".final.jsonl")
    write_run(xdir.run_path("run0100"), RunRecord("run0100", "completed", spec_text(100),
                                                  final_attrs={"loss": 0.5}), fsync=False)
    index.close_journals()  # the writer ends
    (final,) = folder.glob("journal.*.jsonl")
    assert final.name == journal.name[:-len(".jsonl")] + ".final.jsonl" and not journal.exists()
    parsed = []
    real = index._line_record
    monkeypatch.setattr(index, "_line_record", lambda line, *a: parsed.append(line) or real(line, *a))
    scan(xdir.runs_dir)  # one reader: merges the new line, saves, removes the final journal
    assert not list(folder.glob("journal.*")), os.listdir(folder)
    check_same_as_full_scan(xdir)
    assert [json.loads(line)["id"] for line in dict.fromkeys(parsed)] == ["run0100"]  # the new line only
    snapshot = index._load_snapshot(folder)
    assert "run0100" in snapshot.ids and journal.name in snapshot.consumed
    # a final journal of which the snapshot held everything: removed by the next reader, which
    # reads nothing of it
    write_run(xdir.run_path("run0101"), RunRecord("run0101", "failed", spec_text(101)), fsync=False)
    check_same_as_full_scan(xdir)  # merged; its writer (this process) is alive
    index.close_journals()
    parsed.clear()
    check_same_as_full_scan(xdir)
    assert parsed == [] and not list(folder.glob("journal.*"))
    # the snapshot forgets removed journals at its next save (100,000 one-run tasks: no 100,000
    # names kept, loaded and checked by every reader)
    write_run(xdir.run_path("run0102"), RunRecord("run0102", "completed", spec_text(102)), fsync=False)
    check_same_as_full_scan(xdir)
    (live,) = folder.glob("journal.*.jsonl")
    assert list(index._load_snapshot(folder).consumed) == [live.name]


@pytest.mark.parametrize("end, final", [("sys.exit(0)", True), ("raise SystemExit(3)", True),
                                        ("os._exit(0)", False)])  # os._exit: as SIGKILL, no exit handlers
def test_a_process_gives_its_journal_the_final_name_when_it_exits(tmp_path, end, final):
    """The rename is done by the process's exit handlers: a process that ends (also by
    ``SystemExit``, as lcnrun does after SIGTERM) leaves ``<...>.final.jsonl``; one that never
    runs them (killed) leaves its journal as it was. Either way the readers' answers are the
    files'."""
    xdir = make_experiment(tmp_path, n=3)
    code = ("import os, sys\nfrom lcnrun.store import RunRecord, write_run\n"
            "from lcnrun.store.experiment import ExperimentDir\n"
            "x = ExperimentDir(sys.argv[1])\n"
            "write_run(x.run_path('run0200'), RunRecord('run0200', 'completed', sys.argv[2]), fsync=False)\n"
            f"{end}\n")
    proc = subprocess.run([sys.executable, "-c", code, str(xdir.root), spec_text(200)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 3), proc.stderr
    names = sorted(p.name for p in (xdir.root / INDEX_DIR).glob("journal.*.jsonl"))
    assert len(names) == 2 and sum(n.endswith(".final.jsonl") for n in names) == int(final), names
    check_same_as_full_scan(xdir)


def test_a_reader_does_not_save_over_a_snapshot_saved_after_it_loaded_its_own(tmp_path, monkeypatch):
    """Two readers at once: B loads the snapshot, A merges a final journal, saves and removes it,
    then B (which never saw that journal) merges a newer line. B's save would replace A's snapshot
    with one without A's entries, and the next reader would read those run files again: B leaves
    A's snapshot as it is. Every answer is the files' throughout; the next reader reads no file."""
    from lcnrun.store import index  # noqa: PLC0415

    monkeypatch.setattr(index, "_JOURNAL", {})
    xdir = make_experiment(tmp_path, n=6)
    folder = xdir.root / INDEX_DIR
    monkeypatch.setattr(index, "host_tag", lambda: "othernode")
    index.close_journals()  # the writer of the six runs ended
    slow = index._load_snapshot(folder)  # B: no snapshot yet
    scan(xdir.runs_dir)  # A: merges, saves, removes the final journal
    assert not list(folder.glob("journal.*")) and index._load_snapshot(folder).ids == sorted(
        f"run{i:04d}" for i in range(6))
    write_run(xdir.run_path("run0100"), RunRecord("run0100", "completed", spec_text(100)), fsync=False)
    lines = index._read_journals(folder, slow)  # B lists the journals now: only the new line
    assert list(lines) == ["run0100"]
    index._save(folder, slow, lines)
    assert index._load_snapshot(folder).ids == sorted(f"run{i:04d}" for i in range(6))  # A's
    read = []
    real = index._read_serially
    monkeypatch.setattr(index, "_read_serially", lambda items: read.extend(items) or real(items))
    check_same_as_full_scan(xdir)
    assert read == []  # A's snapshot and the new line answer for every file
    assert "run0100" in index._load_snapshot(folder).ids
