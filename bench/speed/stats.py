"""Summaries: percentiles of samples, and median with spread (min–max) across rounds."""

from __future__ import annotations

import statistics
from typing import Any

__all__ = ["pct", "spread"]


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spread(values: list[float]) -> dict[str, Any]:
    """``{"median", "min", "max", "rounds"}`` of one number measured once per round."""
    if not values:
        return {"median": None, "min": None, "max": None, "rounds": []}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "rounds": values,
    }
