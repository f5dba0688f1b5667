"""The TensorFlow reference's own B1-B7 as a family (`--preset official`), and `official_family_fit`: the phi
that best explains each under chosen coefficients."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from effnet.nas.errors import InputError
from effnet.nas.net.spec import NetworkSpec
from effnet.scaling.compound import Coefficients
from effnet.scaling.family import FamilyMember, family_member
from effnet.scaling.presets import OFFICIAL, official_preset

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
        members.append(family_member(fit.name, fit.phi, fit.depth, fit.width, spec, b0, coefficients))
    return members, fits
