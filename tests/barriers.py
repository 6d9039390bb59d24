"""Test barriers: pause lcnrun processes at a named phase (``lcnrun.interrupt.barrier``).

A test sets ``LCNRUN_TEST_BARRIER`` in a subprocess's environment (:attr:`Barrier.env`), waits
until the processes have reached the phase (:meth:`Barrier.wait`), acts (a signal, a kill, a
changed file) and lets them go on (:meth:`Barrier.release`). What happened before the act is
then fixed by the code's order, not by how fast the machine is.
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lcnrun.interrupt import BARRIER_VARIABLE

#: the longest a test waits for a process to reach a barrier: a bound on a hang, not a timing
#: assumption (a loaded CI machine takes seconds where a quiet one takes milliseconds)
HANG_SECONDS = 300.0


@dataclass
class Barrier:
    folder: Path
    phase: str
    nth: int = 1  # pause at the nth arrival of each process at the phase

    @property
    def path(self) -> Path:
        return Path(self.folder) / f"barrier-{self.phase}"

    @property
    def env(self) -> dict[str, str]:
        return {BARRIER_VARIABLE: f"{self.phase}@{self.nth}={self.path}"}

    def pids(self) -> list[int]:
        """The processes that have reached the barrier (and may be waiting there)."""
        prefix = f"{self.path.name}.reached."
        return sorted(int(n[len(prefix):]) for n in os.listdir(self.folder) if n.startswith(prefix))

    def wait(self, count: int, proc: subprocess.Popen | None = None) -> list[int]:
        """Wait until ``count`` processes have reached the barrier; their pids."""
        deadline = time.monotonic() + HANG_SECONDS
        while len(self.pids()) < count:
            if proc is not None and proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else ""
                raise AssertionError(f"the process ended before {count} reached {self.phase}:\n{out}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.pids()} of {count} processes reached {self.phase}")
            time.sleep(0.01)
        return self.pids()

    def release(self) -> None:
        self.path.touch()


def wait_gone(pids, timeout: float = HANG_SECONDS) -> None:
    """Wait until none of ``pids`` is a live process (zombies of other parents count as gone)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"processes {alive} did not end")
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
