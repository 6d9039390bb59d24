"""Runs: validated run specs -> the core -> run records and files.

``execute_ensemble(run_specs, run_ids)`` computes several runs that differ only in what an ensemble
may vary (:func:`ensemble_key`) as one batched computation and returns one
:class:`~lcnrun.store.runfile.RunRecord` (plain data) per run, each exactly the record the run
alone would give (``iter_ensemble`` yields them one by one, so a caller can write each and let it
go). ``execute(run_spec, run_id)`` is the ensemble of one. ``run_to_file`` / ``ensemble_to_files``
also write the records atomically. Nothing here prints: the CLI and the schedulers decide what to
show.

**Ensembles.** Points whose resolved specs agree except in the initialization (``init``: seed,
scale, kind ...), the data (``data``: seed, noise ..., a square loss only: each member gets its own
sufficient statistics), the record grid, the diagnostics and the dynamics keys its class lists in
``ensemble_options`` (gradient descent: ``lr``, ``steps``, the stopping rules; gradient flow:
``t_max``, ``rtol``, ``atol``, the stopping rules) have the same :func:`ensemble_key` and may run
together. Only dynamics whose batched path reproduces each member bitwise
(``Dynamics.batches_members``: gradient descent, and gradient flow with RK23/RK45/DOP853, on a
loss with a compiled form - the square loss and the separable losses - and a compiled model) have
a key; anything else runs alone. The computation runs with one BLAS thread
(:func:`~lcnrun.core.kernels.one_blas_thread`), so the thread settings never change a number.
"""
from __future__ import annotations

import json
import os
import time
import traceback
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

from . import interrupt
from .core import control
from .core.data import build_dataset
from .core.diagnostics import DIAGNOSTICS, check_data_condition
from .core.dynamics import COMPLETED, DYNAMICS, FAILED, STOPPED, Trajectory
from .core.init import build_init
from .core.kernels import one_blas_thread
from .core.losses import LOSSES
from .core.models import MODELS, Model
from .core.problem import Problem, ProblemEnsemble
from .core.regularization import fiber_decomposition, regularize
from .interrupt import StopRequested
from .provenance import collect_provenance, finish_provenance
from .spec import canonical_json, resolved_dict
from .spec.schema import SECTIONS
from .store.checkpoint import (Checkpoint, checkpoint_path, mismatch, read_checkpoint,
                               remove_checkpoint, spec_sha256, write_checkpoint)
from .store.runfile import RunRecord, write_run


#: seconds between two checkpoints of a run in progress (a SIGTERM always writes one)
DEFAULT_CHECKPOINT_EVERY = 300.0
#: where ``lcnrun run/sweep --checkpoint-every`` put their value for the processes they start
#: (sweep workers, and Slurm tasks through the submitting environment)
CHECKPOINT_EVERY_VARIABLE = "LCNRUN_CHECKPOINT_EVERY"


def checkpoint_every_default(run_specs=()) -> float:
    """Seconds between two checkpoints: ``$LCNRUN_CHECKPOINT_EVERY`` if set (``--checkpoint-every``
    of the command that started this process; 0: at every poll), else the smallest
    ``record.checkpoint_every`` of ``run_specs`` (an ensemble's members), else the default."""
    text = os.environ.get(CHECKPOINT_EVERY_VARIABLE, "").strip()
    try:
        value = float(text) if text else None
    except ValueError:
        value = None
    if value is not None and value >= 0:
        return value
    given = [s.record.checkpoint_every for s in run_specs if s.record.checkpoint_every is not None]
    return min(given) if given else DEFAULT_CHECKPOINT_EVERY


class _Poller:
    """What a run's computation does at each of the core's poll points (between two steps): the
    test barrier ``computing``; the check of a stop request (deferred to these points while a
    dynamics runs, so that a SIGTERM stops it between two steps); and the checkpoints: every
    ``every`` seconds and on a stop request, the state of every member with a checkpoint path
    is saved (see :mod:`lcnrun.core.control`: members are the ensemble's indices ``b``)."""

    def __init__(self, paths: list, metas: list, every: float | None):
        self.paths, self.metas, self.every = paths, metas, every
        self.start: dict[int, dict] = {}
        self.ended: list = []   # (state, rows) of loops that have ended: their final states
        self.current = None     # (state, rows) of the running loop
        self.last_save = time.monotonic()

    def __call__(self, state, rows) -> None:
        # one loop polls with one state function (a bound method: equal, not identical, each time)
        if state is not None and (self.current is None or self.current[0] != state):
            if self.current is not None:
                self.ended.append(self.current)
            self.current = (state, rows)
        try:
            interrupt.barrier("computing")
            interrupt.check()
        except StopRequested:
            if state is not None:
                self.save()
            raise
        if (state is not None and self.every is not None
                and time.monotonic() - self.last_save >= self.every):
            self.save()

    def states(self) -> dict[int, dict]:
        out: dict[int, dict] = {}
        for state, rows in self.ended + ([self.current] if self.current else []):
            for i, s in state().items():
                out[i if rows is None else rows[i]] = s
        return out

    def save(self) -> None:
        if not any(p is not None for p in self.paths):
            return
        for b, state in self.states().items():
            if self.paths[b] is not None:
                meta = dict(self.metas[b], saved_at=_utc_now())
                try:
                    write_checkpoint(self.paths[b], Checkpoint(state, meta))
                except OSError as err:  # a checkpoint that cannot be written does not fail the run
                    warnings.warn(f"checkpoint not written: {err}", RuntimeWarning, stacklevel=2)
        self.last_save = time.monotonic()


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _code_version(provenance: dict) -> dict:
    """What a checkpoint must have been written by to be resumed here: the same package source
    (its files' hash, not the git commit: a commit of tests or docs keeps checkpoints usable) and
    the same versions of Python and the numerical libraries."""
    return {"source_sha256": provenance.get("source_sha256"), **(provenance.get("versions") or {})}


def _resume(poller: _Poller, b: int, run_id: str, spec_text: str, provenance: dict) -> None:
    """Load member ``b``'s checkpoint if it matches the run (then ``poller.start[b]``, and
    ``provenance["resumed_from"]`` gains this resume); otherwise say why it is not used."""
    path = poller.paths[b]
    meta = {"run_id": run_id, "spec_sha256": spec_sha256(spec_text),
            "code": _code_version(provenance), "resumed_from": []}
    poller.metas[b] = meta
    if path is None:
        return
    found, why = read_checkpoint(path)
    if found is not None:
        why = mismatch(found.meta, run_id=run_id, spec_sha=meta["spec_sha256"], code=meta["code"])
    if why:
        provenance["checkpoint_ignored"] = f"checkpoint {path.name} not used: {why}; the run starts over"
        return
    if found is None:
        return
    state = found.state
    entry = {"t": float(state.get("t", 0.0)), "at": _utc_now()}
    if "step" in state:
        entry["step"] = int(state["step"])
    if state.get("resume_note"):
        entry["note"] = str(state["resume_note"])
    meta["resumed_from"] = list(found.meta.get("resumed_from") or []) + [entry]
    provenance["resumed_from"] = meta["resumed_from"]
    poller.start[b] = state


@dataclass
class Built:
    """The core objects of a run spec."""

    model: Model
    problem: Problem
    theta0: np.ndarray
    dynamics: object


def build_problem(run_spec, model: Model | None = None) -> Problem:
    """The objective a run spec trains: its loss on its data for ``model`` (built from the spec if
    not given), with its weight decay (a ``RegularizedProblem`` when ``l2 > 0``)."""
    model = model if model is not None else MODELS[run_spec.model.kind](run_spec.model.options)
    loss = LOSSES[run_spec.loss.kind](run_spec.loss.options)
    problem = Problem(model, loss, build_dataset(run_spec.data, model))
    return regularize(problem, run_spec.regularization)


def build(run_spec) -> Built:
    """Core objects for a run spec: model, problem (loss + data), initial point, dynamics."""
    model = MODELS[run_spec.model.kind](run_spec.model.options)
    problem = build_problem(run_spec, model)
    theta0 = build_init(run_spec.init, model)
    dynamics = DYNAMICS[run_spec.dynamics.kind](run_spec.dynamics.options)
    return Built(model, problem, theta0, dynamics)


def seeds_of(run_spec) -> dict:
    """Every seed in the spec, by dotted key (for provenance)."""
    found = {}

    def walk(obj, prefix):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{prefix}.{k}" if prefix else k)
        elif prefix.endswith("seed") and isinstance(obj, int):
            found[prefix] = obj
    walk(resolved_dict(run_spec), "")
    return found


def state_series(model: Model, theta: np.ndarray) -> dict[str, np.ndarray]:
    """What the stored states ``theta (T, P)`` determine, each ``(T, ...)``: ``end_to_end``, the
    model's invariants (``invariants`` and the family's extras) and ``layer_norms_sq``."""
    if not len(theta):
        return {}
    with np.errstate(all="ignore"):
        out = {"end_to_end": model.end_to_end(theta)}
        out.update(model.invariants(theta))
        out["layer_norms_sq"] = model.layer_norms_sq(theta)
    return out


def trajectory_arrays(model: Model, traj: Trajectory, series: dict[str, np.ndarray],
                      store_params: bool = True) -> dict[str, np.ndarray]:
    """The ``trajectory`` group of a run file (docs/spec.md section 3) from a core trajectory and its
    :func:`state_series`."""
    theta = np.asarray(traj.theta, dtype=float).reshape(len(traj.t), model.n_params)
    out = {"t": np.asarray(traj.t, dtype=float), "loss": np.asarray(traj.loss, dtype=float),
           "grad_norm": np.asarray(traj.grad_norm, dtype=float)}
    out.update(series)
    if len(theta) and store_params:
        for l, w in enumerate(model.split(theta)):
            out[f"params/layer_{l}"] = np.ascontiguousarray(w)
    for name, arr in traj.series.items():
        out[name] = np.asarray(arr)
    return out


def invariant_drift(invariants: np.ndarray, layer_norms_sq0: np.ndarray) -> float:
    """``max_t |inv(t) - inv(0)|_inf / max_l |w_l(0)|^2``: drift of the gradient-flow invariants
    ``(T, n)``, relative to the size of the layers at t = 0 (``layer_norms_sq0 (L,)``; the
    invariants are differences of squared norms)."""
    if len(invariants) < 2 or invariants.shape[1] == 0:
        return 0.0
    with np.errstate(all="ignore"):
        scale = float(np.max(layer_norms_sq0))
        drift = float(np.max(np.abs(invariants - invariants[:1])))
    return drift / scale if scale > 0 else drift


def make_record(run_spec, run_id, status, message, provenance, arrays=None, final_arrays=None,
                final_attrs=None, diagnostics=None, attrs=None) -> RunRecord:
    """A run record; with only the first five arguments, that of a run without a trajectory
    (failed before it started, stopped, or lost with its worker)."""
    base_attrs = {"message": message, "name": run_spec.name, "model_kind": run_spec.model.kind,
                  "dynamics_kind": run_spec.dynamics.kind, "loss_kind": run_spec.loss.kind}
    base_attrs.update(attrs or {})
    return RunRecord(run_id=run_id, status=status, spec_text=_spec_text(run_spec),
                     provenance=provenance, trajectory=arrays or {}, final_arrays=final_arrays or {},
                     final_attrs=final_attrs or {}, diagnostics=diagnostics or {}, attrs=base_attrs)


#: YAML text of ``{key: value}`` by ``(key, JSON text of value)``: see :func:`_spec_text`
_YAML_OF: dict[tuple[str, str], str] = {}
_YAML_OF_MAX = 4096


def _spec_text(run_spec) -> str:
    """The resolved spec as a run file stores it: ``yaml.safe_dump(resolved_dict(run_spec),
    sort_keys=True)``, made key by key.

    The top-level mapping is block style, so its text is that of each ``{key: value}`` in sorted
    key order, one after the other, as long as no list or dict occurs twice (YAML would write an
    anchor and an alias; ``resolved_dict`` makes every one afresh). Each key's text is remembered
    by the JSON text of its value (a sweep's points share all sections but a seed or two; a full
    dump is ~2.7 ms of pure Python per run): JSON text is one-to-one on plain values
    (:func:`_json_plain`: ``1``, ``1.0`` and ``true`` are told apart). Anything else: one dump of
    the whole."""
    resolved = resolved_dict(run_spec)
    seen: set[int] = set()
    if not all(_json_plain(value, seen) for value in resolved.values()):
        return yaml.safe_dump(resolved, sort_keys=True)
    if len(_YAML_OF) > _YAML_OF_MAX:
        _YAML_OF.clear()
    parts = []
    for key in sorted(resolved):
        value = resolved[key]
        memo_key = (key, json.dumps(value, sort_keys=True))
        text = _YAML_OF.get(memo_key)
        if text is None:
            text = _YAML_OF[memo_key] = yaml.safe_dump({key: value}, sort_keys=True)
        parts.append(text)
    return "".join(parts)


def _json_plain(value, seen: set[int]) -> bool:
    """Whether ``value`` is made of exactly str, int, float, bool, None, list and dict with str
    keys (no subclasses), no list or dict twice (``seen``: the ids of those met so far): values
    whose JSON text determines them, and so their YAML text."""
    kind = type(value)
    if kind in (str, int, float, bool) or value is None:
        return True
    if kind is not list and kind is not dict or id(value) in seen:
        return False
    seen.add(id(value))
    if kind is list:
        return all(_json_plain(v, seen) for v in value)
    return all(type(k) is str and _json_plain(v, seen) for k, v in value.items())


#: what members of one ensemble may differ in (the other sections are their ensemble key)
_MEMBERS_DIFFER_IN = ("name", "description", "init", "data", "record", "diagnostics")
#: the sections of a run that :func:`ensemble_key` / :func:`data_key` read
_ENSEMBLE_KEY_OF = tuple(s for s in SECTIONS if s not in _MEMBERS_DIFFER_IN)
_DATA_KEY_OF = ("data", "regularization")


def _remembered(memo: dict | None, run_spec, sections: tuple[str, ...], make):
    """``make(run_spec)``, remembered in ``memo`` (a dict the caller keeps for many runs) by the
    identity of the ``sections`` it depends on: a sweep's points share their equal sections'
    objects, so 100,000 points of one model and dynamics make the key once (the entry keeps the
    objects alive: their ids stay theirs)."""
    if memo is None:
        return make(run_spec)
    objects = tuple(getattr(run_spec, s) for s in sections)
    hit = memo.get(key := (sections, tuple(map(id, objects))))
    if hit is None:
        hit = memo[key] = (objects, make(run_spec))
    return hit[1]


def ensemble_key(run_spec, memo: dict | None = None) -> str | None:
    """What the members of an ensemble share, as canonical JSON; ``None`` if this run cannot be
    batched (it then runs alone). Runs with equal keys may form one ensemble. ``memo``: see
    :func:`_remembered`."""
    return _remembered(memo, run_spec, _ENSEMBLE_KEY_OF, _ensemble_key)


def _ensemble_key(run_spec) -> str | None:
    dynamics = DYNAMICS[run_spec.dynamics.kind]
    # every model family has a chain program (the model contract), so the loss and the dynamics
    # decide: the square loss and the separable losses (a compiled pass over the samples) batch
    loss = LOSSES[run_spec.loss.kind]
    if (not dynamics.batches_members
            or not (loss.quadratic or loss(run_spec.loss.options).kernel_code() is not None)
            or not dynamics.can_batch(run_spec.dynamics.options)):
        return None
    d = resolved_dict(run_spec)
    for key in _MEMBERS_DIFFER_IN:
        d.pop(key, None)
    for key in dynamics.ensemble_options:
        d["dynamics"].pop(key, None)
    return json.dumps(d, sort_keys=True, default=str)


def data_key(run_spec, memo: dict | None = None) -> str:
    """What the members of an ensemble that share one data set have in common (canonical JSON of the
    resolved data and regularization sections): members with equal keys train on the same problem.
    ``memo``: see :func:`_remembered`."""
    return _remembered(memo, run_spec, _DATA_KEY_OF, _data_key)


def _data_key(run_spec) -> str:
    d = resolved_dict(run_spec)
    return json.dumps({k: d[k] for k in ("data", "regularization")}, sort_keys=True, default=str)


def execute(run_spec, run_id: str) -> RunRecord:
    """Run one spec end to end and return its record (never raises for a failing run: a run that
    raises is recorded with status ``failed`` and the error text; SIGTERM gives ``stopped``).
    The ensemble of one: :func:`iter_ensemble`."""
    return next(iter_ensemble([run_spec], [run_id]))


def execute_ensemble(run_specs, run_ids) -> list[RunRecord]:
    """The records of runs with one :func:`ensemble_key` (or a single run), computed together."""
    return list(iter_ensemble(run_specs, run_ids))


def iter_ensemble(run_specs, run_ids, checkpoints=None, checkpoint_every: float | None = None):
    """Compute the runs ``run_specs`` as one ensemble and yield their records in order.

    Shared: the model, the loss and the dynamics kind (checked); per member: the initial point, the
    data (members with equal ``data`` and ``regularization`` share one problem), the record grid,
    the dynamics options, the diagnostics. A member whose own set-up raises (e.g. a missing init
    file) is ``failed`` alone; an error of the shared computation fails every member; SIGTERM
    stops every member (``stopped``). Never raises for a failing run.

    ``checkpoints`` (one path or None per run, see :mod:`lcnrun.store.checkpoint`): each member
    whose checkpoint matches its run resumes from it; while the ensemble computes, every member's
    state is saved there every ``checkpoint_every`` seconds (None: only on a stop request) and on
    a stop request, so that each member of a ``stopped`` ensemble keeps its progress.
    """
    run_specs, run_ids = list(run_specs), list(run_ids)
    B = len(run_specs)
    if len(run_ids) != B:
        raise ValueError(f"{B} run specs but {len(run_ids)} run ids")
    if B > 1:
        keys = {ensemble_key(s) for s in run_specs}
        if len(keys) != 1 or None in keys:
            raise ValueError("these runs cannot form one ensemble (their ensemble keys differ or "
                             "they cannot be batched): run them alone")
    provenances = [collect_provenance(seeds_of(s)) for s in run_specs]
    for prov in provenances:
        prov["ensemble_size"] = B
    poller = _Poller(list(checkpoints) if checkpoints is not None else [None] * B, [{}] * B,
                     checkpoint_every)
    records: list[RunRecord | None] = [None] * B
    member_warnings: list[list] = [[] for _ in range(B)]
    trajectories: dict[int, Trajectory] = {}
    problems: list = []
    problem_of: dict[int, int] = {}
    conditions: list = []
    model = None
    shared_warnings: list = []
    try:
        # a stop request from before (set-up, the claim) raises at once; one during raises there
        with interrupt.stoppable(), control.polling(poller), one_blas_thread(), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = run_specs[0]
            model = MODELS[first.model.kind](first.model.options)
            by_data: dict[str, int] = {}
            theta0 = np.empty((B, model.n_params))
            for b, spec in enumerate(run_specs):
                start = len(caught)
                try:
                    key = data_key(spec)
                    if key not in by_data:
                        problem = build_problem(spec, model)
                        # the convergence theorem's data condition (full-rank patch Gram), up front
                        conditions.append(check_data_condition(problem))
                        by_data[key] = len(problems)
                        problems.append(problem)
                    theta0[b] = build_init(spec.init, model)[0]
                    problem_of[b] = by_data[key]
                    # a checkpoint matches the run's computation (the text its run id hashes:
                    # no names, no run settings, the data files' hashes), not its spec's wording
                    _resume(poller, b, run_ids[b],
                            canonical_json(spec, file_hashes=dict(spec.file_hashes)), provenances[b])
                except StopRequested:
                    raise
                except Exception as err:  # noqa: BLE001 - this member fails, the others go on
                    records[b] = _failed(spec, run_ids[b], provenances[b], err)
                member_warnings[b] = list(caught[start:])
            hashes: dict[str, str] = {}  # after every file was read: a change before is seen
            for b in sorted(problem_of):
                changed = changed_files(run_specs[b], hashes)
                if changed:
                    records[b] = _failed(run_specs[b], run_ids[b], provenances[b], DataChanged(changed))
                    del problem_of[b]
            start = len(caught)
            members = sorted(problem_of)
            if members:
                if len(problems) == 1:
                    problem = problems[0]
                else:
                    problem = ProblemEnsemble(problems, [problem_of[b] for b in members])
                dynamics = DYNAMICS[first.dynamics.kind]
                # a stop request raises at the dynamics' next poll, where its state is saved
                with interrupt.deferred(), control.members(members):
                    trajs = dynamics.run_members(problem, theta0[members],
                                                 [run_specs[b].record for b in members],
                                                 [run_specs[b].dynamics.options for b in members])
                trajectories = dict(zip(members, trajs))
            shared_warnings = list(caught[start:])
    except StopRequested as err:
        for b in range(B):
            if records[b] is None:
                finish_provenance(provenances[b], str(err))
                records[b] = make_record(run_specs[b], run_ids[b], STOPPED, f"stopped: {err}", provenances[b])
        trajectories = {}
    except Exception as err:  # noqa: BLE001 - a failing run is data, not a crash
        for b in range(B):
            if records[b] is None:
                records[b] = _failed(run_specs[b], run_ids[b], provenances[b], err)
        trajectories = {}
    for b in range(B):
        if records[b] is None:
            spec = run_specs[b]
            try:
                with one_blas_thread(), warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    p = problems[problem_of[b]]
                    records[b] = _finish(spec, run_ids[b], model, p, trajectories.pop(b), provenances[b],
                                         member_warnings[b] + shared_warnings, conditions[problem_of[b]],
                                         caught)
                finish_provenance(provenances[b], None)
            except Exception as err:  # noqa: BLE001
                records[b] = _failed(spec, run_ids[b], provenances[b], err)
        record, records[b] = records[b], None
        yield record


class DataChanged(Exception):
    """A file of the run does not hold the content its run id was computed from."""


def changed_files(run_spec, hashes: dict[str, str]) -> str:
    """Why the files of ``run_spec`` are not the content its run id names (``""`` if they are):
    each file is hashed again (once per ``hashes`` cache) and compared with
    ``run_spec.file_hashes``, recorded when the sweep was expanded."""
    from .spec.canonical import file_sha256  # noqa: PLC0415

    problems = []
    for path, expected in run_spec.file_hashes:
        if path not in hashes:
            try:
                hashes[path] = file_sha256(path)
            except OSError as err:
                hashes[path] = f"unreadable ({err.strerror or err})"
        if hashes[path] != expected:
            problems.append(f"{path} changed since the run id was computed (sha256 {expected[:12]}... "
                            f"then, {hashes[path][:12]}... now)")
    if not problems:
        return ""
    return ("; ".join(problems) + ": this point was not computed (its run id names the old "
            "content); load the spec again (lcnrun sweep/run) to compute the new one")


def _failed(run_spec, run_id, provenance, err) -> RunRecord:
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    finish_provenance(provenance, text)
    return make_record(run_spec, run_id, FAILED, f"{type(err).__name__}: {err}", provenance)


def _finish(run_spec, run_id, model: Model, problem, traj: Trajectory, provenance, caught, data_condition,
            caught_after=()) -> RunRecord:
    if run_spec.regularization.l2 > 0 and len(traj.t):
        # the papers' fast-slow picture: velocity along the fiber (regularizing) and across it
        traj.series.update(fiber_decomposition(problem, np.asarray(traj.theta)))
    theta = np.asarray(traj.theta, dtype=float).reshape(len(traj.t), model.n_params)
    series = state_series(model, theta)  # once: the trajectory, the final state and the drift
    arrays = trajectory_arrays(model, traj, series, run_spec.record.params)
    final_arrays, final_attrs = {}, {}
    if len(theta):
        for l, w in enumerate(model.split(theta[-1:])):
            final_arrays[f"params/layer_{l}"] = w[0]
        final_arrays.update({name: arr[-1] for name, arr in series.items() if name != "layer_norms_sq"})
        final_attrs = {"loss": float(traj.loss[-1]), "grad_norm": float(traj.grad_norm[-1]),
                       "t": float(traj.t[-1]), "loss_initial": float(traj.loss[0])}
    final_attrs["invariant_drift"] = (invariant_drift(series["invariants"], series["layer_norms_sq"][0])
                                      if series else 0.0)
    final_attrs["n_records"] = int(len(traj.t))
    for k, v in traj.attrs.items():
        if isinstance(v, (int, float, str, bool, np.integer, np.floating, np.bool_)):
            final_attrs[k] = v
    diagnostics = {}
    status = traj.status
    warn_texts = list(data_condition.warnings)
    final_attrs["data_gram_rank"] = data_condition.scalars["gram_rank"]
    final_attrs["data_full_rank"] = bool(data_condition.scalars["full_rank"])
    for section in run_spec.diagnostics:
        name = section.kind
        result = DIAGNOSTICS[name](section.options).compute(problem, traj)
        diagnostics[name] = {"arrays": result.arrays, "scalars": result.scalars}
        warn_texts += [f"{name}: {w}" for w in result.warnings]
    warn_texts += [f"{w.category.__name__}: {w.message}" for w in list(caught) + list(caught_after)]
    if warn_texts:
        provenance["warnings"] = warn_texts
    attrs = {"warnings": "\n".join(warn_texts)} if warn_texts else {}
    return make_record(run_spec, run_id, status, traj.message, provenance, arrays, final_arrays,
                       final_attrs, diagnostics, attrs)


def run_to_file(run_spec, run_id: str, path: Path, checkpoint_every: float | None = None) -> RunRecord:
    """Execute and write atomically to ``path``; returns the record. The run resumes from its
    checkpoint beside ``path`` and keeps one while it computes (see :func:`ensemble_to_files`)."""
    record = None
    for _, _, _, record in _to_files([run_spec], [run_id], [path], checkpoint_every):
        pass
    return record


def ensemble_to_files(run_specs, run_ids, paths, checkpoint_every: float | None = None):
    """Compute an ensemble and write each member's record atomically to its path as soon as it is
    made (then let it go: memory holds the compact core results and one record); yields
    ``(index, record status, message)`` per member, in order.

    Each member resumes from its checkpoint beside its path (``store.checkpoint.checkpoint_path``)
    if there is a matching one, keeps one every ``checkpoint_every`` seconds (default
    :func:`checkpoint_every_default`) and on SIGTERM; a ``stopped`` run keeps its checkpoint, a
    run that ended otherwise removes it once its run file is written."""
    for i, status, message, _ in _to_files(run_specs, run_ids, paths, checkpoint_every):
        yield i, status, message


def _to_files(run_specs, run_ids, paths, checkpoint_every):
    every = checkpoint_every_default(run_specs) if checkpoint_every is None else checkpoint_every
    checkpoints = [checkpoint_path(p) for p in paths]
    for i, (record, path) in enumerate(zip(iter_ensemble(run_specs, run_ids, checkpoints, every), paths)):
        write_run(path, record)
        if record.status != STOPPED:
            remove_checkpoint(checkpoints[i])
        yield i, record.status, str(record.attrs.get("message", "") or ""), record
