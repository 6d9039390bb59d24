"""Units of work: points that may form one ensemble (``runner.ensemble_key``) grouped, within the
open-file limit (each member holds a claim) and a memory budget (:mod:`lcnrun.schedule.estimate`)."""
from __future__ import annotations

#: at most this many points in one ensemble (each holds a claim, i.e. an open file, while it runs;
#: the stored trajectories of all members are in memory until they are written)
ENSEMBLE_MAX_MEMBERS = 512
#: at most this many distinct data sets in one ensemble (each problem keeps its data in memory)
ENSEMBLE_MAX_DATASETS = 16


def _open_file_limit() -> int:
    try:
        import resource  # noqa: PLC0415
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return soft if soft > 0 else 1 << 16
    except (ImportError, OSError, ValueError):
        return 1024


def ensemble_groups(exp, indices, jobs: int, *, max_members: int | None = None,
                    memory_budget: int | None = None) -> list[tuple[int, ...]]:
    """The points ``indices`` as units of work: points with one ``runner.ensemble_key`` together,
    in chunks of at most ``max_members`` (default :data:`ENSEMBLE_MAX_MEMBERS`, and at most a
    quarter of the open-file limit: each member holds a claim) with at most
    :data:`ENSEMBLE_MAX_DATASETS` distinct data sets, and small enough that ``jobs`` workers all get
    a share, and whose memory stays within ``memory_budget`` bytes (default
    :func:`lcnrun.schedule.estimate.default_memory_budget`; see
    :func:`~lcnrun.schedule.estimate.ensemble_size_within`); points that cannot be batched alone.
    Ordered by their first point."""
    from ...runner import data_key, ensemble_key  # noqa: PLC0415

    cap = ENSEMBLE_MAX_MEMBERS if max_members is None else max(1, int(max_members))
    cap = max(1, min(cap, _open_file_limit() // 4))
    groups: dict[str, list[int]] = {}
    units: list[tuple[int, ...]] = []
    keys: dict = {}  # each distinct model/loss/dynamics (data) section's key made once
    for i in indices:
        key = ensemble_key(exp.points[i].run_spec, keys) if cap > 1 else None
        if key is None:
            units.append((i,))
        else:
            groups.setdefault(key, []).append(i)
    for members in groups.values():
        size = min(cap, max(1, -(-len(members) // max(1, jobs))))
        size = min(size, _memory_cap(exp, members, jobs, memory_budget) or size)
        chunk: list[int] = []
        datasets: set[str] = set()
        for i in members:
            data = data_key(exp.points[i].run_spec, keys)
            if len(chunk) >= size or (data not in datasets and len(datasets) >= ENSEMBLE_MAX_DATASETS):
                units.append(tuple(chunk))
                chunk, datasets = [], set()
            chunk.append(i)
            datasets.add(data)
        if chunk:
            units.append(tuple(chunk))
    units.sort(key=lambda u: u[0])
    return units


def _memory_cap(exp, members, jobs: int, memory_budget: int | None) -> int | None:
    """The largest ensemble of ``members`` within the memory budget (``None``: no budget known)."""
    from ..estimate import default_memory_budget, ensemble_size_within  # noqa: PLC0415

    budget = default_memory_budget(jobs) if memory_budget is None else memory_budget
    return ensemble_size_within(budget, [exp.points[i].run_spec for i in members], ENSEMBLE_MAX_DATASETS)
