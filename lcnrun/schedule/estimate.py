"""What a point will cost before it runs: the memory of an ensemble member and the time of a point.

Both schedulers size their work with these estimates: the local sweep and a bundled Slurm task cut
an ensemble so that its memory stays within a budget (:func:`ensemble_size_within`, called by
:func:`lcnrun.schedule.local.ensemble_groups`), and ``lcnrun submit`` picks the number of points
per array task from the time of a point (:func:`seconds_per_point`).

**Memory of an ensemble** of ``n`` members on ``D`` distinct data sets, in bytes (8 per float)::

    D * data  +  n * (trajectory + working)  +  finishing

- ``data``: the problem's arrays, measured on one real problem of the same shapes (inputs
  ``(N, *input_shape)``, targets, and the square loss's sufficient statistics, e.g. the patch Gram
  ``(E, E)``); members with equal data share one problem;
- ``trajectory = R (P + 4) * 8``: the stored records (``R = record.points + 1``, the stop state
  included) of the parameters ``P`` and of ``t``, ``loss``, ``grad_norm`` and the step (descent),
  all held until the ensemble ends;
- ``working = WORKING_VECTORS * P * 8``: the state, gradients and Runge-Kutta stages of one
  member (DOP853: 16 stages, plus the state, its predecessor, the error and scale vectors);
- ``finishing = R (2 P + E + L) * 8``: one member's run record being made and written (its
  parameters split by layer, its end-to-end maps ``(R, E)``, invariants and layer norms); members
  are finished one at a time.

**Time of a point**: the measured wall time of completed points of the experiment when there are
some: the 90th percentile of their provenance's ``wall_seconds`` divided by the size of the
ensemble they ran in (the members of an ensemble are finished and written one after another, so a
member's wall time runs from the ensemble's start to its own file: the last one's is the whole
ensemble's). Else a deliberately rough model: ``POINT_SECONDS + steps * P *
SECONDS_PER_PARAM_STEP`` (a flow, whose number of steps is known only once it ran, counts
:data:`STEPS_PER_FLOW` steps).
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass

#: P-vectors of working memory per member (see the module docstring)
WORKING_VECTORS = 24
#: the fraction of the machine's memory (or of a Slurm task's ``--mem``) an ensemble may use by
#: default: the rest is for the interpreter, the libraries and the other workers
MEMORY_FRACTION = 0.5
#: rough cost of one descent step per parameter and member in the compiled kernel (seconds)
SECONDS_PER_PARAM_STEP = 2e-8
#: what a point costs besides its steps: its run record and file (provenance, series, HDF5). Measured
#: on 2 cores shared by ~16 processes: 0.2 s per point (20,000 points of 100 steps, docs/cluster.md)
POINT_SECONDS = 0.05
#: a flow whose step count is unknown before it runs is counted as this many steps
STEPS_PER_FLOW = 2_000
#: completed run files read to measure the time of a point
TIMING_SAMPLE = 16

_UNITS = {"": 1, "b": 1, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}


def parse_bytes(text: str, *, default_unit: str = "") -> int:
    """``'2G'``, ``'500M'``, ``'1.5g'``, ``'1048576'`` -> bytes (binary units, as Slurm's
    ``--mem``, whose bare numbers are megabytes: ``default_unit="m"``). ``ValueError`` if malformed."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)[bB]?\s*", str(text))
    if m is None:
        raise ValueError(f"{text!r} is not a size (e.g. 2G, 500M)")
    unit = (m[2] or default_unit).lower()
    return int(float(m[1]) * _UNITS[unit])


def format_bytes(n: float) -> str:
    for unit, size in (("G", 2 ** 30), ("M", 2 ** 20), ("K", 2 ** 10)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{int(n)}B"


def machine_memory() -> int | None:
    """Physical memory of this machine in bytes (``None`` if unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def default_memory_budget(jobs: int = 1, environ=os.environ) -> int | None:
    """The memory one ensemble may use, in bytes: :data:`MEMORY_FRACTION` of a Slurm task's memory
    (``SLURM_MEM_PER_NODE``, or ``SLURM_MEM_PER_CPU`` times ``SLURM_CPUS_PER_TASK``, in MB) inside a
    Slurm job, else of the machine's memory shared by ``jobs`` workers; ``None`` if unknown."""
    total = None
    if environ.get("SLURM_MEM_PER_NODE", "").isdigit():
        total = int(environ["SLURM_MEM_PER_NODE"]) * 2 ** 20
    elif environ.get("SLURM_MEM_PER_CPU", "").isdigit():
        cpus = environ.get("SLURM_CPUS_PER_TASK", "1")
        total = int(environ["SLURM_MEM_PER_CPU"]) * 2 ** 20 * (int(cpus) if cpus.isdigit() else 1)
    elif (ram := machine_memory()) is not None:
        total = ram // max(1, int(jobs))
    return None if total is None else int(total * MEMORY_FRACTION)


# -- memory ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemberMemory:
    """Bytes of one ensemble member (see the module docstring)."""

    data: int
    trajectory: int
    working: int
    finishing: int

    @property
    def per_member(self) -> int:
        return self.trajectory + self.working

    def ensemble(self, members: int, datasets: int = 1) -> int:
        """Bytes of an ensemble of ``members`` on ``datasets`` distinct data sets."""
        return datasets * self.data + members * self.per_member + self.finishing


def problem_bytes(problem) -> int:
    """Bytes of the arrays a problem holds: its data set, its sufficient statistics (square loss)
    or features (other losses)."""
    import numpy as np  # noqa: PLC0415

    arrays = [problem.dataset.inputs, problem.dataset.targets, problem.features]
    quadratic = problem.quadratic
    if quadratic is not None:
        arrays += list(vars(quadratic).values())
    return int(sum(a.nbytes for a in arrays if isinstance(a, np.ndarray)))


def _shape_key(run_spec) -> tuple:
    """The sections that decide the problem's array shapes: model, loss and the data without its
    seed and noise level (which do not). Hashable, and cheap: no canonical JSON per point."""
    data = run_spec.data
    unshaped = {f.name: 0 for f in dataclasses.fields(data.options) if f.name in ("seed", "noise")}
    if unshaped:
        data = dataclasses.replace(data, options=dataclasses.replace(data.options, **unshaped))
    return run_spec.model, run_spec.loss, data


_DATA_BYTES: dict[tuple, int] = {}


def data_bytes(run_spec) -> int:
    """Bytes of the problem of ``run_spec``, measured once per shape (:func:`problem_bytes` of a
    real problem with its model, data and loss; 0 if it cannot be built: the run then fails alone)."""
    key = _shape_key(run_spec)
    if key not in _DATA_BYTES:
        from ..runner import build_problem  # noqa: PLC0415
        try:
            _DATA_BYTES[key] = problem_bytes(build_problem(run_spec))
        except Exception:  # noqa: BLE001 - a bad spec fails in its run, with its own message
            _DATA_BYTES[key] = 0
    return _DATA_BYTES[key]


def member_memory(run_spec) -> MemberMemory:
    """The memory estimate of one ensemble member of ``run_spec``."""
    from ..core.models import MODELS  # noqa: PLC0415

    model = MODELS[run_spec.model.kind](run_spec.model.options)
    P, E, L = model.n_params, model.end_to_end_size, model.n_layers
    R = run_spec.record.points + 1
    return MemberMemory(data=data_bytes(run_spec), trajectory=R * (P + 4) * 8,
                        working=WORKING_VECTORS * P * 8, finishing=R * (2 * P + E + L) * 8)


def ensemble_size_within(budget: int | None, run_specs, max_datasets: int) -> int | None:
    """The most members (of these points, which share one ensemble key) an ensemble may have so
    that its memory stays within ``budget`` bytes (at least 1); ``None`` if there is no budget.
    Counts the largest member and ``min(max_datasets, distinct data sets)`` problems."""
    if budget is None:
        return None
    run_specs = list(run_specs)
    estimates = {}
    for spec in run_specs:  # members differ only in their record grid's size and their data
        key = (spec.record.points, _shape_key(spec))
        if key not in estimates:
            estimates[key] = member_memory(spec)
    worst = max(estimates.values(), key=lambda m: (m.per_member, m.data))
    datasets = min(max_datasets, len({(s.data, s.regularization) for s in run_specs}))
    room = budget - datasets * worst.data - worst.finishing
    return max(1, room // max(1, worst.per_member))


# -- time ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointTime:
    """Seconds of one point and where the number comes from (``measured``: completed points of
    the experiment, ``model``: steps x parameters)."""

    seconds: float
    source: str
    detail: str


def modelled_seconds(run_spec) -> float:
    """``POINT_SECONDS + steps * P * SECONDS_PER_PARAM_STEP`` (a flow: :data:`STEPS_PER_FLOW`
    steps)."""
    from ..core.models import MODELS  # noqa: PLC0415

    P = MODELS[run_spec.model.kind](run_spec.model.options).n_params
    steps = getattr(run_spec.dynamics.options, "steps", None) or STEPS_PER_FLOW
    return POINT_SECONDS + float(steps) * P * SECONDS_PER_PARAM_STEP


def measured_seconds(run_paths) -> list[float]:
    """Seconds per point of completed run files (``wall_seconds / ensemble_size``)."""
    from ..store.runfile import RunFileError, read_run, read_run_status  # noqa: PLC0415

    out = []
    for path in run_paths:
        try:
            if read_run_status(path) != "completed":
                continue
            prov = read_run(path).provenance
        except (RunFileError, OSError):
            continue
        wall, size = prov.get("wall_seconds"), prov.get("ensemble_size") or 1
        if isinstance(wall, (int, float)) and wall >= 0:
            out.append(float(wall) / max(1, int(size)))
        if len(out) >= TIMING_SAMPLE:
            break
    return out


def seconds_per_point(run_specs, completed_paths=()) -> PointTime:
    """The time of one point of these points: the 90th percentile measured on completed points if
    there are any (see the module docstring), else the mean of the model over the points."""
    measured = sorted(measured_seconds(completed_paths))
    if measured:
        return PointTime(measured[int(0.9 * (len(measured) - 1))], "measured",
                         f"90th percentile of {len(measured)} completed point"
                         f"{'s' if len(measured) != 1 else ''}")
    run_specs = list(run_specs)
    sample = run_specs[:: max(1, len(run_specs) // 64)]  # the model is the same for most points
    secs = sum(modelled_seconds(s) for s in sample) / len(sample) if sample else 0.0
    return PointTime(secs, "model", f"{POINT_SECONDS:g} s + steps x parameters x "
                     f"{SECONDS_PER_PARAM_STEP:g} s")
