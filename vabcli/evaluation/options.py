"""Options of scoring generated audio (`vab eval`): plain data, so the command line reads their
defaults without importing the measures (and torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvalOptions:
    tolerance: float = 0.1  # seconds within which a detected onset matches a true one
