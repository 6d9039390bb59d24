"""Which points ``lcnrun submit`` submits (:func:`select_points`)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ...policy import LIVE, should_run


@dataclass
class Selection:
    """The points of an experiment split by what ``lcnrun submit`` does with them (each a list
    of :class:`lcnrun.report.status.RunState`)."""

    submit: list = field(default_factory=list)
    completed: list = field(default_factory=list)
    live: list = field(default_factory=list)  # queued or running (Slurm, or a local sweep)
    kept: list = field(default_factory=list)  # failed / diverged / unreadable, not submitted


def select_points(states: Iterable, *, rerun_failed: bool = False, force: bool = False) -> Selection:
    """What to submit, as :func:`lcnrun.policy.should_run` decides for every verb: points with no
    run file and ``stopped`` ones; ``failed`` and ``diverged`` ones with ``rerun_failed``;
    everything with ``force``; never a point that is queued or running now."""
    sel = Selection()
    for s in states:
        if s.state in LIVE:
            sel.live.append(s)
        elif should_run(s.state, force=force, rerun_failed=rerun_failed):
            sel.submit.append(s)
        elif s.state == "completed":
            sel.completed.append(s)
        else:
            sel.kept.append(s)
    return sel
