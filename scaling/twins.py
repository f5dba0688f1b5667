"""Twins: grid points that build the same network, and which of them a grid reports.

Rounding merges neighbouring coefficients: repeats round up (at phi = 1 every alpha in (1, 1.25] gives the
reference B0 the repeats 2, 3, 3, 4, 4, 5, 2), channels round to multiples of 8 and the proxy resolution to
whole pixels. Points whose networks have one digest (`GridPoint.network`) are twins: one evaluation scores
them all, and no score can tell them apart. They differ only in how they extrapolate: at phi = 7 alpha 1.05
and 1.25 give B0 the repeats 2, 3, 3, 5, 5, 6, 2 and 5, 10, 10, 15, 15, 20, 5.

So a grid reports the whole twin group of its best network (each coefficient's interval over the group) and
chooses inside it by one rule (`choose`): the twin with the smallest alpha * beta^2 * gamma^2, ties going to
the smaller alpha, then beta, then gamma. Every twin is equally supported by the scores; the smallest
product is the least growth per unit of phi (the formula's FLOPs factor) that the evidence allows, so the
family does not grow along a direction the grid could not resolve any more than it must. On the reference
B0 the default grid's paper point (1.2, 1.1, 1.15; product 1.9203) has one twin, (1.25, 1.1, 1.15; 2.0003),
and the rule keeps the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from effnet.scaling.grid_space import COEFFICIENTS, GridPoint

CHOICE_RULE = (
    "inside the best network's twin group (the points that build it), the smallest "
    "alpha*beta^2*gamma^2; ties: the smaller alpha, then beta, then gamma"
)


def choose(points: Sequence[GridPoint]) -> GridPoint:
    """The twin a grid reports (module notes)."""
    return min(points, key=lambda p: (p.product, p.alpha, p.beta, p.gamma))


@dataclass(frozen=True)
class TwinGroup:
    """The points (in grid order) that build one network."""

    points: tuple[GridPoint, ...]

    @property
    def network(self) -> str:
        return self.points[0].network

    @property
    def chosen(self) -> GridPoint:
        return choose(self.points)

    def interval(self, coefficient: str) -> tuple[float, float]:
        """The lowest and highest value of `coefficient` (alpha, beta or gamma) over the group."""
        values = [getattr(p, coefficient) for p in self.points]
        return min(values), max(values)

    def record(self) -> dict[str, Any]:
        """The group as coefficients.yaml lists it: every point, each coefficient's interval, the chosen one."""
        return {
            "network": self.network,
            "points": [list(p.key) for p in self.points],
            **{name: list(self.interval(name)) for name in COEFFICIENTS},
            "chosen": list(self.chosen.key),
        }


def twin_groups(points: Sequence[GridPoint]) -> list[TwinGroup]:
    """One group per distinct network, in the order of each network's first point."""
    members: dict[str, list[GridPoint]] = {}
    for point in points:
        members.setdefault(point.network, []).append(point)
    return [TwinGroup(tuple(group)) for group in members.values()]
