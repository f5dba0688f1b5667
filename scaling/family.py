"""The compound-scaled family of a base network: its members, and the literal-phi family.

Three ways to pick the members:

- `compound_family`: the literal phi values, d = alpha^phi, w = beta^phi, r = gamma^phi.
- `match_flops_family` (`effnet.scaling.match_flops`): for each ladder step k, the phi whose
  *measured* FLOPs come closest to 2^k x the base's.
- `official_family` (`effnet.scaling.official`): the TensorFlow reference's own B1-B7, with
  `official_family_fit` giving the phi that best explains each under chosen coefficients.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from effnet.nas.errors import InputError, SettingError
from effnet.nas.inputs import load_yaml
from effnet.nas.net.flops import analytic_cost
from effnet.nas.net.spec import InvalidSpec, NetworkSpec
from effnet.nas.net.spec_file import spec_from_dict, spec_to_dict
from effnet.scaling.caveats import grid_caveats
from effnet.scaling.compound import MAX_PHI, Coefficients, compound_scale

DEFAULT_PHIS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0)
MATCH_TOLERANCE = 0.05
"""`--match-flops` accepts a member within 5 % of its target 2^k x base FLOPs."""

MIN_PHI = 0.001
"""The smallest phi a family member may have: a member's name spells its phi out (1e-300 would not fit a file name)."""


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


def family_member(
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
    return family_member(name, phi, c.alpha**phi, c.beta**phi, spec, base, c, match)


def compound_family(
    base: NetworkSpec, coefficients: Coefficients, phis: tuple[float, ...] = DEFAULT_PHIS
) -> list[FamilyMember]:
    return [compound_member(base, coefficients, phi) for phi in phis]
