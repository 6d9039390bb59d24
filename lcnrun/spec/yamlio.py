"""Reading a spec file: plain Python objects plus the line of every key.

``load_yaml(text, file)`` returns ``(data, lines)``: ``data`` the document as dicts, lists and
scalars; ``lines`` maps dotted key paths to 1-based lines, e.g. ``"model"``, ``"model.strides[1]"``,
``"sweep.grid.init.seed"`` (a key written with dots stays one segment), ``""`` for the document.

Numbers are read as researchers write them: ``1e-10``, ``1E5``, ``.5``, ``-3.0e+2`` are floats
(PyYAML's YAML 1.1 resolver wants a dot and a signed exponent and reads ``1e-10`` as a string).
Duplicate keys are an error, and so is anything that is not one mapping.

Hostile documents are errors, not hangs or tracebacks: aliases may add at most
:data:`MAX_ALIAS_NODES` nodes to the document as written (a "billion laughs" document of 1 KB
would expand to 10**9), an alias may not contain itself, and nesting deeper than Python's
recursion allows, control characters and undecodable bytes are one message each.
"""
from __future__ import annotations

import errno
import re
import stat
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
#: how many nodes YAML aliases may add to a document (each alias repeats its anchor's subtree):
#: the expanded document is then at most this much larger than the text as written
MAX_ALIAS_NODES = 100_000
#: deepest nesting of flow collections (``[`` ``{``) read; PyYAML's scanner is quadratic in it and
#: its composer recursive (5000 levels: seconds, then a RecursionError)
MAX_FLOW_DEPTH = 100
_BRACKET_RE = re.compile(r"[\[\]{}]")


def _flow_depth(text: str) -> tuple[int, int]:
    """``(deepest bracket nesting, its offset)``, counting every bracket (also in quoted strings:
    an over-estimate, which only matters for strings of a hundred unbalanced brackets)."""
    depth = deepest = at = 0
    for m in _BRACKET_RE.finditer(text):
        if m.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest, at = depth, m.start()
        else:
            depth = max(0, depth - 1)
    return deepest, at


def _expanded_sizes(root: yaml.Node, file) -> tuple[int, int]:
    """``(distinct nodes, nodes with every alias expanded)`` of a composed document, in time linear
    in the distinct nodes (sizes memoised by node identity); a node that contains itself through
    an alias is a :class:`SpecError`."""
    size: dict[int, int] = {}
    open_: set[int] = set()

    def visit(node) -> int:
        key = id(node)
        if key in size:
            return size[key]
        if key in open_:
            raise SpecError([Problem(file, node.start_mark.line + 1, "",
                                     "a YAML alias refers to a node that contains it (a recursive "
                                     "alias cannot be expanded)")])
        open_.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += visit(k) + visit(v)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += visit(item)
        open_.discard(key)
        size[key] = total
        return total

    expanded = visit(root)
    return len(size), expanded


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"<{node.id}>"


def _walk(node, path: str, lines: dict[str, int], problems: list[Problem], file):
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
            _walk(v, child, lines, problems, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}[{i}]"
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines, problems, file)


def load_yaml(text: str, file: str | None = None) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse one YAML mapping; return ``(data, lines)`` or raise :class:`SpecError`."""
    deepest, at = _flow_depth(text)
    if deepest > MAX_FLOW_DEPTH:
        raise SpecError([Problem(file, text.count("\n", 0, at) + 1, "",
                                 f"the spec nests lists or mappings {deepest} levels deep (at most "
                                 f"{MAX_FLOW_DEPTH})")])
    loader = None
    try:
        loader = SpecLoader(text)  # the reader refuses control characters here already
        node = loader.get_single_node()
        if node is None:
            raise SpecError([Problem(file, None, "", "the spec is empty (expected a mapping of keys)")])
        distinct, expanded = _expanded_sizes(node, file)
        if expanded - distinct > MAX_ALIAS_NODES:
            raise SpecError([Problem(file, None, "", f"YAML aliases expand this spec to {expanded:,} "
                                     f"nodes ({distinct:,} as written); at most {MAX_ALIAS_NODES:,} "
                                     "more than written are allowed")])
        lines: dict[str, int] = {"": node.start_mark.line + 1}
        problems: list[Problem] = []
        _walk(node, "", lines, problems, file)
        if problems:
            raise SpecError(problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        what = " ".join(p for p in (err.context, err.problem) if p)
        raise SpecError([Problem(file, mark.line + 1 if mark else None, "",
                                 f"YAML syntax error: {what}")]) from None
    except yaml.reader.ReaderError as err:  # a control character, a byte that is not text
        char = err.character if isinstance(err.character, int) else ord(err.character or "\0")
        raise SpecError([Problem(file, text.count("\n", 0, err.position) + 1, "",
                                 f"character #x{char:04x} is not allowed in a spec "
                                 f"({err.reason})")]) from None
    except yaml.YAMLError as err:
        raise SpecError([Problem(file, None, "", f"YAML error: {err}")]) from None
    except RecursionError:
        raise SpecError([Problem(file, None, "", "the spec is nested too deeply (hundreds of levels "
                                 "of mappings or lists)")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        raise SpecError([Problem(file, lines[""], "",
                                 f"the spec must be a mapping of keys, not a {type(data).__name__}")])
    return data, lines


def read_yaml_file(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """:func:`load_yaml` of a file; a missing file, a loop of symbolic links, a directory, a
    FIFO or a device, bytes that are not UTF-8 are each a :class:`SpecError`."""
    p = Path(path)
    try:
        mode = p.stat().st_mode  # follows links: a loop is ELOOP, not "no such file"
    except FileNotFoundError:
        message = ("is a symbolic link to a missing file" if p.is_symlink() else "no such file")
        raise SpecError([Problem(str(path), None, "", message)]) from None
    except OSError as err:
        words = ("is a loop of symbolic links" if err.errno == errno.ELOOP
                 else f"cannot read: {err.strerror or err}")
        raise SpecError([Problem(str(path), None, "", words)]) from None
    if not stat.S_ISREG(mode):  # never open a FIFO (it would block) or a device
        raise SpecError([Problem(str(path), None, "", "is a directory, not a spec file")
                         if stat.S_ISDIR(mode) else Problem(str(path), None, "", "is not a regular file")])
    try:
        data = p.read_bytes()
    except OSError as err:
        raise SpecError([Problem(str(path), None, "", f"cannot read: {err.strerror or err}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError([Problem(str(path), data.count(b"\n", 0, err.start) + 1, "",
                                 f"not UTF-8 text (byte {data[err.start]:#04x} at offset "
                                 f"{err.start}): a spec is a YAML text file")]) from None
    return load_yaml(text, str(path))
