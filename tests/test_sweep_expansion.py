"""Sweep expansion: grid x zip x points, order, refusals (with the sweep's line and the point)."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from lcnrun.spec import SpecError, format_overrides, load_experiment, manifest_rows, run_id

HEAD = """\
name: sweep-demo
model: {kind: lcn, filters: [4, 3, 2], strides: [2, 2, 1]}
data: {kind: gaussian, n_samples: 16, input_size: 64, seed: 0}
init: {kind: gaussian, scale: 0.3, seed: 1}
dynamics: {kind: gradient_descent, lr: 0.01, steps: 100}
"""  # 5 lines: the sweep block starts on line 6


def load(tmp_path: Path, sweep: str, head: str = HEAD):
    p = tmp_path / "x.yaml"
    p.write_text(head + sweep)
    return load_experiment(p)


def refusal(tmp_path: Path, sweep: str, head: str = HEAD):
    with pytest.raises(SpecError) as info:
        load(tmp_path, sweep, head)
    return info.value


def test_no_sweep_is_one_point(tmp_path):
    exp = load(tmp_path, "")
    (point,) = exp.points
    assert point.index == 0 and point.overrides == {}
    assert point.run_spec == exp.base and point.run_id == run_id(exp.base)
    assert exp.name == "sweep-demo"
    assert manifest_rows(exp) == [(0, point.run_id, "{}")]


def test_grid_zip_points_product_in_order(tmp_path):
    exp = load(tmp_path, MIXED)
    seeds, strides = [0, 1], [[1, 1, 1], [2, 2, 1]]
    zipped = [(0.1, 10), (0.01, 20), (0.001, 30)]
    points = [{"data.noise": 0.0}, {"data.noise": 0.1, "data.seed": 3}]
    expected = list(itertools.product(seeds, strides, zipped, points))
    assert len(exp.points) == 24 == len(expected)
    for point, (seed, stride, (lr, steps), extra) in zip(exp.points, expected):
        want = {"init.seed": seed, "model.strides": stride, "dynamics.lr": lr, "dynamics.steps": steps, **extra}
        assert point.overrides == want and list(point.overrides) == list(want)
        o = point.run_spec
        assert o.init.options.seed == seed and o.model.options.strides == tuple(stride)
        assert o.dynamics.options.lr == lr and o.dynamics.options.steps == steps
        assert o.data.options.noise == extra["data.noise"] and o.data.options.seed == extra.get("data.seed", 0)
        assert o.init.options.scale == 0.3  # untouched keys keep the spec's values
    assert [p.index for p in exp.points] == list(range(24))
    assert len({p.run_id for p in exp.points}) == 24
    assert exp.base.init.options.seed == 1 and exp.base.model.options.strides == (2, 2, 1)
    p13 = exp.points[13]  # 13 = ((1 * 2 + 0) * 3 + 0) * 2 + 1
    assert format_overrides(p13.overrides) == ("init.seed=1 model.strides=[1, 1, 1] dynamics.lr=0.1 "
                                                "dynamics.steps=10 data.noise=0.1 data.seed=3")
    rows = manifest_rows(exp)
    assert rows[13][:2] == (13, p13.run_id) and json.loads(rows[13][2]) == p13.overrides


def test_the_same_run_has_the_same_id_in_a_sweep_and_alone(tmp_path):
    exp = load(tmp_path, "sweep: {grid: {init.seed: [1, 5]}}\n")
    assert exp.points[0].run_id == run_id(exp.base)  # seed 1 is the base spec's value
    (tmp_path / "alone").mkdir()
    alone = load(tmp_path / "alone", "", HEAD.replace("name: sweep-demo", "name: alone")
                 .replace("seed: 1}", "seed: 5}"))
    assert alone.points[0].run_id == exp.points[1].run_id


def test_nested_list_valued_and_whole_section_keys(tmp_path):
    exp = load(tmp_path, """\
sweep:
  grid:
    data.target.scale: [0.5, 2]
    model.filters[0]: [2, 5]
  points:
    - {data.target.kind: teacher}
    - {data.target.kind: random_end_to_end}
""")
    assert len(exp.points) == 8
    p = exp.points[3]  # scale 0.5, filters[0] = 5, random_end_to_end
    assert p.run_spec.model.options.filters == (5, 3, 2)
    assert p.run_spec.data.options.target.kind == "random_end_to_end"
    assert p.run_spec.data.options.target.options.scale == 0.5
    assert exp.points[6].run_spec.data.options.target.options.scale == 2.0
    assert exp.points[6].run_spec.data.options.target.kind == "teacher"

    exp = load(tmp_path, """\
sweep:
  grid:
    data.target: [{kind: gaussian}, {kind: random_end_to_end, scale: 3}]
    model: [{kind: lcn, filters: [[2, 2]]}, {kind: lcn, filters: [[3, 1]], strides: [[2, 1]]}]
    data.input_size: [[8, 8]]
""")
    targets = [p.run_spec.data.options.target for p in exp.points]
    assert [t.kind for t in targets] == ["gaussian"] * 2 + ["random_end_to_end"] * 2
    assert targets[3].options.scale == 3.0
    assert exp.points[1].run_spec.model.options.strides == ((2, 1),)
    assert exp.points[1].run_spec.data.options.input_size == (8, 8)


def test_kind_sweep_by_points_with_a_base_that_needs_the_sweep(tmp_path):
    head = HEAD.replace("dynamics: {kind: gradient_descent, lr: 0.01, steps: 100}", "dynamics: {}")
    exp = load(tmp_path, """\
sweep:
  points:
    - {dynamics.kind: gradient_flow, dynamics.t_max: 2}
    - {dynamics.kind: gradient_descent, dynamics.lr: 0.1, dynamics.steps: 20}
""", head)
    assert exp.base is None  # dynamics.kind is only given by the sweep
    assert [p.run_spec.dynamics.kind for p in exp.points] == ["gradient_flow", "gradient_descent"]
    assert exp.points[0].run_spec.dynamics.options.t_max == 2.0


def test_impossible_point_is_refused_naming_the_point(tmp_path):
    err = refusal(tmp_path, """\
sweep:
  grid:
    init.seed: [0]
    model.strides: [[1, 1, 1], [0, 1, 1]]
""")
    assert str(err) == (f"{tmp_path / 'x.yaml'}:9: sweep point 1 (init.seed=0 model.strides=[0, 1, 1]): "
                        "model.strides[0]: must be a positive integer")


def test_architecture_made_impossible_by_a_combination(tmp_path):
    (p,) = refusal(tmp_path, "sweep:\n  grid: {data.input_size: [64, 6]}\n").problems
    assert (p.line, p.key) == (7, "model.filters[1]") and "larger than its input" in p.message
    assert p.context == "sweep point 1 (data.input_size=6)"


def test_kind_override_makes_the_old_keys_invalid(tmp_path):
    problems = refusal(tmp_path, "sweep:\n  grid: {dynamics.kind: [gradient_descent, gradient_flow]}\n").problems
    assert {(p.line, p.key, p.context) for p in problems} == {
        (7, "dynamics.lr", "sweep point 1 (dynamics.kind=gradient_flow)"),
        (7, "dynamics.steps", "sweep point 1 (dynamics.kind=gradient_flow)"),
        (7, "dynamics.t_max", "sweep point 1 (dynamics.kind=gradient_flow)"),
    }


def test_zip_lists_of_different_lengths(tmp_path):
    (p,) = refusal(tmp_path, "sweep:\n  zip:\n    init.seed: [0, 1, 2]\n    data.seed: [0, 1]\n").problems
    assert (p.line, p.key) == (7, "sweep.zip") and "same length" in p.message
    assert "init.seed: 3" in p.message and "data.seed: 2" in p.message


def test_unknown_swept_keys(tmp_path):
    (p,) = refusal(tmp_path, "sweep:\n  grid:\n    init.seed: [0, 1]\n    model.stride: [[1, 1, 1]]\n").problems
    assert str(p) == (f"{tmp_path / 'x.yaml'}:9: all 2 sweep points: model.stride: "
                      "unknown key 'stride' (did you mean 'strides'?)")
    (p,) = refusal(tmp_path, "sweep:\n  grid: {modle.strides: [[1, 1, 1]]}\n").problems
    assert (p.line, p.key) == (7, "sweep.grid.modle.strides") and "did you mean 'model'?" in p.message
    (p,) = refusal(tmp_path, "sweep:\n  grid: {name: [a, b]}\n").problems
    assert "cannot sweep 'name'" in p.message
    (p,) = refusal(tmp_path, "sweep:\n  gird: {init.seed: [1, 2]}\n").problems
    assert (p.line, p.key) == (7, "sweep.gird") and "did you mean 'grid'?" in p.message


@pytest.mark.parametrize("sweep, key, line, fragment", [
    ("sweep:\n  grid: {init.seed: []}\n", "sweep.grid.init.seed", 7, "empty list"),
    ("sweep:\n  grid: {init.seed: 3}\n", "sweep.grid.init.seed", 7, "must be a list"),
    ("sweep:\n  points: []\n", "sweep.points", 7, "non-empty list"),
    ("sweep:\n  points: [init.seed]\n", "sweep.points[0]", 7, "must be a mapping"),
    ("sweep: [1, 2]\n", "sweep", 6, "must be a mapping"),
    ("sweep:\n  grid: {model: [{kind: dense, widths: [64, 1]}]}\n  zip: {model.filters: [[2]]}\n",
     "sweep", 6, "'model' and 'model.filters' are both swept"),
    ("sweep:\n  grid: {init.seed: [1, 2]}\n  points:\n    - {init.seed: 3}\n",
     "sweep.points[0].init.seed", 9, "also swept by grid"),
])
def test_malformed_sweeps(tmp_path, sweep, key, line, fragment):
    (p,) = refusal(tmp_path, sweep).problems
    assert (p.key, p.line) == (key, line) and fragment in p.message, str(p)


def test_duplicate_points_are_refused(tmp_path):
    (p,) = refusal(tmp_path, "sweep:\n  points:\n    - {init.seed: 1.0}\n    - {init.scale: 0.3}\n").problems
    assert (p.key, p.line) == ("sweep", 6)
    assert "sweep points 0 (init.seed=1.0) and 1 (init.scale=0.3) are the same run" in p.message


def test_index_override_of_a_missing_entry(tmp_path):
    (p,) = refusal(tmp_path, "sweep:\n  grid:\n    model.filters[5]: [2]\n").problems
    assert (p.line, p.key) == (8, "model.filters[5]") and "cannot apply" in p.message


def test_sweep_and_base_problems_are_reported_together(tmp_path):
    head = HEAD.replace("lr: 0.01", "lr: -0.01")
    problems = refusal(tmp_path, "sweep:\n  zip: {init.seed: [0, 1], data.seed: [0]}\n", head).problems
    assert [(p.line, p.key) for p in problems] == [(5, "dynamics.lr"), (7, "sweep.zip")]


MIXED = """\
sweep:
  grid:
    init.seed: [0, 1]
    model.strides: [[1, 1, 1], [2, 2, 1]]
  zip: {dynamics.lr: [0.1, 0.01, 0.001], dynamics.steps: [10, 20, 30]}
  points:
    - {data.noise: 0.0}
    - {data.noise: 0.1, data.seed: 3}
"""


def expand_some(tmp_path: Path, sweep: str, chosen, head: str = HEAD):
    from lcnrun.spec.sweep import expand_points
    from lcnrun.spec.yamlio import read_yaml_file

    p = tmp_path / "x.yaml"
    p.write_text(head + sweep)
    raw, lines = read_yaml_file(p)
    return expand_points(raw, lines, lambda n: chosen, file=str(p), base_dir=tmp_path, spec_path=str(p))


@pytest.mark.parametrize("chosen", [[0], [13], [23], [1, 2, 3, 17, 22], list(range(24))])
def test_chosen_points_are_made_from_their_index(tmp_path, chosen):
    """A task's few points (``run --indices``): point i's overrides are computed from i in product
    order (the independent value: itertools.product), validated, with the whole sweep's ids."""
    part, n = expand_some(tmp_path, MIXED, chosen)
    seeds, strides = [0, 1], [[1, 1, 1], [2, 2, 1]]
    zipped = [{"dynamics.lr": 0.1, "dynamics.steps": 10}, {"dynamics.lr": 0.01, "dynamics.steps": 20},
              {"dynamics.lr": 0.001, "dynamics.steps": 30}]
    points = [{"data.noise": 0.0}, {"data.noise": 0.1, "data.seed": 3}]
    expected = [{"init.seed": a, "model.strides": b, **z, **p}
                for a, b, z, p in itertools.product(seeds, strides, zipped, points)]
    assert n == 24 and [p.index for p in part.points] == chosen
    for point in part.points:
        want = expected[point.index]
        assert point.overrides == want and list(point.overrides) == list(want)
        assert point.run_spec.init.options.seed == want["init.seed"]
        assert point.run_spec.dynamics.options.steps == want["dynamics.steps"]
    whole = load(tmp_path, MIXED)
    assert [(p.run_id, p.run_spec) for p in part.points] == [(whole.points[i].run_id, whole.points[i].run_spec)
                                                            for i in chosen]


def test_chosen_points_are_validated_and_the_others_are_not(tmp_path):
    """Problems of the chosen points are refused naming the point (as the whole sweep names it);
    a problem at a point not chosen is not this task's (``run --indices`` validates the whole
    sweep unless ``submit`` already did: tests/test_ensemble.py); the same run twice among the
    chosen points is refused."""
    sweep = "sweep:\n  grid:\n    init.seed: [0]\n    model.strides: [[1, 1, 1], [2, 2, 1], [0, 1, 1]]\n"
    part, n = expand_some(tmp_path, sweep, [0, 1])
    assert n == 3 and [p.index for p in part.points] == [0, 1]
    with pytest.raises(SpecError) as info:
        expand_some(tmp_path, sweep, [1, 2])
    assert str(info.value) == str(refusal(tmp_path, sweep)) == (
        f"{tmp_path / 'x.yaml'}:9: sweep point 2 (init.seed=0 model.strides=[0, 1, 1]): "
        "model.strides[0]: must be a positive integer")
    # a problem every chosen point has is reported once, naming which points of how many
    with pytest.raises(SpecError) as info:
        expand_some(tmp_path, "sweep:\n  grid: {data.input_size: [6, 64], init.seed: [0, 1]}\n", [0, 1])
    (p,) = info.value.problems
    assert "larger than its input" in p.message and p.context == "all 2 sweep points 0-1 of 4"
    dup = "sweep:\n  points:\n    - {init.seed: 1.0}\n    - {init.seed: 2}\n    - {init.scale: 0.3}\n"
    expand_some(tmp_path, dup, [0, 1])  # point 2 is point 0's run: not among these
    with pytest.raises(SpecError) as info:
        expand_some(tmp_path, dup, [0, 2])
    assert "sweep points 0 (init.seed=1.0) and 2 (init.scale=0.3) are the same run" in str(info.value)
