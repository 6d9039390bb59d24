"""``flatten_spec_text`` (entry by entry, cached) equals the whole-text parse it stands for,
``flatten(yaml.load(text, Loader=CSafeLoader) or {})``, the parse ``lcnrun diff`` made of each
run's spec: the same keys in the same order, the same values and types, the same error.

Texts: the resolved spec of every point of every spec file shipped (``experiments/``,
``examples/``, the figures' specs) as a run file stores it, every YAML mapping written in the
test suite, and texts made to confuse a cut into entries (values YAML 1.1 resolves in surprising
ways, duplicate keys, anchors, merges, documents, directives, odd line breaks).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from sameness import assert_same

from lcnrun.runner import _spec_text
from lcnrun.spec import load_experiment
from lcnrun.store.specflat import flatten, flatten_spec_text

REPO = Path(__file__).resolve().parents[1]
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def whole(text: str) -> dict:
    return flatten(yaml.load(text, Loader=LOADER) or {})


def assert_parses_like_the_whole(text: str) -> None:
    try:
        want = whole(text)
    except yaml.YAMLError as err:
        with pytest.raises(yaml.YAMLError) as got:
            flatten_spec_text(text)
        assert (type(got.value), str(got.value)) == (type(err), str(err)), text
        return
    assert_same(flatten_spec_text(text), want, repr(text))
    assert_same(flatten_spec_text(text), want, repr(text))  # again: from the cache


def shipped_spec_texts() -> list[str]:
    files = [*sorted((REPO / "experiments").glob("*.yaml")), *sorted((REPO / "examples").glob("*.yaml")),
             *sorted((REPO / "lcnrun" / "figures" / "specs").glob("*.yaml"))]
    assert len(files) > 10
    return [_spec_text(p.run_spec) for f in files for p in load_experiment(f).points]


def test_suite_texts() -> list[str]:
    """Every string literal of the other test modules that YAML reads as a mapping."""
    out = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        if path.name == Path(__file__).name:
            continue  # this module's texts are the confusing ones, tested one by one
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and ":" in node.value:
                try:
                    if isinstance(yaml.load(node.value, Loader=LOADER), dict):
                        out.append(node.value)
                except yaml.YAMLError:
                    pass
    return out


test_suite_texts.__test__ = False  # a helper, not a test

CONFUSING = [
    # values YAML 1.1 resolves: floats, ints, bools, nulls, dates, nested lists
    "lr: 1e-3\nb: 1.0e-3\nc: .inf\nd: -.Inf\ne: .nan\nf: 0x10\ng: 0o17\nh: 017\ni: 1_000\n"
    "j: 190:20:30\nk: yes\nl: No\nm: on\nn: ~\no: null\np: 2001-12-14\n"
    "q: 2001-12-14t21:59:43.10-05:00\nr: [[1, [2, []]], {}]\ns: '1e-3'\nt: !!str 5\n",
    "model:\n  filters:\n  - - 3\n    - 3\n  kind: lcn\nx: {}\ny: {a: {}}\n",
    "a: |\n  text\n\n   more\nb: >-\n  folded\n  lines\nc: 'quoted\n\n  on: lines'\n",
    # keys: numbers, bools, dates, a null; equal keys of different spelling
    "1: a\n2.5: b\ntrue: c\n2001-01-01: d\nnull: e\n",
    "1: a\n1.0: b\n", "yes: a\ntrue: b\n", "1: a\n0x1: b\n", "y: 1\nn: 2\nY: 3\n",
    # duplicate keys: the whole keeps the last value at the first position
    "a: {x: 1}\nb: 2\na: {y: 2}\n", "a: 1\nb: 2\na: 3\n", "a: {x: 1}\na: 3\n",
    # anchors and aliases: within an entry, across entries, defined twice
    "a: &x [1, 2]\nb: *x\n", "a: &x 1\nb: &x 2\n", "a: {p: &x 1, q: *x}\n", "b: *x\n",
    # merge keys (at the top and inside an entry)
    "b: 2\n<<: {a: 1}\n", "a: 5\n<<: {a: 1}\n", "base: &b {x: 1}\nd: {<<: *b, y: 2}\n",
    # documents, directives, markers
    "a: 1\n---\nb: 2\n", "---\na: 1\n", "a: 1\n...\n", "a: 1\n...\nb: 2\n", "%YAML 1.1\n---\na: 1\n",
    "--- !!map\na: 1\n", "a: 1\n--- \n",
    # keys of other kinds
    "'quoted': 1\nb: 2\n", '"a b": 1\n', "? a\n: 1\nb: 2\n", "!!str a: 1\n", "&k a: 1\nb: *k\n",
    # not one entry per line: flow documents, values continued at column 0, lists, scalars
    "{a: 1, b: 2}\n", "[1, 2]\n", "x: [1,\n2]\ny: 3\n", 'a: "x\nb: y"\n', "a: 'x\nb: y'\n",
    "a: x\nb\n", "a:\n- 1\n- [2,\n3]\n", "a:\n- 1\nb:\n  - 2\n", "just text\n", "- a\n- b\n",
    "abc\n  def\n", "a: b: c\n", "a: 1\n b: 2\n", "a:\n  b: 1\n c: 2\n",
    # comments, blank lines, odd line breaks, tabs, characters YAML refuses
    "# head\na: 1\n", "a: 1 # c\n# c\n\nb: 2\n", "\n\na: 1\n", "a: 1\r\nb: {c: 2}\r\n",
    "a: 1\rb: 2\r", "a: x\x85b: y\n", "a: x\u2028b: y\n", "a: x\x0cb: y\n", "a: x\x1cb: y\n",
    "a:\n\tb: 1\n", "\ta: 1\n", "\ufeffa: 1\n", "a: \x00\n", "a: 1\n\x0b", "",
    "   \n", "# only a comment\n", "~\n", "a: {b: &c d}\ne: *c\n",
]


@pytest.mark.parametrize("text", CONFUSING, ids=range(len(CONFUSING)))
def test_confusing_texts_parse_like_the_whole(text):
    assert_parses_like_the_whole(text)


def test_every_shipped_spec_as_a_run_file_stores_it():
    texts = shipped_spec_texts()
    assert len(texts) > 100
    for text in texts:
        assert_parses_like_the_whole(text)


def test_every_mapping_written_in_the_test_suite():
    texts = test_suite_texts()
    assert len(texts) > 50
    for text in texts:
        assert_parses_like_the_whole(text)
