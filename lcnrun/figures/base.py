"""The contract of a paper figure (``lcnrun figure NAME``).

A figure names the experiment specs it needs (``lcnrun/figures/specs/*.yaml``, shipped as package
data; each usually a sweep),
and turns their finished runs into

- a matplotlib figure (saved as ``figures/NAME.png`` and ``.pdf``),
- a table of the numbers behind it (printed), and
- claims: the papers' statements as checks with the measured value, what the paper says and whether
  it holds (printed; ``lcnrun figure`` exits 1 if one does not).

A new figure is one module with a :class:`Figure` subclass plus one line in ``FIGURES``
(``lcnrun/figures/__init__.py``). ``small=True`` asks for the figure's small version (fewer
seeds, shorter runs): what the tests run to assert the claims.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Claim:
    """One checked statement: ``text`` (the paper's claim), ``measured`` (what the runs give),
    ``expected`` (what the paper says, in words), ``holds``."""

    text: str
    measured: Any
    expected: str
    holds: bool


@dataclass
class FigureResult:
    figure: Any                      # matplotlib.figure.Figure
    rows: list[dict] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class PointRuns:
    """The finished runs of one spec: ``points`` (SweepPoint) and ``runs`` (RunData), aligned."""

    spec_path: Path
    points: list
    runs: list

    def by(self, key: str) -> dict:
        """Group runs by the value of one swept dotted key: ``{value: [RunData, ...]}``."""
        groups: dict = {}
        for p, r in zip(self.points, self.runs):
            v = p.overrides.get(key)
            groups.setdefault(v if not isinstance(v, list) else tuple(map(lambda x: tuple(x) if isinstance(x, list) else x, v)), []).append(r)
        return groups


class Figure:
    name = ""
    title = ""
    #: the paper(s), as in docs/spec.md section 5
    paper = ""

    def specs(self, small: bool) -> list[str]:
        """Spec files (relative to the figure specs folder, :func:`~lcnrun.figures.driver.specs_dir`)
        this figure needs; by default the one sweep ``NAME.yaml`` (``NAME.small.yaml`` for the small
        version)."""
        return [f"{self.name}.small.yaml" if small else f"{self.name}.yaml"]

    def make(self, data: dict[str, PointRuns], small: bool) -> FigureResult:
        """``data``: spec file stem -> its finished runs."""
        raise NotImplementedError
