"""The package's architecture, read from the source (``ast``, every import including the lazy ones
inside functions), so that docs/architecture.md stays true:

- imports point one way: ``cli -> figures -> schedule/report -> workflow -> runner -> spec/store ->
  provenance/interrupt -> core`` (a package may import its own modules and any layer below, never one above
  nor a sibling package of its layer), and nobody imports another package's private names;
- one home per model family: outside ``lcnrun/core/models`` no code imports a family's class, asks
  ``isinstance`` of one, probes a model with ``hasattr``, or compares a kind or name with a family's
  registry name: what differs between families is in the model contract
  (:mod:`lcnrun.core.models.base`), and a dynamics or diagnostic that only makes sense for some
  families says so in its ``models`` declaration.

The checks are exercised on small sources too (a rule that cannot fail protects nothing).
"""
from __future__ import annotations

import ast
import functools
import inspect
from pathlib import Path

import pytest

from lcnrun.core.models import MODELS, Model

PACKAGE = Path(__file__).resolve().parents[1] / "lcnrun"

#: top to bottom; a module may import its own package and the layers below its own
LAYERS: list[tuple[str, ...]] = [
    ("cli", "api"),  # the command line and the Python API (lcnrun.open, lcnrun.run): both at the top
    ("figures",),
    ("schedule", "report"),
    ("workflow",),
    ("runner", "policy"),  # policy: should this point run? (reads run files; workflow, schedule, cli use it)
    ("spec", "store"),
    ("provenance", "interrupt"),  # process-wide utilities (stdlib only)
    ("core",),
    ("",),  # lcnrun/__init__.py: the version
]

#: (importer, imported) pairs that break the rule today, each with the change that removes it
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {
}

#: the only place that may branch on model families
MODELS_PACKAGE = "lcnrun.core.models"

#: figure modules that still compare a model kind with a family name (being rewritten elsewhere)
FAMILY_NAME_EXCEPTIONS: set[str] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@functools.lru_cache(maxsize=None)
def modules() -> dict[str, tuple[Path, ast.Module]]:
    return {module_name(p): (p, ast.parse(p.read_text(), str(p))) for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, tree: ast.AST) -> list[tuple[str, list[str], int]]:
    """``(imported module, imported names, line)`` of every import of an ``lcnrun`` module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "lcnrun" or target.startswith("lcnrun."):
                out.append((target, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "lcnrun"]
    return out


def layer_of(module: str) -> tuple[int, str]:
    """``(layer index, package)`` of ``lcnrun.X...`` (package ``X``, "" for the root)."""
    parts = module.split(".")
    package = parts[1] if len(parts) > 1 else ""
    for i, names in enumerate(LAYERS):
        if package in names:
            return i, package
    raise AssertionError(f"{module}: package {package!r} has no layer in tests/test_architecture.py")


def arrow_problems(name: str, path: Path, tree: ast.AST) -> list[str]:
    problems = []
    mine, my_package = layer_of(name)
    for target, names, line in imports_of(name, path, tree):
        theirs, their_package = layer_of(target)
        where = f"{path.relative_to(PACKAGE.parent)}:{line}"
        if their_package != my_package and (name, target) not in KNOWN_EXCEPTIONS:
            if theirs < mine:
                problems.append(f"{where}: {name} (layer {LAYERS[mine]}) imports {target} from above")
            elif theirs == mine:
                problems.append(f"{where}: {name} imports its sibling package {target}")
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private:
                problems.append(f"{where}: {name} imports private {private} of {target}")
    return problems


@functools.lru_cache(maxsize=None)
def _family_names() -> tuple[set[str], set[str], set[str]]:
    """Class names of the families, their registry names, and the attributes only families have."""
    classes = {cls.__name__ for cls in MODELS.values()}
    own = set()
    for cls in MODELS.values():
        own |= {a for a in vars(cls) if not a.startswith("__")}
        # instance attributes: ``self.X = ...`` in the family's module
        tree = ast.parse(Path(inspect.getsourcefile(cls)).read_text())
        own |= {t.attr for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
    return classes, set(MODELS), own - set(dir(Model)) - {"options"}


def family_problems(name: str, path: Path, tree: ast.AST) -> list[str]:
    if name == MODELS_PACKAGE or name.startswith(MODELS_PACKAGE + "."):
        return []
    classes, kinds, own = _family_names()
    problems = []
    where = lambda node: f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"  # noqa: E731
    for target, names, line in imports_of(name, path, tree):
        if target.startswith(MODELS_PACKAGE) and classes & set(names):
            problems.append(f"{path.relative_to(PACKAGE.parent)}:{line}: imports the family class(es) "
                            f"{sorted(classes & set(names))}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "isinstance" and len(node.args) == 2:
                used = {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(node.args[1])
                        if isinstance(n, (ast.Name, ast.Attribute))}
                if used & classes:
                    problems.append(f"{where(node)}: isinstance on the model family {sorted(used & classes)}")
            if node.func.id in ("hasattr", "getattr") and len(node.args) >= 2 + (node.func.id == "getattr"):
                attr = node.args[1]
                if isinstance(attr, ast.Constant) and (attr.value in own or (
                        node.func.id == "hasattr" and attr.value in dir(Model))):
                    problems.append(f"{where(node)}: {node.func.id}(..., {attr.value!r}) asks which family a model is")
        if isinstance(node, ast.Compare) and name not in FAMILY_NAME_EXCEPTIONS:
            operands = [node.left, *node.comparators]
            literal = {o.value for o in operands if isinstance(o, ast.Constant) and isinstance(o.value, str)}
            if literal & kinds and any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
                problems.append(f"{where(node)}: compares with the family name {sorted(literal & kinds)}")
    return problems


def test_imports_point_down_the_layers():
    problems = [p for name, (path, tree) in modules().items() for p in arrow_problems(name, path, tree)]
    assert not problems, "\n".join(problems)


def test_known_exceptions_still_exist():
    """An exception that no longer occurs must leave the list (so the list only shrinks)."""
    found = {(name, target) for name, (path, tree) in modules().items()
             for target, _, _ in imports_of(name, path, tree)}
    stale = sorted(set(KNOWN_EXCEPTIONS) - found)
    assert not stale, f"remove from KNOWN_EXCEPTIONS: {stale}"


def test_no_code_outside_the_models_package_asks_for_a_family():
    problems = [p for name, (path, tree) in modules().items() for p in family_problems(name, path, tree)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source, name, expected", [
    ("from ..schedule.local import run_sweep\n", "lcnrun.report.x", "imports its sibling package"),
    ("from .cli.app import app\n", "lcnrun.runner", "from above"),
    ("def f():\n    from ..figures import FIGURES\n", "lcnrun.schedule.local", "from above"),
    ("from .runner import _data_key\n", "lcnrun.workflow", "private"),
    ("from ..core.models import MODELS\n", "lcnrun.spec.x", None),
])
def test_the_arrow_rule_catches_upward_sideways_and_private_imports(source, name, expected):
    path = PACKAGE.joinpath(*name.split(".")[1:]).with_suffix(".py")
    problems = arrow_problems(name, path, ast.parse(source))
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0], problems


@pytest.mark.parametrize("source, expected", [
    ("from ..models import Dense\n", "family class"),
    ("def f(model):\n    return isinstance(model, Dense)\n", "isinstance"),
    ("def f(model):\n    return isinstance(model, (models.LCN, int))\n", "isinstance"),
    ("def f(model):\n    return hasattr(model, 'widths')\n", "asks which family"),
    ("def f(model):\n    return hasattr(model, 'chain_program')\n", "asks which family"),
    ("def f(model):\n    return getattr(model, 'ndim', 1)\n", "asks which family"),
    ("def f(model):\n    return model.name == 'lcn'\n", "family name"),
    ("def f(spec):\n    return spec.model.kind != 'dense'\n", "family name"),
    ("def f(model):\n    return model.symmetry_group == 'GL' and model.default_input_shape\n", None),
])
def test_the_family_rule_catches_type_checks(source, expected):
    path = PACKAGE / "core" / "dynamics" / "x.py"
    problems = family_problems("lcnrun.core.dynamics.x", path, ast.parse(source))
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0], problems
