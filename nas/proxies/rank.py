"""Rank agreement between a proxy's scores and a reference: Kendall's tau-b and Spearman's rho (scipy).

Both are NaN when either sequence is constant (no ranking to agree with), instead of scipy's
warning; callers show that as "n/a".
"""

from __future__ import annotations

import math
from typing import Sequence

from scipy import stats


def _checked(x: Sequence[float], y: Sequence[float]) -> bool:
    """Validate the pair; False when a correlation is undefined because one side is constant."""
    if len(x) != len(y):
        raise ValueError(f"rank correlation needs sequences of equal length, got {len(x)} and {len(y)}")
    if len(x) < 2:
        raise ValueError(f"rank correlation needs at least two items, got {len(x)}")
    if any(not math.isfinite(v) for v in (*x, *y)):
        raise ValueError("rank correlation needs finite values")
    return len(set(x)) > 1 and len(set(y)) > 1


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties handled as scipy's default), in [-1, 1]."""
    if not _checked(x, y):
        return math.nan
    return float(stats.kendalltau(x, y).statistic)


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's r of the ranks, ties averaged), in [-1, 1]."""
    if not _checked(x, y):
        return math.nan
    return float(stats.spearmanr(x, y).statistic)
