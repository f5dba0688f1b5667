"""`scale`: one pure function from spec to spec, used by the official presets and the compound family;
`compound_scale`: the paper's d = alpha^phi, w = beta^phi, r = gamma^phi on top of it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from effnet.nas import checks
from effnet.nas.errors import InputError, SettingError
from effnet.nas.net.rounding import round_filters, round_repeats
from effnet.nas.net.spec import HeadSpec, NetworkSpec, StemSpec


def scaled_resolution(base_resolution: int, multiplier: float) -> int:
    """The one rounding rule for resolution: the nearest whole pixel, halves rounded up."""
    return int(base_resolution * multiplier + 0.5)


def scale(
    spec: NetworkSpec,
    depth: float,
    width: float,
    resolution: int,
    *,
    dropout: float | None = None,
    name: str | None = None,
    provenance: dict[str, Any] | None = None,
) -> NetworkSpec:
    """Grow `spec`: repeats `ceil(depth * r)`, channels `round_filters(c, width)` on stem, every
    stage and head, input `resolution` pixels. Provenance records the base and the multipliers."""
    checks.instance("spec", spec, NetworkSpec, "a NetworkSpec (effnet.load_spec(path))")
    for setting, value in (("depth", depth), ("width", width), ("resolution", resolution)):
        checks.number(setting, value)
    if depth <= 0 or width <= 0:
        raise InputError(f"depth and width multipliers must be positive, got depth={depth}, width={width}")
    if resolution < 1:
        raise InputError(f"resolution must be a positive number of pixels, got {resolution}")
    if resolution < spec.total_stride:
        raise InputError(f"resolution {resolution} px is below the network's total stride {spec.total_stride}")
    record = {
        "scaled_from": spec.name,
        "base_provenance": dict(spec.provenance),
        "depth": float(depth),
        "width": float(width),
        "resolution": int(resolution),
    }
    record.update(provenance or {})
    return spec.replace(
        name=name or f"{spec.name}-scaled",
        resolution=int(resolution),
        stem=StemSpec(round_filters(spec.stem.out_channels, width), spec.stem.kernel, spec.stem.stride),
        stages=tuple(
            dataclasses.replace(
                stage,
                repeats=round_repeats(stage.repeats, depth),
                out_channels=round_filters(stage.out_channels, width),
            )
            for stage in spec.stages
        ),
        head=HeadSpec(round_filters(spec.head.out_channels, width)),
        dropout=spec.dropout if dropout is None else float(dropout),
        provenance=record,
    )


MAX_COEFFICIENT = 4.0
MAX_PHI = 100.0
"""Bounds that keep every power finite: (alpha * beta^2 * gamma^2)^phi <= (4^5)^100 ~ 1e301. Far past
them no network is within the spec limits anyway (alpha 1.2 at phi 100 multiplies depth by 8e7)."""
MAX_DROPOUT = 0.5
"""The reference family's dropout ceiling (B6 and B7)."""


def reference_dropout(base_dropout: float, phi: float) -> float:
    """Dropout of the member at `phi`: the reference family's ladder B0..B7 = .2 .2 .3 .3 .4 .4 .5 .5.

    Rule: `base + 0.1 * ceil((phi - 1) / 2)`, never below the base and never above 0.5 (a base
    already at or above 0.5 keeps its own value). The same formula serves fractional phi: for any
    phi > 0 it equals the value of the integer member `ceil(phi)`, so a member between two
    reference models takes the dropout of the larger one (the conservative side: more
    regularisation). phi <= 1 keeps the base value.
    """
    steps = max(0, math.ceil((phi - 1) / 2))
    grown = min(MAX_DROPOUT, base_dropout + 0.1 * steps)
    return round(max(base_dropout, grown), 10)


@dataclass(frozen=True)
class Coefficients:
    """Compound scaling coefficients: depth `alpha`, width `beta`, resolution `gamma` per unit of phi, and
    `caveats`: sentences against trusting them that travel to the family (an incomplete grid, a choice
    within noise; `effnet.scaling.caveats`)."""

    alpha: float
    beta: float
    gamma: float
    caveats: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        for key in ("alpha", "beta", "gamma"):
            value = getattr(self, key)
            checks.number(key, value, high=MAX_COEFFICIENT)
            if value < 1:
                raise SettingError(key, f"must be at least 1 (compound scaling only grows the network), got {value}")

    @property
    def flops_factor(self) -> float:
        """The paper's ideal FLOPs growth per unit of phi, alpha * beta^2 * gamma^2."""
        return self.alpha * self.beta**2 * self.gamma**2

    def as_dict(self) -> dict[str, float]:
        return {"alpha": float(self.alpha), "beta": float(self.beta), "gamma": float(self.gamma)}


def compound_scale(
    spec: NetworkSpec,
    alpha: float,
    beta: float,
    gamma: float,
    phi: float,
    *,
    dropout_rule: Callable[[float, float], float] = reference_dropout,
    name: str | None = None,
) -> NetworkSpec:
    """Grow `spec` along the compound direction: depth alpha^phi, width beta^phi, resolution
    `scaled_resolution(spec.resolution, gamma^phi)`, dropout `dropout_rule(spec.dropout, phi)`."""
    checks.instance("spec", spec, NetworkSpec, "a NetworkSpec (effnet.load_spec(path))")
    coefficients = Coefficients(alpha, beta, gamma)
    checks.number("phi", phi, low=0, high=MAX_PHI)
    depth, width, resolution_multiplier = alpha**phi, beta**phi, gamma**phi
    return scale(
        spec,
        depth=depth,
        width=width,
        resolution=scaled_resolution(spec.resolution, resolution_multiplier),
        dropout=dropout_rule(spec.dropout, phi),
        name=name or f"{spec.name}-phi{phi:g}",
        provenance={
            "method": "compound scaling",
            **coefficients.as_dict(),
            "phi": float(phi),
            "resolution_multiplier": float(resolution_multiplier),
            "base_resolution": spec.resolution,
        },
    )
