"""Rewards and the bands: what a search maximises and which candidates it may train.

MnasNet (Tan et al., CVPR 2019, eq. 2) and EfficientNet (Tan & Le, ICML 2019, section 4) reward a
model m by ACC(m) * [FLOPS(m) / T] ** w (MnasNet with the latency measured on the target device in place of
the FLOPs, as a search with a latency target does). The soft constraint w = -0.07 makes a doubling of cost
worth about 5 % relative accuracy (2 ** -0.07 = 0.952); the hard constraint uses w = 0 under the
target and w = -1 over it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from effnet.nas.errors import InputError, SettingError

SOFT_EXPONENT = -0.07


def mnasnet_reward(accuracy: float, flops: float, target: float, w: float = SOFT_EXPONENT) -> float:
    """ACC(m) * (FLOPS(m) / T) ** w."""
    return accuracy * (flops / target) ** w


def hard_reward(accuracy: float, flops: float, target: float) -> float:
    """MnasNet's hard constraint: w = 0 at or under the target, w = -1 over it."""
    return mnasnet_reward(accuracy, flops, target, 0.0 if flops <= target else -1.0)


@dataclass(frozen=True)
class FlopsBand:
    """The FLOPs a candidate may have to be trained: [low, high] around the target.

    For the soft reward and the Pareto search the band is target * (1 ± tolerance); for the hard
    constraint it ends at the target, since anything over it is infeasible by definition.
    """

    target: int
    tolerance: float
    hard: bool = False

    def __post_init__(self) -> None:
        if self.target < 1:
            raise InputError(f"target FLOPs must be positive, got {self.target}")
        if not 0 < self.tolerance < 1:
            raise SettingError("flops_tolerance", f"must lie in (0, 1), e.g. 0.1 for ±10 %; got {self.tolerance}")

    @property
    def low(self) -> int:
        """The smallest whole FLOP count inside the band (1e-9 absorbs float error in target * tolerance)."""
        return math.ceil(min(self.target * (1 - self.tolerance) - 1e-9, sys.float_info.max))

    @property
    def high(self) -> int:
        # A target near the largest float puts the bound past it: the largest float instead, beyond every network.
        return (
            self.target if self.hard else math.floor(min(self.target * (1 + self.tolerance) + 1e-9, sys.float_info.max))
        )

    def violation(self, flops: float) -> float:
        """Optuna's constraint value: <= 0 inside the band, else the relative distance outside it."""
        if flops < self.low:
            return (self.low - flops) / self.target
        if flops > self.high:
            return (flops - self.high) / self.target
        return -min(flops - self.low, self.high - flops) / self.target

    def contains(self, flops: float) -> bool:
        return self.low <= flops <= self.high


@dataclass(frozen=True)
class LatencyBand:
    """The predicted latency a candidate may have to be trained: target * (1 ± tolerance) seconds, or for the
    hard constraint target * (1 - tolerance) up to the target, as `FlopsBand` for FLOPs."""

    target: float
    tolerance: float
    hard: bool = False

    @property
    def low(self) -> float:
        return self.target * (1 - self.tolerance)

    @property
    def high(self) -> float:
        return self.target if self.hard else self.target * (1 + self.tolerance)

    def violation(self, seconds: float) -> float:
        """Optuna's constraint value: <= 0 inside the band, else the relative distance outside it."""
        if seconds < self.low:
            return (self.low - seconds) / self.target
        if seconds > self.high:
            return (seconds - self.high) / self.target
        return -min(seconds - self.low, self.high - seconds) / self.target

    def contains(self, seconds: float) -> bool:
        return self.low <= seconds <= self.high


def reward_for(objective: str, accuracy: float, cost: float, target: float) -> float:
    """The objective's reward of a candidate of `accuracy` and `cost` (FLOPs, or seconds of latency) against the
    target in the same unit: MnasNet's soft reward, or with `hard` its hard constraint."""
    if objective == "hard":
        return hard_reward(accuracy, cost, target)
    return mnasnet_reward(accuracy, cost, target)
