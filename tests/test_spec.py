"""The spec layer: YAML reading, validation errors (file, line, dotted key), defaults, run ids."""
from __future__ import annotations

import copy
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from lcnrun.core.options import Section
from lcnrun.spec import SpecError, load_experiment, load_run_spec_text, resolved_dict, run_id
from lcnrun.spec.yamlio import load_yaml

ROOT = Path(__file__).resolve().parents[1]

# A valid spec; each bad case replaces one line (1-based), so the expected line numbers are literal.
BASE = [
    "name: demo",                                                            # 1
    "model:",                                                                # 2
    "  kind: lcn",                                                           # 3
    "  filters: [4, 3, 2]",                                                  # 4
    "  strides: [2, 2, 1]",                                                  # 5
    "data: {kind: gaussian, n_samples: 16, input_size: 64, seed: 0}",        # 6
    "init: {kind: gaussian, scale: 0.3, seed: 1}",                           # 7
    "dynamics: {kind: gradient_descent, lr: 0.01, steps: 100}",              # 8
]


def spec_text(**replace: str) -> str:
    """BASE with line ``l<n>`` replaced (``l9=...`` appends a line 9)."""
    lines = list(BASE)
    for k, v in sorted(replace.items(), key=lambda kv: int(kv[0][1:])):
        n = int(k[1:])
        if n <= len(lines):
            lines[n - 1] = v
        else:
            lines.append(v)
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def problems_of(path: Path):
    with pytest.raises(SpecError) as info:
        load_experiment(path)
    return info.value.problems


def load_run(tmp_path, text, name="x.yaml"):
    return load_experiment(write(tmp_path, text, name)).points[0].run_spec


# -------------------------------------------------------------------------------------------------
# YAML reading
@pytest.mark.parametrize("text, value", [
    ("1e-10", 1e-10), ("1E5", 1e5), (".5", 0.5), ("-3.0e+2", -300.0), ("-.5", -0.5), ("+2e3", 2000.0),
    ("1.0e-12", 1e-12), ("3.", 3.0), ("1_000.5", 1000.5),
])
def test_floats_are_read_as_researchers_write_them(text, value):
    data, _ = load_yaml(f"x: {text}\n")
    assert type(data["x"]) is float and data["x"] == value


def test_other_scalars_keep_their_yaml_types():
    data, _ = load_yaml("a: 1\nb: 1_000\nc: e5\nd: 1e\ne: true\nf: .inf\ng: '1e-10'\nh: null\n")
    assert data["a"] == 1 and type(data["a"]) is int
    assert data["b"] == 1000 and type(data["b"]) is int
    assert data["c"] == "e5" and data["d"] == "1e" and data["e"] is True
    assert data["f"] == math.inf and data["g"] == "1e-10" and data["h"] is None
    # the plain SafeLoader is unchanged (our resolver lives on a subclass)
    assert yaml.safe_load("x: 1e-10")["x"] == "1e-10"


def test_line_numbers_of_nested_keys_and_list_items():
    text = ("name: demo\n"          # 1
            "model:\n"              # 2
            "  kind: lcn\n"         # 3
            "  filters:\n"          # 4
            "    - 4\n"             # 5
            "    - [3, 3]\n"        # 6
            "sweep:\n"              # 7
            "  grid:\n"             # 8
            "    init.seed:\n"      # 9
            "      - 0\n"           # 10
            "      - 1\n")          # 11
    data, lines = load_yaml(text)
    assert data["model"]["filters"] == [4, [3, 3]]
    assert lines["name"] == 1 and lines["model"] == 2 and lines["model.kind"] == 3
    assert lines["model.filters"] == 4 and lines["model.filters[0]"] == 5
    assert lines["model.filters[1]"] == 6 and lines["model.filters[1][1]"] == 6
    assert lines["sweep.grid"] == 8 and lines["sweep.grid.init.seed"] == 9
    assert lines["sweep.grid.init.seed[1]"] == 11


@pytest.mark.parametrize("text, line, fragment", [
    ("name: a\nmodel:\n  kind: lcn\n  filters: [4, 3, 2]]\n", 4, "YAML syntax error"),
    ("name: a\nmodel: {kind: lcn\ndata: 3\n", 3, "YAML syntax error"),
    ("name: a\n\tmodel: x\n", 2, "YAML syntax error"),
    ("- 1\n- 2\n", 1, "must be a mapping"),
    ("just a string\n", 1, "must be a mapping"),
    ("", None, "empty"),
])
def test_unreadable_specs(tmp_path, text, line, fragment):
    (p,) = problems_of(write(tmp_path, text))
    assert p.line == line and fragment in p.message and p.file.endswith("x.yaml")


def test_missing_file_and_directory(tmp_path):
    (p,) = problems_of(tmp_path / "nope.yaml")
    assert "no such file" in p.message
    (p,) = problems_of(tmp_path)
    assert "directory" in p.message


# -------------------------------------------------------------------------------------------------
# bad specs: each names the dotted key and its line
@pytest.fixture
def npz_files(tmp_path):
    np.savez(tmp_path / "data.npz", X=np.ones((5, 64)), Y=np.ones((5, 14)))
    np.savez(tmp_path / "init.npz", layer_0=np.ones(4), layer_1=np.ones(3), layer_2=np.ones(2))
    return tmp_path


BAD = {
    "unknown top-level key": (dict(l8="dynamic: {kind: gradient_descent, lr: 0.01, steps: 100}"),
                              "dynamic", 8, "unknown top-level key 'dynamic' (did you mean 'dynamics'?)"),
    "unknown model kind": (dict(l3="  kind: lcm"), "model.kind", 3, "unknown kind 'lcm' (did you mean 'lcn'?); known kinds: dense, lcn"),
    "unknown option with suggestion": (dict(l5="  stride: [2, 2, 1]"), "model.stride", 5, "did you mean 'strides'?"),
    "missing filters": (dict(l4="  # no filters"), "model.filters", 2, "is required"),
    "zero stride": (dict(l5="  strides: [2, 0, 1]"), "model.strides[1]", 5, "must be a positive integer"),
    "non-integer filter": (dict(l4="  filters: [4, 2.5, 2]"), "model.filters[1]", 4, "must be a positive integer"),
    "strides length": (dict(l5="  strides: [2, 2]"), "model.strides", 5, "has 2 entries but there are 3 filters"),
    "mixed 1-D/2-D filters": (dict(l4="  filters: [4, [3, 3], 2]", l5="  strides: null"),
                              "model.filters[1]", 4, "has 2 axes but filters[0] has 1"),
    "filter longer than input": (dict(l4="  filters: [70]", l5="  strides: [1]"), "model.filters[0]", 4,
                                 "size 70 is larger than its input 64 (input size 64)"),
    "input too short for a later layer": (dict(l6="data: {kind: gaussian, input_size: 8}"), "model.filters[2]", 4,
                                          "is larger than its input"),
    "teacher output mismatch": (dict(l6="data: {input_size: 64, target: {kind: teacher, model: "
                                        "{kind: lcn, filters: [3]}}}"),
                                "data.target.model", 6, "does not match the network's output shape [14]"),
    "teacher unknown kind": (dict(l6="data: {input_size: 64, target: {kind: teachr}}"), "data.target.kind", 6,
                             "did you mean 'teacher'?"),
    "lcn without input size": (dict(l6="data: {kind: gaussian}"), "data.input_size", 6, "is required for an lcn"),
    "bool where int": (dict(l6="data: {kind: gaussian, n_samples: true, input_size: 64}"), "data.n_samples", 6,
                       "must be an integer, not the boolean true"),
    "float where int": (dict(l8="dynamics: {kind: gradient_descent, lr: 0.01, steps: 2.5}"), "dynamics.steps", 8,
                        "must be an integer"),
    "string where float": (dict(l8="dynamics: {kind: gradient_descent, lr: fast, steps: 100}"), "dynamics.lr", 8,
                           "must be a number, not the string 'fast'"),
    "negative lr": (dict(l8="dynamics: {kind: gradient_descent, lr: -1e-2, steps: 100}"), "dynamics.lr", 8,
                    "must be positive"),
    "missing lr": (dict(l8="dynamics: {kind: gradient_descent, steps: 100}"), "dynamics.lr", 8, "is required"),
    "unknown method": (dict(l8="dynamics: {kind: gradient_flow, t_max: 1, method: DOP854}"), "dynamics.method", 8,
                       "must be one of RK45, RK23, DOP853"),
    "missing dynamics": (dict(l8="# none"), "dynamics", 1, "is required"),
    "record choice": (dict(l9="record: {spacing: logarithmic}"), "record.spacing", 9, "must be one of log, linear"),
    "bad name": (dict(l1="name: my experiment"), "name", 1, "must be letters"),
    "unknown diagnostic": (dict(l9="diagnostics: [curvature]"), "diagnostics[0]", 9, "unknown diagnostic"),
    "lp exponent": (dict(l9="loss: {kind: lp, p: 0.5}"), "loss.p", 9, "must be at least 1"),
    "missing data file": (dict(l6="data: {kind: file, path: missing.npz}"), "data.path", 6, "file not found"),
    "data file of the wrong shape": (dict(l5="  strides: [1, 1, 1]", l6="data: {kind: file, path: data.npz}"),
                                     "data.path", 6, "Y has sample shape [14]"),
    "explicit init layer shape": (dict(l7="init: {kind: explicit, layers: [[1, 2, 3, 4], [1, 2], [1, 2]]}"),
                                  "init.layers[1]", 7, "layer_1 has shape [2] but the model needs [3]"),
    "explicit init layer count": (dict(l7="init: {kind: explicit, layers: [[1, 2, 3, 4]]}"),
                                  "init.layers", 7, "has 1 layers but the model has 3"),
    "ragged explicit layer": (dict(l7="init: {kind: explicit, layers: [[1, 2, 3, 4], [[1], [1, 2]], [1, 2]]}"),
                              "init.layers[1]", 7, "rectangular"),
    "init file missing layer": (dict(l4="  filters: [4, 3, 2, 2]", l5="  strides: [2, 2, 1, 1]",
                                     l7="init: {kind: file, path: init.npz}"), "init.path", 7, "lacks 'layer_3'"),
    "duplicate key": (dict(l9="model: {kind: dense, widths: [2, 1]}"), "model", 9, "duplicate key (first at line 2)"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_spec_names_key_and_line(npz_files, case):
    replace, key, line, fragment = BAD[case]
    path = write(npz_files, spec_text(**replace))
    problems = problems_of(path)
    hits = [p for p in problems if p.key == key]
    assert hits, f"no problem at {key}: {[str(p) for p in problems]}"
    p = hits[0]
    assert p.line == line and fragment in p.message, str(p)
    assert str(p) == f"{path}:{line}: {key}: {p.message}"


def test_broken_files_are_reported_with_their_own_message(npz_files):
    np.savez(npz_files / "no_y.npz", X=np.ones((5, 64)))
    (p,) = problems_of(write(npz_files, spec_text(l6="data: {kind: file, path: no_y.npz}")))
    assert (p.key, p.line) == ("data.path", 6)
    assert p.message == f"{npz_files / 'no_y.npz'} lacks 'Y' (has ['X'])"
    (npz_files / "text.npz").write_text("not numbers")
    (p,) = problems_of(write(npz_files, spec_text(l7="init: {kind: file, path: text.npz}")))
    assert (p.key, p.line) == ("init.path", 7) and "is not a numpy .npz file" in p.message


def test_error_text_of_an_impossible_architecture(tmp_path):
    path = write(tmp_path, spec_text(l4="  filters: [70]", l5="  strides: [1]"))
    with pytest.raises(SpecError) as info:
        load_experiment(path)
    assert str(info.value) == f"{path}:4: model.filters[0]: size 70 is larger than its input 64 (input size 64)"


def test_all_problems_are_reported(tmp_path):
    text = spec_text(l1="name: ok", l5="  strides: [2, 0, 1]", l7="init: {kind: gaussian, scael: 1}",
                     l8="dynamics: {kind: gradient_descent, lr: -1, steps: 0}", l9="colour: red")
    keys = {(p.key, p.line) for p in problems_of(write(tmp_path, text))}
    assert keys == {("model.strides[1]", 5), ("init.scael", 7), ("dynamics.lr", 8), ("dynamics.steps", 8),
                    ("colour", 9)}


def test_paths_are_relative_to_the_spec_file(npz_files):
    sub = npz_files / "sub"
    sub.mkdir()
    text = spec_text(l6="data: {kind: file, path: ../data.npz}")
    run = load_run(sub, text)
    assert Path(run.data.options.path) == (npz_files / "data.npz").resolve()
    assert Path(run.data.options.path).is_absolute()


# -------------------------------------------------------------------------------------------------
# defaults and canonical form
def test_defaults_are_filled(tmp_path):
    run = load_run(tmp_path, "name: d\nmodel: {kind: dense, widths: [3, 2]}\n"
                             "dynamics: {kind: gradient_flow, t_max: 2}\n")
    assert run.data.kind == "gaussian" and run.data.options.n_samples == 64
    assert run.data.options.input_size is None and run.data.options.target.kind == "teacher"
    assert run.init == Section("gaussian", run.init.options) and run.init.options.scale == 0.1
    assert run.loss.kind == "square"
    assert run.dynamics.options.t_max == 2.0 and type(run.dynamics.options.t_max) is float
    assert run.dynamics.options.method == "DOP853" and run.dynamics.options.rtol == 1e-10
    assert run.dynamics.options.divergence_factor == 1e8 and run.dynamics.options.loss_below is None
    assert run.record.points == 200 and run.record.spacing == "log" and run.record.params is True
    assert run.diagnostics == () and run.description == ""
    assert run.model.options.widths == (3, 2)

    d = resolved_dict(run)
    assert d["init"] == {"kind": "gaussian", "scale": 0.1, "seed": 0}
    assert d["data"]["target"] == {"kind": "teacher", "model": None, "scale": 1.0}
    assert d["record"] == {"points": 200, "spacing": "log", "t_min": None, "params": True,
                           "checkpoint_every": None}
    assert d["model"] == {"kind": "dense", "widths": [3, 2]} and d["loss"] == {"kind": "square"}


ROUND_TRIP = [
    spec_text(),
    spec_text(l6="data: {input_size: 64, noise: 0.1, target: {kind: teacher, scale: 2, "
                 "model: {kind: lcn, filters: [4, 3], strides: [4, 1]}}}",
              l9="record: {points: 17, spacing: linear, params: false}", l10="description: the \"x\" run"),
    "name: dl\nmodel: {kind: dense, widths: [3, 4, 2]}\ninit: {kind: balanced, scale: 1e-3, seed: 7}\n"
    "data: {kind: function_space, target: {kind: end_to_end, value: [[1, 2, 3], [-0.0, 5, 6e-30]]}}\n"
    "loss: {kind: pseudo_huber, delta: 2}\n"
    "dynamics: {kind: gradient_flow, t_max: 1e3, loss_below: 1e-12, method: Radau}\n",
    "name: lcn2d\nmodel: {kind: lcn, filters: [[3, 3], [2, 2]], strides: [[2, 2], 1]}\n"
    "data: {kind: file, path: data2d.npz}\ninit: {kind: file, path: init2d.npz}\n"
    "dynamics: {kind: gradient_descent, lr: 0.5, steps: 3}\n",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip_through_the_run_file_text(tmp_path, text):
    np.savez(tmp_path / "data2d.npz", X=np.ones((2, 8, 8)), Y=np.ones((2, 2, 2)))
    np.savez(tmp_path / "init2d.npz", layer_0=np.ones((3, 3)), layer_1=np.ones((2, 2)))
    run = load_run(tmp_path, text)
    stored = yaml.safe_dump(resolved_dict(run), sort_keys=True)
    again = load_run_spec_text(stored)
    assert again == run
    assert resolved_dict(again) == resolved_dict(run) and run_id(again) == run_id(run)
    # a run file read where its data files are gone still parses
    if run.data.kind == "file":
        for f in tmp_path.glob("*.npz"):
            f.unlink()
        with pytest.raises(SpecError):
            load_run_spec_text(stored)
        assert load_run_spec_text(stored, check_files=False) == run


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_run_file_text_is_the_yaml_dump_of_the_resolved_dict(tmp_path, text):
    """What a run file stores (``runner._spec_text``, made key by key from a memo) is
    ``yaml.safe_dump(resolved_dict(run), sort_keys=True)``, a first time and from the memo."""
    from lcnrun.runner import _spec_text

    np.savez(tmp_path / "data2d.npz", X=np.ones((2, 8, 8)), Y=np.ones((2, 2, 2)))
    np.savez(tmp_path / "init2d.npz", layer_0=np.ones((3, 3)), layer_1=np.ones((2, 2)))
    run = load_run(tmp_path, text)
    want = yaml.safe_dump(resolved_dict(run), sort_keys=True)
    assert _spec_text(run) == want and _spec_text(run) == want


def test_run_file_text_tells_values_of_equal_text_apart(monkeypatch):
    """The memo of ``_spec_text`` never gives one value's text for another: 1, 1.0, true, "1",
    [1], {"1": 1}, null, nan and -0.0 each get their own YAML, in any order; a list met twice
    is YAML's anchor and alias."""
    from lcnrun import runner

    values = [1, 1.0, True, "1", [1], {"1": 1}, None, float("nan"), -0.0, 0.0, "ü ✓", [[1.5e-300]],
              {"b": 2, "a": [True, "x"]}, {"a": [True, "x"], "b": 2}]
    dicts = [{"zeta": copy.deepcopy(v), "alpha": copy.deepcopy(w)} for v in values for w in values[::-1]]
    shared = [1, 2]
    dicts += [{"a": shared, "b": shared}, {"a": {"x": shared}, "b": [shared]}, {"a": [1, 2], "b": [1, 2]}]
    for d in dicts + dicts[::-1]:
        monkeypatch.setattr(runner, "resolved_dict", lambda _run, d=d: d)
        assert runner._spec_text(None) == yaml.safe_dump(d, sort_keys=True)


def test_run_file_text_of_the_figures_points():
    """``_spec_text`` against the full dump, for points of every figure spec (a memo shared by
    all, as one worker process of a sweep shares it)."""
    from lcnrun.runner import _spec_text

    for path in sorted((Path(__file__).resolve().parents[1] / "lcnrun" / "figures" / "specs").glob("*.yaml")):
        points = load_experiment(path).points
        for point in points[::max(1, len(points) // 40)]:
            want = yaml.safe_dump(resolved_dict(point.run_spec), sort_keys=True)
            assert _spec_text(point.run_spec) == want, (path.name, point.index)


def test_run_file_text_refuses_a_sweep():
    with pytest.raises(SpecError, match="a run spec has no sweep"):
        load_run_spec_text(spec_text(l9="sweep: {grid: {init.seed: [1, 2]}}"))


# -------------------------------------------------------------------------------------------------
# run ids
def test_run_id_follows_the_documented_rule(npz_files):
    run = load_run(npz_files, spec_text(l6="data: {kind: file, path: data.npz}"))
    d = resolved_dict(run)
    del d["name"], d["description"]
    d["data"]["path"] = "sha256:" + hashlib.sha256((npz_files / "data.npz").read_bytes()).hexdigest()
    assert d["record"].pop("checkpoint_every") is None  # a run setting (step 4)
    text = json.dumps(d, sort_keys=True, separators=(",", ":"))
    assert run_id(run) == hashlib.sha256(text.encode()).hexdigest()[:12]
    # the run setting is kept in the resolved spec but is not part of the id
    kept = load_run(npz_files, spec_text(l6="data: {kind: file, path: data.npz}",
                                         l9="record: {checkpoint_every: 60}"), "kept.yaml")
    assert resolved_dict(kept)["record"]["checkpoint_every"] == 60.0
    assert run_id(kept) == run_id(run)
    assert len(run_id(run)) == 12 and int(run_id(run), 16) >= 0


def test_run_id_is_identity_from_content(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = load_run(tmp_path / "a", spec_text(), "one.yaml")
    reordered = ("dynamics: {steps: 100, lr: 1.0e-2, kind: gradient_descent}\n"
                 "init: {seed: 1, scale: 0.3}\n"
                 "data: {seed: 0, input_size: 64, n_samples: 16}\n"
                 "description: another experiment\n"
                 "model: {strides: [2, 2, 1], filters: [4, 3, 2], kind: lcn}\n"
                 "loss: {kind: square}\n"
                 "record: {points: 200}\n"
                 "name: other-name\n")
    second = load_run(tmp_path / "b", reordered, "two.yaml")
    assert second != first  # name and description differ ...
    assert run_id(second) == run_id(first)  # ... but the run is the same

    ints = load_run(tmp_path, spec_text(l7="init: {kind: gaussian, scale: 0.3, seed: 1.0}",
                                        l8="dynamics: {kind: gradient_flow, t_max: 50, rtol: 0.0000000001}"))
    floats = load_run(tmp_path, spec_text(l8="dynamics: {kind: gradient_flow, t_max: 50.0, rtol: 1e-10}"))
    assert run_id(ints) == run_id(floats)
    zero = load_run(tmp_path, spec_text(l7="init: {kind: gaussian, scale: -0.0, seed: 1}"))
    plus = load_run(tmp_path, spec_text(l7="init: {kind: gaussian, scale: 0, seed: 1}"))
    assert run_id(zero) == run_id(plus)


def test_run_id_changes_with_the_run(npz_files):
    base = load_run(npz_files, spec_text())
    lr = load_run(npz_files, spec_text(l8="dynamics: {kind: gradient_descent, lr: 0.02, steps: 100}"))
    rec = load_run(npz_files, spec_text(l9="record: {points: 201}"))
    assert len({run_id(base), run_id(lr), run_id(rec)}) == 3

    text = spec_text(l6="data: {kind: file, path: data.npz}")
    before = run_id(load_run(npz_files, text))
    moved = npz_files / "elsewhere"
    moved.mkdir()
    (moved / "data.npz").write_bytes((npz_files / "data.npz").read_bytes())
    assert run_id(load_run(moved, text)) == before  # same content elsewhere: same id
    np.savez(npz_files / "data.npz", X=np.ones((5, 64)), Y=2 * np.ones((5, 14)))
    assert run_id(load_run(npz_files, text)) != before  # changed content: new id


def test_spec_layer_does_not_import_cli_or_storage_libraries():
    code = ("import sys, lcnrun.spec; bad = {'typer', 'rich', 'h5py'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
