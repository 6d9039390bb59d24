"""Reading a spec file: plain Python objects plus the line of every key.

``load_yaml(text, file)`` returns ``(data, lines)``: ``data`` the document as dicts, lists and
scalars; ``lines`` maps dotted key paths to 1-based lines, e.g. ``"model"``, ``"model.strides[1]"``,
``"sweep.grid.init.seed"`` (a key written with dots stays one segment), ``""`` for the document.

Numbers are read as researchers write them: ``1e-10``, ``1E5``, ``.5``, ``-3.0e+2`` are floats
(PyYAML's YAML 1.1 resolver wants a dot and a signed exponent and reads ``1e-10`` as a string).
Duplicate keys are an error, and so is anything that is not one mapping.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import Problem, SpecError

FLOAT_TAG = "tag:yaml.org,2002:float"
FLOAT_RE = re.compile(r"""^(?:
     [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?   # 1.  1.5  1.5e3  1.0e-10
    |[-+]?(?:[0-9][0-9_]*)[eE][-+]?[0-9]+                 # 1e-10  1E5
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?              # .5  -.5e2
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)


class SpecLoader(yaml.SafeLoader):
    """SafeLoader whose float resolver accepts every float notation numpy/Python accept."""


SpecLoader.yaml_implicit_resolvers = {
    ch: [r for r in resolvers if r[0] != FLOAT_TAG]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SpecLoader.add_implicit_resolver(FLOAT_TAG, FLOAT_RE, list("-+0123456789."))

MERGE_TAG = "tag:yaml.org,2002:merge"


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"<{node.id}>"


def _walk(node, path: str, lines: dict[str, int], problems: list[Problem], file, stack: set):
    if id(node) in stack:  # a recursive alias
        return
    stack = stack | {id(node)}
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for k, v in node.value:
            if k.tag == MERGE_TAG:
                continue
            name = _key_text(k)
            child = f"{path}.{name}" if path else name
            line = k.start_mark.line + 1
            if name in seen:
                problems.append(Problem(file, line, child, f"duplicate key (first at line {seen[name]})"))
                continue
            seen[name] = line
            lines[child] = line
            _walk(v, child, lines, problems, file, stack)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}[{i}]"
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines, problems, file, stack)


def load_yaml(text: str, file: str | None = None) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse one YAML mapping; return ``(data, lines)`` or raise :class:`SpecError`."""
    loader = SpecLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError([Problem(file, None, "", "the spec is empty (expected a mapping of keys)")])
        lines: dict[str, int] = {"": node.start_mark.line + 1}
        problems: list[Problem] = []
        _walk(node, "", lines, problems, file, set())
        if problems:
            raise SpecError(problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        what = " ".join(p for p in (err.context, err.problem) if p)
        raise SpecError([Problem(file, mark.line + 1 if mark else None, "",
                                 f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as err:
        raise SpecError([Problem(file, None, "", f"YAML error: {err}")]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise SpecError([Problem(file, lines[""], "",
                                 f"the spec must be a mapping of keys, not a {type(data).__name__}")])
    return data, lines


def read_yaml_file(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """:func:`load_yaml` of a file; a missing file or a directory is a :class:`SpecError`."""
    p = Path(path)
    if not p.exists():
        raise SpecError([Problem(str(path), None, "", "no such file")])
    if not p.is_file():
        raise SpecError([Problem(str(path), None, "", "is a directory, not a spec file")
                         if p.is_dir() else Problem(str(path), None, "", "is not a regular file")])
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError([Problem(str(path), None, "", f"cannot read: {err}")]) from None
    return load_yaml(text, str(path))
