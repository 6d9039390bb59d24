"""Which points ``lcnrun submit`` submits (:func:`select_points`)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Selection:
    """The points of an experiment split by what ``lcnrun submit`` does with them (each a list
    of :class:`lcnrun.report.status.RunState`)."""

    submit: list = field(default_factory=list)
    completed: list = field(default_factory=list)
    live: list = field(default_factory=list)  # queued or running (Slurm, or a local sweep)
    kept: list = field(default_factory=list)  # failed / diverged / unreadable, not submitted


def select_points(states: Iterable, *, rerun_failed: bool = False, force: bool = False) -> Selection:
    """What to submit, as the local sweep decides (``lcnrun.schedule.local.should_run``): points
    with no run file and ``stopped`` ones; ``failed`` and ``diverged`` ones with ``rerun_failed``;
    everything with ``force``; never a point that is queued or running now."""
    sel = Selection()
    for s in states:
        if s.state in ("queued", "running"):
            sel.live.append(s)
        elif s.state in ("pending", "stopped") or force:
            sel.submit.append(s)
        elif s.state == "completed":
            sel.completed.append(s)
        elif s.state in ("failed", "diverged") and rerun_failed:
            sel.submit.append(s)
        else:
            sel.kept.append(s)
    return sel
