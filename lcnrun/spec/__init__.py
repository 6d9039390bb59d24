"""The spec layer: YAML experiment files -> validated frozen dataclasses, sweep points and run ids.

Public API::

    load_experiment(path) -> ExperimentSpec                  # every sweep point validated
    load_experiment_text(text, *, file=None, base_dir=".") -> ExperimentSpec
    load_run_spec_text(text, *, base_dir=".", check_files=True) -> RunSpec   # a run file's spec
    resolved_dict(run_spec) -> dict                           # canonical plain form (run files)
    run_id(run_spec) -> str                                   # 12 hex digits, identity from content
    format_overrides(overrides) -> str; manifest_rows(experiment) -> [(index, run_id, json)]
    SpecError                                                 # str(): file:line: key: message lines

Every error is a :class:`SpecError` listing all problems found, each with file, line and dotted key.
This package imports yaml but no CLI, terminal or HDF5 library.
"""
from __future__ import annotations

import os
from pathlib import Path

from .canonical import RUN_SETTINGS, canonical_json, resolved_dict, run_id
from .errors import Problem, SpecError
from .schema import SECTIONS, Context, RunSpec, validate_run
from .sweep import MANIFEST_COLUMNS, ExperimentSpec, SweepPoint, expand_experiment, format_overrides, manifest_rows
from .yamlio import load_yaml, read_yaml_file


def load_experiment(path: str | os.PathLike) -> ExperimentSpec:
    """Load, validate and expand an experiment file (paths in it are relative to its folder)."""
    raw, lines = read_yaml_file(path)
    absolute = os.path.abspath(path)
    return expand_experiment(raw, lines, file=str(path), base_dir=Path(absolute).parent, spec_path=absolute)


def load_experiment_text(text: str, *, file: str | None = None,
                         base_dir: str | os.PathLike = ".") -> ExperimentSpec:
    """:func:`load_experiment` of YAML text; ``file`` only names it in messages."""
    raw, lines = load_yaml(text, file)
    return expand_experiment(raw, lines, file=file, base_dir=Path(os.path.abspath(base_dir)))


def load_run_spec_text(text: str, *, base_dir: str | os.PathLike = ".", check_files: bool = True,
                       file: str | None = None) -> RunSpec:
    """A single run's spec (no sweep), e.g. the ``spec`` dataset of a run file.

    ``check_files=False`` accepts ``path`` options whose file no longer exists (a run file read on
    another machine) and skips the checks that would need to read them.
    """
    raw, lines = load_yaml(text, file)
    ctx = Context(file, lines, Path(os.path.abspath(base_dir)), check_files)
    run = validate_run(raw, ctx)
    if run is None:
        raise SpecError(ctx.problems)
    return run


__all__ = [
    "load_experiment", "load_experiment_text", "load_run_spec_text", "resolved_dict", "run_id",
    "canonical_json", "RUN_SETTINGS", "format_overrides", "manifest_rows", "MANIFEST_COLUMNS", "SECTIONS",
    "ExperimentSpec", "SweepPoint", "RunSpec", "SpecError", "Problem",
]
