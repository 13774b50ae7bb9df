"""Percentiles and the few ways RESULTS.md states a figure."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def ms(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return "∞ ms" if math.isinf(value) else f"{value:,.1f} ms"


def peak_overlap(starts: Sequence[float], length: float) -> int:
    """Most intervals ``[start, start + length)`` covering one instant."""
    ordered = sorted(starts)
    peak, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - length:
            lo += 1
        peak = max(peak, hi - lo + 1)
    return peak
