"""Diagnostic options from a spec: ``diagnostics: [name, {kind: name, option: value}]``.

- a bare name and ``{kind: name}`` at the default options are the same run (same resolved spec, same
  run id: the ids of specs written before diagnostics had options do not change);
- a non-default option is part of the resolved spec and of the run id, survives the round trip
  through a run file's stored spec text, and reaches the diagnostic (its stored ``rtol`` scalar is
  the spec's value);
- a wrong option name, type or value, a repeated diagnostic or a non-mapping entry is a spec error
  naming the file, the line and the dotted key.
"""
from __future__ import annotations

import pytest
import yaml

from lcnrun.runner import execute
from lcnrun.spec import SpecError, load_experiment_text, load_run_spec_text, resolved_dict, run_id

BASE = """\
name: diag
model: {kind: lcn, filters: [3, 2], strides: [1, 1]}
data: {kind: gaussian, n_samples: 6, input_size: 8, seed: 0}
init: {kind: gaussian, scale: 0.4, seed: 1}
dynamics: {kind: gradient_descent, lr: 0.05, steps: 20}
record: {points: 5}
"""


def run_of(diagnostics: str):
    (point,) = load_experiment_text(BASE + f"diagnostics: {diagnostics}\n", file="spec.yaml").points
    return point.run_spec


def test_bare_name_and_default_mapping_are_the_same_run():
    bare, mapping = run_of("[parametrization_rank]"), run_of("[{kind: parametrization_rank}]")
    assert bare == mapping and run_id(bare) == run_id(mapping)
    assert resolved_dict(bare)["diagnostics"] == ["parametrization_rank"]
    # explicitly writing a default value is still the default
    assert run_id(run_of("[{kind: parametrization_rank, rtol: 1.0e-8}]")) == run_id(bare)


def test_an_option_is_part_of_the_resolved_spec_and_reaches_the_diagnostic():
    spec = run_of("[data_condition, {kind: parametrization_rank, rtol: 1.0e-6}]")
    assert run_id(spec) != run_id(run_of("[data_condition, parametrization_rank]"))
    resolved = resolved_dict(spec)["diagnostics"]
    assert resolved[0] == "data_condition"
    assert resolved[1] == {"kind": "parametrization_rank", "rtol": 1.0e-6, "root_tol": 1.0e-6, "max_points": 200}
    again = load_run_spec_text(yaml.safe_dump(resolved_dict(spec), sort_keys=True))
    assert again == spec and run_id(again) == run_id(spec)
    record = execute(spec, run_id(spec))
    assert record.status == "completed", record.attrs
    assert record.diagnostics["parametrization_rank"]["scalars"]["rtol"] == 1.0e-6


@pytest.mark.parametrize("diagnostics, key, message", [
    ("[{kind: parametrization_rank, rtoll: 1.0e-6}]", "diagnostics[0].rtoll", "unknown"),
    ("[{kind: parametrization_rank, rtol: small}]", "diagnostics[0].rtol", ""),
    ("[{kind: parametrization_rank, rtol: -1.0}]", "diagnostics[0].rtol", ""),
    ("[{kind: curvature}]", "diagnostics[0].kind", "unknown kind 'curvature'"),
    ("[curvature]", "diagnostics[0]", "unknown diagnostic 'curvature'"),
    ("[parametrization_rank, {kind: parametrization_rank, rtol: 1.0e-6}]", "diagnostics[1]", "already"),
    ("[[parametrization_rank]]", "diagnostics[0]", "must be a diagnostic name or a mapping"),
    ("parametrization_rank", "diagnostics", "must be a list"),
])
def test_bad_diagnostic_entries_are_spec_errors(diagnostics, key, message):
    with pytest.raises(SpecError) as info:
        run_of(diagnostics)
    (problem,) = info.value.problems
    assert problem.key == key and message in problem.message and problem.line == 7, problem
