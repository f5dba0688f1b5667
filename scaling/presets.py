"""The official EfficientNet family: the TensorFlow reference's coefficient table, built with `scale`."""

from __future__ import annotations

from dataclasses import dataclass

from effnet.nas.errors import InputError
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.net.spec_file import load_spec
from effnet.nas.resources import reference_b0_path
from effnet.scaling.compound import scale


@dataclass(frozen=True)
class PresetCoefficients:
    width: float
    depth: float
    resolution: int
    dropout: float


OFFICIAL = {
    "b0": PresetCoefficients(1.0, 1.0, 224, 0.2),
    "b1": PresetCoefficients(1.0, 1.1, 240, 0.2),
    "b2": PresetCoefficients(1.1, 1.2, 260, 0.3),
    "b3": PresetCoefficients(1.2, 1.4, 300, 0.3),
    "b4": PresetCoefficients(1.4, 1.8, 380, 0.4),
    "b5": PresetCoefficients(1.6, 2.2, 456, 0.4),
    "b6": PresetCoefficients(1.8, 2.6, 528, 0.5),
    "b7": PresetCoefficients(2.0, 3.1, 600, 0.5),
}
"""`efficientnet_builder.efficientnet_params` of the TensorFlow reference (also paper Table 2)."""


def reference_b0() -> NetworkSpec:
    return load_spec(reference_b0_path())


def official_preset(name: str, base: NetworkSpec | None = None) -> NetworkSpec:
    key = name.lower().removeprefix("efficientnet-") if isinstance(name, str) else None
    if key not in OFFICIAL:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(OFFICIAL)}")
    c = OFFICIAL[key]
    base = reference_b0() if base is None else base
    return scale(
        base,
        depth=c.depth,
        width=c.width,
        resolution=c.resolution,
        dropout=c.dropout,
        name=f"efficientnet-{key}",
        provenance={"preset": f"efficientnet-{key}", "source": "TensorFlow reference coefficient table"},
    )
