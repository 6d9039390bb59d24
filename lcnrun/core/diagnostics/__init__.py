"""Geometric diagnostics. ``DIAGNOSTICS`` is the only place a diagnostic's name becomes a class."""
from .base import Diagnostic, DiagnosticResult

DIAGNOSTICS: dict[str, type[Diagnostic]] = {}

__all__ = ["DIAGNOSTICS", "Diagnostic", "DiagnosticResult"]
