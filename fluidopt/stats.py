"""The one confidence-interval helper used by every figure, table and test.

Student-t intervals for the number of replicates actually run (with 3 replicates the 95 %
quantile is 4.30, not the normal 1.96).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def t_half_width(values: Any, level: float = 0.95) -> float:
    """Half-width of the Student-t interval of the mean of ``values`` (0 for fewer than two finite values)."""
    from scipy import stats

    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    if data.size < 2:
        return 0.0
    return float(stats.t.ppf(0.5 + level / 2, data.size - 1) * data.std(ddof=1) / math.sqrt(data.size))


def confidence_interval(values: Any, level: float = 0.95) -> tuple[float, float]:
    """``(low, high)`` Student-t interval of the mean of the finite ``values`` (NaN when there are none)."""
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return (math.nan, math.nan)
    mean = float(data.mean())
    half = t_half_width(data, level)
    return (mean - half, mean + half)
