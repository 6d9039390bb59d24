"""Bundling: how many points one array task runs, and which.

One array task per point pays the interpreter's start-up (~1-2 s) for every point and floods the
queue (100,000 points = 100,000 tasks). A bundled task runs ``K`` points in one process
(``lcnrun run SPEC --indices ...``), as ensembles where the points allow it
(:func:`lcnrun.runner.ensemble_key`), each point still with its own claim and run file.

``K`` (:func:`choose_points_per_task`), from the time of a point ``s``
(:func:`lcnrun.schedule.estimate.seconds_per_point`):

1. a task should take :data:`TIME_SHARE` of its time limit (``--time``; without one,
   :data:`DEFAULT_TASK_SECONDS`): ``K_time = (share - TASK_START_SECONDS) / s``;
2. every cpu of the cluster (``slots``: ``--max-parallel``, else the cpus ``sinfo`` counts, divided
   by ``--cpus-per-task``) should get work: ``K <= ceil(n / slots)``;
3. at most :data:`MAX_POINTS_PER_TASK` (a task's run ids are one command-line argument);
4. if ``K`` tasks would need several arrays but ``ceil(n / MaxArraySize)`` points per task still
   fit the time share, ``K`` grows to that (one array);
5. the number of tasks is rounded up to a multiple of ``slots`` and ``K`` made even, so that the
   last round of tasks is as full as the others.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

#: the share of its time limit a task aims at: the estimate is rough, the rest is headroom
TIME_SHARE = 0.5
#: what a task aims at without ``--time``
DEFAULT_TASK_SECONDS = 600.0
#: start-up of a task (interpreter, numpy, scipy, numba's cached kernels)
TASK_START_SECONDS = 3.0
#: at most this many points per task: the task's run ids are one argument (Linux: 128 KiB each;
#: a run id and its comma are 13 bytes)
MAX_POINTS_PER_TASK = 4096


@dataclass(frozen=True)
class Bundling:
    """``points_per_task`` points per task, ``tasks`` tasks; how ``K`` was chosen (``source``:
    ``option``, ``measured`` or ``model``, see :mod:`lcnrun.schedule.estimate`)."""

    points_per_task: int
    tasks: int
    seconds_per_point: float | None
    source: str
    detail: str
    task_seconds: float | None  # what a task aims at (None: K given)

    def describe(self) -> str:
        tasks = f"{self.tasks} task{'s' if self.tasks != 1 else ''}"
        if self.source == "option":
            return f"{self.points_per_task} points per task (--points-per-task), {tasks}"
        return (f"{self.points_per_task} points per task, {tasks}: a point takes "
                f"~{self.seconds_per_point:.3g} s ({self.source}: {self.detail}), a task aims at "
                f"{self.task_seconds:.0f} s")


def parse_time_limit(text: str | None) -> float | None:
    """Slurm's ``--time`` (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``)
    in seconds; ``None`` for no value or ``UNLIMITED``. ``ValueError`` if malformed."""
    if text is None or text.strip().upper() in ("UNLIMITED", "INFINITE"):
        return None
    m = re.fullmatch(r"\s*(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?\s*", text)
    if m is None:
        raise ValueError(f"--time {text!r}: expected MM, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        return days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    if c is not None:
        return a * 3600 + b * 60 + c
    if b is not None:
        return a * 60 + b
    return a * 60.0


def choose_points_per_task(n_points: int, seconds_per_point: float, *, time_limit: float | None,
                           max_array_size: int, slots: int | None, source: str = "model",
                           detail: str = "") -> Bundling:
    """``K`` for ``n_points`` points of ``seconds_per_point`` each (see the module docstring)."""
    n = max(1, n_points)
    target = TIME_SHARE * time_limit if time_limit else DEFAULT_TASK_SECONDS
    room = max(target - TASK_START_SECONDS, 0.1 * target)
    k_time = math.floor(room / seconds_per_point) if seconds_per_point > 0 else n
    k_time = max(1, min(k_time, MAX_POINTS_PER_TASK))
    k = min(k_time, -(-n // slots) if slots else n)
    k_array = -(-n // max_array_size)
    if k < k_array <= k_time:
        k = k_array
    k = max(1, k)
    tasks = -(-n // k)
    if slots and tasks > slots and tasks % slots:  # a full last round
        tasks = -(-tasks // slots) * slots
        k = max(1, -(-n // tasks))
    tasks = -(-n // k)
    return Bundling(k, tasks, seconds_per_point, source, detail, target)


def given_points_per_task(n_points: int, k: int) -> Bundling:
    """``--points-per-task K``."""
    return Bundling(k, -(-max(0, n_points) // k), None, "option", "", None)


def bundle_points(exp, points, k: int) -> list[list[tuple[int, str]]]:
    """``points`` (``(index, run_id)``) in tasks of at most ``k``: points of one ensemble key next
    to each other (a task then runs them as ensembles), each task in index order."""
    from ...runner import ensemble_key  # noqa: PLC0415

    order: dict[str | None, int] = {}
    keyed = []
    keys: dict = {}  # each distinct model/loss/dynamics section's key made once
    for index, run_id in points:
        key = ensemble_key(exp.points[index].run_spec, keys) if k > 1 else None
        keyed.append((order.setdefault(key, len(order)), index, run_id))
    keyed.sort()
    return [sorted((i, r) for _, i, r in keyed[lo: lo + k]) for lo in range(0, len(keyed), k)]
