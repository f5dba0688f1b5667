"""Rank agreement between a proxy's scores and a reference: Kendall's tau-b and Spearman's rho with their
p-values (scipy).

Each is an `Agreement`: the statistic and its two-sided p-value under the hypothesis of no correlation
(Kendall's from the exact distribution for small samples without ties, else the normal approximation;
Spearman's exact over every pairing of the ranks up to `EXACT_SPEARMAN_UP_TO` items, where the t distribution
with n - 2 degrees of freedom that scipy uses is far off (it gave p = 0 for 3 items in the same order, whose
exact p is 1/3), else from that t distribution). Both are NaN when either sequence is
constant (no ranking to agree with), instead of scipy's warning; callers show that as "n/a".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats

EXACT_SPEARMAN_UP_TO = 8
"""Items up to which Spearman's p-value counts every pairing of the ranks (8! = 40,320 pairings, milliseconds)."""


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
    rho = float(result.statistic)
    if len(x) <= EXACT_SPEARMAN_UP_TO:
        return Agreement(rho, _exact_spearman_p(x, y, rho))
    return Agreement(rho, float(result.pvalue))


def _exact_spearman_p(x: Sequence[float], y: Sequence[float], rho: float) -> float:
    """The share of the pairings of x's ranks with y's whose |rho| is at least this one's (two-sided)."""
    ranks_x = stats.rankdata(x)
    centred_x = ranks_x - ranks_x.mean()
    pairings = np.array(list(itertools.permutations(stats.rankdata(y))))
    centred = pairings - pairings.mean(axis=1, keepdims=True)
    rhos = centred @ centred_x / (np.linalg.norm(centred_x) * np.linalg.norm(centred, axis=1))
    return float(np.mean(np.abs(rhos) >= abs(rho) - 1e-12))
