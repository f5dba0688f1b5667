"""A family that matches a FLOPs ladder (`--match-flops`): for each ladder step k, the phi whose *measured* FLOPs
come closest to 2^k x the base's.

Every rounding (repeats up, channels to multiples of 8, resolution to whole pixels) is non-decreasing in its
multiplier and alpha, beta, gamma >= 1, so the network, and with it its FLOPs, is a non-decreasing step function of
phi. Bisection on phi therefore finds the exact step where the FLOPs cross a target; the best member is the step
just below or just above it, and when neither lies within the tolerance the jump between them is the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from effnet.nas.errors import InputError
from effnet.nas.net.flops import analytic_cost
from effnet.nas.net.layout import plan_network
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.units import format_size
from effnet.scaling.compound import MAX_PHI, Coefficients, compound_scale
from effnet.scaling.family import DEFAULT_PHIS, MATCH_TOLERANCE, FamilyMember, FlopsMatch, compound_member, member_name

PHI_TOLERANCE = 1e-10
"""Bisection on phi stops when the interval is this narrow, relative to phi."""


def _shape(spec: NetworkSpec) -> tuple:
    """What rounding decides: equal shapes mean equal networks (and equal FLOPs)."""
    return (
        spec.resolution,
        spec.stem.out_channels,
        tuple((s.repeats, s.out_channels) for s in spec.stages),
        spec.head.out_channels,
    )


def _describe_jump(before: NetworkSpec, after: NetworkSpec) -> str:
    changes = []
    repeats = [
        (i + 1, a.repeats, b.repeats)
        for i, (a, b) in enumerate(zip(before.stages, after.stages, strict=True))
        if a.repeats != b.repeats
    ]
    if len(repeats) == 1:
        changes.append("depth rounding jumps stage {} from {} to {} blocks".format(*repeats[0]))
    elif repeats:
        changes.append(
            f"depth rounding jumps the stage repeats from {[s.repeats for s in before.stages]} to "
            f"{[s.repeats for s in after.stages]} ({before.num_blocks} to {after.num_blocks} blocks)"
        )
    widths = [
        (label, a, b)
        for label, a, b in [
            ("stem", before.stem.out_channels, after.stem.out_channels),
            *[
                (f"stage {i + 1}", x.out_channels, y.out_channels)
                for i, (x, y) in enumerate(zip(before.stages, after.stages, strict=True))
            ],
            ("head", before.head.out_channels, after.head.out_channels),
        ]
        if a != b
    ]
    if widths:
        changes.append(
            "width rounding jumps " + ", ".join(f"{label} from {a} to {b}" for label, a, b in widths) + " channels"
        )
    if before.resolution != after.resolution:
        text = f"resolution rounding jumps from {before.resolution} to {after.resolution} px"
        final_before, final_after = plan_network(before).final_size, plan_network(after).final_size
        if final_before != final_after:
            text += (
                f" (strided convolutions round up, so the last feature map grows from {final_before} "
                f"to {final_after} px)"
            )
        changes.append(text)
    return "; ".join(changes)


def _bisect(low: float, high: float, is_high: Callable[[float], bool]) -> tuple[float, float]:
    """Narrow [low, high] to the tolerance around the switch of a monotone predicate, false at low
    and true at high; returns the last sampled false point and the first sampled true one."""
    while high - low > PHI_TOLERANCE * max(1.0, high):
        mid = (low + high) / 2
        if is_high(mid):
            high = mid
        else:
            low = mid
    return low, high


def _simplest_number(low: float, high: float) -> float:
    """The number with the fewest decimals in [low, high]."""
    for digits in range(12):
        candidate = math.ceil(low * 10**digits) / 10**digits
        if candidate <= high:
            return candidate
    return low


class _CompoundLine:
    """The networks along the compound direction of one base, as a function of phi."""

    def __init__(self, base: NetworkSpec, coefficients: Coefficients):
        self.base = base
        self.c = coefficients
        self.base_flops = analytic_cost(base).flops

    def spec(self, phi: float) -> NetworkSpec:
        return compound_scale(self.base, self.c.alpha, self.c.beta, self.c.gamma, phi)

    def flops(self, phi: float) -> int:
        return analytic_cost(self.spec(phi)).flops

    def upper_bound(self, target: int) -> float:
        """A phi whose network is at least 10 % over `target` (so the step above it is in range)."""
        if self.c.flops_factor == 1:
            raise InputError(
                "alpha = beta = gamma = 1 never grows the network; matching a FLOPs ladder needs a coefficient above 1"
            )
        phi = min(MAX_PHI, 1 + 1.5 * math.log(target / self.base_flops) / math.log(self.c.flops_factor))
        while self.flops(phi) < 1.1 * target:
            if phi == MAX_PHI:
                raise InputError(
                    f"no phi up to {MAX_PHI:g} reaches {format_size(target)} FLOPs; "
                    "use larger coefficients or a shorter ladder"
                )
            phi = min(MAX_PHI, 2 * phi)
        return phi

    def step_extent(self, phi: float, phi_max: float) -> tuple[float, float]:
        """The sampled ends of the phi interval over which the network equals the one at `phi`."""
        shape = _shape(self.spec(phi))

        def same(x: float) -> bool:
            return _shape(self.spec(x)) == shape

        low = 0.0 if same(0.0) else _bisect(0.0, phi, same)[1]
        high = phi_max if same(phi_max) else _bisect(phi, phi_max, lambda x: not same(x))[0]
        return low, high


def _match_step(line: _CompoundLine, step: float, phi_max: float) -> FamilyMember:
    target = int(round(2.0**step * line.base_flops))
    if line.flops(0.0) >= target:
        low = high = 0.0
        below, above = None, line.spec(0.0)
    else:
        low, high = _bisect(0.0, phi_max, lambda phi: line.flops(phi) >= target)
        below, above = line.spec(low), line.spec(high)
    candidates = [(phi, spec) for phi, spec in ((low, below), (high, above)) if spec is not None]
    costs = {phi: analytic_cost(spec).flops for phi, spec in candidates}
    best_phi = min(costs, key=lambda phi: abs(costs[phi] / target - 1))
    why = None
    if abs(costs[best_phi] / target - 1) > MATCH_TOLERANCE:
        if below is None:
            why = (
                f"even phi = 0 along the compound direction gives {format_size(costs[high])} FLOPs "
                f"({costs[high] / target - 1:+.1%} of the target)"
            )
        else:
            where = "as soon as phi leaves 0" if high < 1e-6 else f"at phi = {(low + high) / 2:.4f}"
            why = (
                f"{where} {_describe_jump(below, above)}: FLOPs jump from "
                f"{format_size(costs[low])} ({costs[low] / target - 1:+.1%}) to "
                f"{format_size(costs[high])} ({costs[high] / target - 1:+.1%}), nothing in between"
            )
    extent = line.step_extent(best_phi, phi_max)
    phi = _simplest_number(*extent)  # any phi in the step gives the same network; report the plainest
    if _shape(line.spec(phi)) != _shape(line.spec(best_phi)):
        phi = best_phi
    match = FlopsMatch(step=step, target_flops=target, phi_range=extent, why=why)
    return compound_member(line.base, line.c, phi, name=member_name(step), match=match)


def match_flops_family(
    base: NetworkSpec, coefficients: Coefficients, steps: tuple[float, ...] = DEFAULT_PHIS
) -> list[FamilyMember]:
    """For each step k the member whose measured FLOPs come closest to 2^k x base FLOPs."""
    line = _CompoundLine(base, coefficients)
    phi_max = line.upper_bound(int(2.0 ** max(steps) * line.base_flops))
    return [_match_step(line, step, phi_max) for step in steps]
