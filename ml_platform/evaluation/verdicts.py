"""A gate's verdict and the number formatting every gate's reason uses.

Reasons are written for a clinician-facing reviewer: one sentence, with the numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# Bounds are inclusive, and many compared numbers are differences of floats (0.80 - 0.76
# is 0.04000000000000004), so a boundary value must not fail on rounding noise.
_REL_TOL, _ABS_TOL = 1e-9, 1e-12


@dataclass(frozen=True)
class Verdict:
    """The outcome of one gate, with the numbers behind it and a reason a reviewer can read."""

    gate: str
    passed: bool
    value: float | None
    threshold: float | list[float] | None
    champion: float | None
    reason: str

    def as_metadata(self) -> dict:
        """A JSON-safe dict (NaN and infinities become None), for Dagster metadata and MLflow."""
        return json_safe(asdict(self))


def at_most(value: float, bound: float) -> bool:
    """value <= bound, forgiving float rounding noise at the boundary."""
    return value <= bound or math.isclose(value, bound, rel_tol=_REL_TOL, abs_tol=_ABS_TOL)


def number(value: Any) -> float:
    return math.nan if value is None else float(value)


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def fmt_pair(value: float, bound: float) -> tuple[str, str]:
    """Format two numbers with enough digits that different numbers never look equal."""
    for digits in range(3, 10):
        a, b = fmt(value, digits), fmt(bound, digits)
        if a != b or value == bound:
            return a, b
    return repr(value), repr(bound)


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value
