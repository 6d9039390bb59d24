"""One run: a validated run spec -> the core -> a run file.

``execute(run_spec)`` does the numerical work and returns a :class:`~lcnrun.store.runfile.RunRecord`
(plain data); ``run_to_file`` also writes it atomically. Nothing here prints: the CLI and the
schedulers decide what to show.
"""
from __future__ import annotations

import signal
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .core.data import build_dataset
from .core.diagnostics import DIAGNOSTICS, check_data_condition
from .core.dynamics import COMPLETED, DYNAMICS, FAILED, STOPPED, Trajectory
from .core.init import build_init
from .core.losses import LOSSES
from .core.models import MODELS, Model
from .core.problem import Problem
from .core.regularization import fiber_decomposition, regularize
from .provenance import collect_provenance, finish_provenance
from .spec import resolved_dict
from .store.runfile import RunRecord, write_run


class StopRequested(Exception):
    """Raised inside a run when the process is asked to stop (SIGTERM: preemption, time limit)."""


@contextmanager
def stop_on_sigterm():
    """Turn SIGTERM into :class:`StopRequested` for the duration of a run (main thread only)."""
    try:
        previous = signal.getsignal(signal.SIGTERM)

        def handler(signum, frame):
            raise StopRequested("received SIGTERM")
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class Built:
    """The core objects of a run spec."""

    model: Model
    problem: Problem
    theta0: np.ndarray
    dynamics: object


def build(run_spec) -> Built:
    """Core objects for a run spec: model, problem (loss + data), initial point, dynamics."""
    model = MODELS[run_spec.model.kind](run_spec.model.options)
    dataset = build_dataset(run_spec.data, model)
    loss = LOSSES[run_spec.loss.kind](run_spec.loss.options)
    problem = Problem(model, loss, dataset)
    problem = regularize(problem, run_spec.regularization)
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


def trajectory_arrays(model: Model, traj: Trajectory, store_params: bool = True) -> dict[str, np.ndarray]:
    """The ``trajectory`` group of a run file from a core trajectory (SPEC.md section 3)."""
    theta = np.asarray(traj.theta, dtype=float).reshape(len(traj.t), model.n_params)
    out = {"t": np.asarray(traj.t, dtype=float), "loss": np.asarray(traj.loss, dtype=float),
           "grad_norm": np.asarray(traj.grad_norm, dtype=float)}
    if len(theta):
        with np.errstate(all="ignore"):
            out["end_to_end"] = model.end_to_end(theta)
            for name, arr in model.invariants(theta).items():
                out[name] = arr
            out["layer_norms_sq"] = model.layer_norms_sq(theta)
        if store_params:
            for l, w in enumerate(model.split(theta)):
                out[f"params/layer_{l}"] = np.ascontiguousarray(w)
    for name, arr in traj.series.items():
        out[name] = np.asarray(arr)
    return out


def invariant_drift(model: Model, theta: np.ndarray) -> float:
    """``max_t |inv(t) - inv(0)|_inf / max_l |w_l(0)|^2``: drift of the gradient-flow invariants,
    relative to the size of the layers (the invariants are differences of squared norms)."""
    if len(theta) < 2:
        return 0.0
    with np.errstate(all="ignore"):
        inv = model.invariants(theta)["invariants"]
        if inv.shape[1] == 0:
            return 0.0
        scale = float(np.max(model.layer_norms_sq(theta[:1])))
        drift = float(np.max(np.abs(inv - inv[:1])))
    return drift / scale if scale > 0 else drift


def make_record(run_spec, run_id, status, message, provenance, arrays=None, final_arrays=None,
                final_attrs=None, diagnostics=None, attrs=None) -> RunRecord:
    """A run record; with only the first five arguments, that of a run without a trajectory
    (failed before it started, stopped, or lost with its worker)."""
    base_attrs = {"message": message, "name": run_spec.name, "model_kind": run_spec.model.kind,
                  "dynamics_kind": run_spec.dynamics.kind, "loss_kind": run_spec.loss.kind}
    base_attrs.update(attrs or {})
    return RunRecord(run_id=run_id, status=status,
                     spec_text=yaml.safe_dump(resolved_dict(run_spec), sort_keys=True),
                     provenance=provenance, trajectory=arrays or {}, final_arrays=final_arrays or {},
                     final_attrs=final_attrs or {}, diagnostics=diagnostics or {}, attrs=base_attrs)


def execute(run_spec, run_id: str) -> RunRecord:
    """Run one spec end to end and return its record (never raises for a failing run: a run that
    raises is recorded with status ``failed`` and the error text; SIGTERM gives ``stopped``)."""
    provenance = collect_provenance(seeds_of(run_spec))
    try:
        with stop_on_sigterm(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            built = build(run_spec)
            # the convergence theorem's data condition (full-rank patch Gram), checked up front
            data_condition = check_data_condition(built.problem)
            traj = built.dynamics.run(built.problem, built.theta0, run_spec.record)[0]
            record = _finish(run_spec, run_id, built, traj, provenance, caught, data_condition)
        finish_provenance(provenance, None)
        return record
    except StopRequested as err:
        finish_provenance(provenance, str(err))
        return make_record(run_spec, run_id, STOPPED, f"stopped: {err}", provenance)
    except Exception as err:  # noqa: BLE001 - a failing run is data, not a crash
        text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        finish_provenance(provenance, text)
        return make_record(run_spec, run_id, FAILED, f"{type(err).__name__}: {err}", provenance)


def _finish(run_spec, run_id, built: Built, traj: Trajectory, provenance, caught, data_condition) -> RunRecord:
    model = built.model
    if run_spec.regularization.l2 > 0 and len(traj.t):
        # the papers' fast-slow picture: velocity along the fiber (regularizing) and across it
        traj.series.update(fiber_decomposition(built.problem, np.asarray(traj.theta)))
    arrays = trajectory_arrays(model, traj, run_spec.record.params)
    theta = np.asarray(traj.theta, dtype=float).reshape(len(traj.t), model.n_params)
    final_arrays, final_attrs = {}, {}
    if len(theta):
        last = theta[-1:]
        for l, w in enumerate(model.split(last)):
            final_arrays[f"params/layer_{l}"] = w[0]
        with np.errstate(all="ignore"):
            final_arrays["end_to_end"] = model.end_to_end(last)[0]
            for name, arr in model.invariants(last).items():
                final_arrays[name] = arr[0]
        final_attrs = {"loss": float(traj.loss[-1]), "grad_norm": float(traj.grad_norm[-1]),
                       "t": float(traj.t[-1]), "loss_initial": float(traj.loss[0])}
    final_attrs["invariant_drift"] = invariant_drift(model, theta)
    final_attrs["n_records"] = int(len(traj.t))
    for k, v in traj.attrs.items():
        if isinstance(v, (int, float, str, bool, np.integer, np.floating, np.bool_)):
            final_attrs[k] = v
    diagnostics = {}
    status = traj.status
    warn_texts = list(data_condition.warnings)
    final_attrs["data_gram_rank"] = data_condition.scalars["gram_rank"]
    final_attrs["data_full_rank"] = bool(data_condition.scalars["full_rank"])
    for name in run_spec.diagnostics:
        result = DIAGNOSTICS[name]().compute(built.problem, traj)
        diagnostics[name] = {"arrays": result.arrays, "scalars": result.scalars}
        warn_texts += [f"{name}: {w}" for w in result.warnings]
    warn_texts += [f"{w.category.__name__}: {w.message}" for w in caught]
    if warn_texts:
        provenance["warnings"] = warn_texts
    attrs = {"warnings": "\n".join(warn_texts)} if warn_texts else {}
    return make_record(run_spec, run_id, status, traj.message, provenance, arrays, final_arrays,
                   final_attrs, diagnostics, attrs)


def run_to_file(run_spec, run_id: str, path: Path) -> RunRecord:
    """Execute and write atomically to ``path``; returns the record."""
    record = execute(run_spec, run_id)
    write_run(path, record)
    return record
