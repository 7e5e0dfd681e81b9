"""Percentiles and latency summaries shared by ``ttc eval`` and ``ttc bench overhead``."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks.

    This is numpy's default ("linear") method: the rank is ``q/100 * (n - 1)`` over the sorted
    values, so p0 is the minimum, p100 the maximum and p50 the usual median. ``None`` for no
    values: an empty run has no latency, and 0 would read as "instant".
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = q / 100.0 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    fraction = rank - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def latency_summary(seconds: Sequence[float], scale: float = 1000.0) -> dict[str, float | None]:
    """p50/p90/p99 and mean of ``seconds``, multiplied by ``scale`` (default: milliseconds)."""

    def scaled(value: float | None) -> float | None:
        return None if value is None else round(value * scale, 3)

    mean = sum(seconds) / len(seconds) if seconds else None
    return {
        "p50": scaled(percentile(seconds, 50)),
        "p90": scaled(percentile(seconds, 90)),
        "p99": scaled(percentile(seconds, 99)),
        "mean": scaled(mean),
    }


def difference(a: float | None, b: float | None) -> float | None:
    """``a - b``, or ``None`` when either side is missing."""
    return None if a is None or b is None else round(a - b, 3)


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or ``None`` when either side is missing or ``b`` is zero."""
    return None if a is None or b is None or b == 0 else round(a / b, 3)
