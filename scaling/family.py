"""The compound-scaled family of a base network: members, their FLOPs ladder, and the official fit.

Three ways to pick the members:

- `compound_family`: the literal phi values, d = alpha^phi, w = beta^phi, r = gamma^phi.
- `match_flops_family`: for each ladder step k, the phi whose *measured* FLOPs come closest to
  2^k x the base's. Every rounding (repeats up, channels to multiples of 8, resolution to whole
  pixels) is non-decreasing in its multiplier and alpha, beta, gamma >= 1, so the network, and
  with it its FLOPs, is a non-decreasing step function of phi. Bisection on phi therefore finds
  the exact step where the FLOPs cross a target; the best member is the step just below or just
  above it, and when neither lies within the tolerance the jump between them is the reason.
- `official_family`: the TensorFlow reference's own B1-B7, with `official_family_fit` giving the
  phi that best explains each under chosen coefficients.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from effnet.nas.errors import InputError, SettingError
from effnet.nas.inputs import load_yaml
from effnet.nas.net.flops import analytic_cost
from effnet.nas.net.layout import plan_network
from effnet.nas.net.spec import InvalidSpec, NetworkSpec
from effnet.nas.net.spec_file import spec_from_dict, spec_to_dict
from effnet.nas.units import format_size
from effnet.scaling.caveats import grid_caveats
from effnet.scaling.compound import MAX_PHI, Coefficients, compound_scale
from effnet.scaling.presets import OFFICIAL, official_preset

DEFAULT_PHIS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0)
MATCH_TOLERANCE = 0.05
"""`--match-flops` accepts a member within 5 % of its target 2^k x base FLOPs."""

MIN_PHI = 0.001
"""The smallest phi a family member may have: a member's name spells its phi out (1e-300 would not fit a file name)."""
_PHI_TOLERANCE = 1e-10


# -- inputs -------------------------------------------------------------------------------------


def load_coefficients(path: str | os.PathLike[str]) -> Coefficients:
    """alpha, beta, gamma from the top level of a YAML file, with the caveats a grid's record holds against
    them (`grid_caveats`: an incomplete grid, a choice within noise); other keys are ignored."""
    data = load_yaml(path, "coefficients file")
    if not isinstance(data, dict):
        raise InputError(f"{path}: must be a mapping with keys alpha, beta, gamma (as grid-scale writes it)")
    missing = [key for key in ("alpha", "beta", "gamma") if key not in data]
    if missing:
        raise InputError(f"{path}: missing key {missing[0]!r}; the file needs alpha, beta and gamma at the top level")
    try:
        return Coefficients(data["alpha"], data["beta"], data["gamma"], caveats=grid_caveats(data))
    except InputError as err:  # a SettingError names the key, which is what the file calls it
        raise InputError(f"{path}: {err}") from None


def parse_phi_list(text: str) -> tuple[float, ...]:
    """A comma list of numbers in [MIN_PHI, MAX_PHI], e.g. `1,2,3` or `0.5, 1.5`; raises `SettingError`."""
    values = []
    for item in str(text).split(","):
        item = item.strip()
        try:
            value = float(item)
        except ValueError:
            raise SettingError(
                "phi", f"{text!r}: {item!r} is not a number; write a comma list like 1,2,3,4,5,6,7"
            ) from None
        if not MIN_PHI <= value <= MAX_PHI:  # NaN fails too
            raise SettingError(
                "phi", f"{text!r}: every phi must be a positive number from {MIN_PHI:g} to {MAX_PHI:g}, got {item!r}"
            )
        if value in values:
            raise SettingError("phi", f"{text!r}: phi {item} is listed twice")
        values.append(value)
    return tuple(values)


def member_name(phi: float) -> str:
    """`b3` for phi = 3; for a fractional phi its shortest exact decimal, file-safe: 1.5 -> `b1p5`,
    0.001 -> `b0p001`. Different numbers get different names."""
    if float(phi).is_integer():
        return f"b{int(phi)}"
    return "b" + format(Decimal(repr(float(phi))), "f").replace(".", "p")


# -- members ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlopsMatch:
    """How a `--match-flops` member relates to its target 2^k x base FLOPs."""

    step: float
    target_flops: int
    phi_range: tuple[float, float]
    why: str | None

    def deviation(self, flops: int) -> float:
        return flops / self.target_flops - 1


@dataclass(frozen=True)
class FamilyMember:
    name: str
    phi: float
    depth: float
    width: float
    spec: NetworkSpec
    params: int
    flops: int
    base_params: int
    base_flops: int
    coefficients: Coefficients
    match: FlopsMatch | None = None

    @property
    def resolution(self) -> int:
        return self.spec.resolution

    @property
    def dropout(self) -> float:
        return self.spec.dropout

    @property
    def flops_ratio(self) -> float:
        return self.flops / self.base_flops

    @property
    def ideal_ratio(self) -> float:
        """The formula's FLOPs growth, (alpha * beta^2 * gamma^2)^phi."""
        return self.coefficients.flops_factor**self.phi

    @property
    def params_ratio(self) -> float:
        return self.params / self.base_params

    @property
    def ideal_params_ratio(self) -> float:
        """The formula's parameter growth, (alpha * beta^2)^phi: resolution adds no weights."""
        return (self.coefficients.alpha * self.coefficients.beta**2) ** self.phi

    @property
    def doubling_ratio(self) -> float:
        return 2.0**self.phi

    @property
    def deviation(self) -> float | None:
        return None if self.match is None else self.match.deviation(self.flops)

    @property
    def within_tolerance(self) -> bool | None:
        deviation = self.deviation
        return None if deviation is None else abs(deviation) <= MATCH_TOLERANCE

    def row(self) -> dict[str, Any]:
        """The member as plain data: one CSV row, one JSON entry."""
        row: dict[str, Any] = {
            "name": self.name,
            "phi": self.phi,
            "depth": self.depth,
            "width": self.width,
            "resolution": self.resolution,
            "params": self.params,
            "params_ratio": self.params_ratio,
            "flops": self.flops,
            "flops_ratio": self.flops_ratio,
            "ideal_ratio": self.ideal_ratio,
            "doubling_ratio": self.doubling_ratio,
            "dropout": self.dropout,
        }
        if self.match is not None:
            row.update(
                {
                    "step": self.match.step,
                    "target_flops": self.match.target_flops,
                    "target_ratio": 2.0**self.match.step,
                    "deviation": self.deviation,
                    "within_tolerance": self.within_tolerance,
                    "phi_low": self.match.phi_range[0],
                    "phi_high": self.match.phi_range[1],
                    "why": self.match.why,
                }
            )
        return row


def _member(
    name: str,
    phi: float,
    depth: float,
    width: float,
    spec: NetworkSpec,
    base: NetworkSpec,
    coefficients: Coefficients,
    match: FlopsMatch | None = None,
) -> FamilyMember:
    """A member, which must be a spec effnet itself accepts (every field in range, within the cost limits):
    what export writes, describe and train read."""
    try:
        spec_from_dict(spec_to_dict(spec), f"family member {name} (phi {phi:g})")
    except InputError as err:
        raise _not_accepted(str(err), base, coefficients) from None
    cost, base_cost = analytic_cost(spec), analytic_cost(base)
    return FamilyMember(
        name=name,
        phi=phi,
        depth=depth,
        width=width,
        spec=spec,
        params=cost.params,
        flops=cost.flops,
        base_params=base_cost.params,
        base_flops=base_cost.flops,
        coefficients=coefficients,
        match=match,
    )


def _not_accepted(problem: str, base: NetworkSpec, coefficients: Coefficients) -> InputError:
    return InputError(
        f"{problem} (grown from {base.name} by alpha {coefficients.alpha:g}, beta "
        f"{coefficients.beta:g}, gamma {coefficients.gamma:g}: use smaller coefficients or phi)"
    )


def compound_member(
    base: NetworkSpec, coefficients: Coefficients, phi: float, name: str | None = None, match: FlopsMatch | None = None
) -> FamilyMember:
    c = coefficients
    name = name or member_name(phi)
    try:
        spec = compound_scale(base, c.alpha, c.beta, c.gamma, phi, name=name)
    except InvalidSpec as err:  # a field out of range (repeats past the largest integer a spec takes)
        raise _not_accepted(f"family member {name} (phi {phi:g}): {err}", base, c) from None
    return _member(name, phi, c.alpha**phi, c.beta**phi, spec, base, c, match)


def compound_family(
    base: NetworkSpec, coefficients: Coefficients, phis: tuple[float, ...] = DEFAULT_PHIS
) -> list[FamilyMember]:
    return [compound_member(base, coefficients, phi) for phi in phis]


# -- matching a FLOPs ladder --------------------------------------------------------------------


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
    while high - low > _PHI_TOLERANCE * max(1.0, high):
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


# -- the official family ------------------------------------------------------------------------

PAPER_COEFFICIENTS = Coefficients(1.2, 1.1, 1.15)
"""The paper's grid result (EfficientNet, section 4)."""


@dataclass(frozen=True)
class PresetFit:
    """The phi that best explains one official preset, and how far each coefficient sits from the formula."""

    name: str
    phi: float
    depth: float
    width: float
    resolution: int
    depth_model: float
    width_model: float
    resolution_ratio: float
    resolution_model: float

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phi": self.phi,
            "depth": self.depth,
            "depth_model": self.depth_model,
            "depth_off": self.depth / self.depth_model - 1,
            "width": self.width,
            "width_model": self.width_model,
            "width_off": self.width / self.width_model - 1,
            "resolution": self.resolution,
            "resolution_ratio": self.resolution_ratio,
            "resolution_model": self.resolution_model,
            "resolution_off": self.resolution_ratio / self.resolution_model - 1,
        }


def official_family_fit(alpha: float, beta: float, gamma: float) -> list[PresetFit]:
    """For b1..b7: phi minimising the squared error of (log depth, log width, log resolution / 224)
    against phi * (log alpha, log beta, log gamma). The closed form is a projection:
    phi = sum(log x * log a) / sum(log a^2)."""
    c = Coefficients(alpha, beta, gamma)
    logs_model = (math.log(c.alpha), math.log(c.beta), math.log(c.gamma))
    norm = sum(v * v for v in logs_model)
    if norm == 0:
        raise InputError("alpha = beta = gamma = 1 explains no growth; give a coefficient above 1 to fit phi")
    base_resolution = OFFICIAL["b0"].resolution
    fits = []
    for name, p in OFFICIAL.items():
        if name == "b0":
            continue
        ratio = p.resolution / base_resolution
        logs = (math.log(p.depth), math.log(p.width), math.log(ratio))
        phi = sum(x * a for x, a in zip(logs, logs_model, strict=True)) / norm
        fits.append(
            PresetFit(
                name=name,
                phi=phi,
                depth=p.depth,
                width=p.width,
                resolution=p.resolution,
                depth_model=c.alpha**phi,
                width_model=c.beta**phi,
                resolution_ratio=ratio,
                resolution_model=c.gamma**phi,
            )
        )
    return fits


def official_family(base: NetworkSpec, coefficients: Coefficients) -> tuple[list[FamilyMember], list[PresetFit]]:
    """The reference's B1-B7 (`official_preset` on `base`), each at the phi that best explains it."""
    fits = official_family_fit(coefficients.alpha, coefficients.beta, coefficients.gamma)
    b0 = official_preset("b0", base)
    members = []
    for fit in fits:
        spec = official_preset(fit.name, base)
        members.append(_member(fit.name, fit.phi, fit.depth, fit.width, spec, b0, coefficients))
    return members, fits
