"""Rank agreement between a proxy's scores and a reference: Kendall's tau-b and Spearman's rho with their
p-values (scipy).

Each is an `Agreement`: the statistic and its two-sided p-value under the hypothesis of no correlation
(Kendall's from the exact distribution for small samples without ties, else the normal approximation;
Spearman's from the t distribution with n - 2 degrees of freedom). Both are NaN when either sequence is
constant (no ranking to agree with), instead of scipy's warning; callers show that as "n/a".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from scipy import stats


class Agreement(NamedTuple):
    statistic: float
    pvalue: float


UNDEFINED = Agreement(math.nan, math.nan)


def _checked(x: Sequence[float], y: Sequence[float]) -> bool:
    """Validate the pair; False when a correlation is undefined because one side is constant."""
    if len(x) != len(y):
        raise ValueError(f"rank correlation needs sequences of equal length, got {len(x)} and {len(y)}")
    if len(x) < 2:
        raise ValueError(f"rank correlation needs at least two items, got {len(x)}")
    if any(not math.isfinite(v) for v in (*x, *y)):
        raise ValueError("rank correlation needs finite values")
    return len(set(x)) > 1 and len(set(y)) > 1


def kendall(x: Sequence[float], y: Sequence[float]) -> Agreement:
    """Kendall's tau-b (ties handled as scipy's default), in [-1, 1], and its p-value."""
    if not _checked(x, y):
        return UNDEFINED
    result = stats.kendalltau(x, y)
    return Agreement(float(result.statistic), float(result.pvalue))


def spearman(x: Sequence[float], y: Sequence[float]) -> Agreement:
    """Spearman's rank correlation (Pearson's r of the ranks, ties averaged), in [-1, 1], and its p-value."""
    if not _checked(x, y):
        return UNDEFINED
    result = stats.spearmanr(x, y)
    return Agreement(float(result.statistic), float(result.pvalue))
