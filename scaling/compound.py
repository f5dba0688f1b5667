"""`scale`: one pure function from spec to spec, used by the official presets and the compound family."""

from __future__ import annotations

import dataclasses
from typing import Any

from effnet.nas.errors import InputError
from effnet.nas.rounding import round_filters, round_repeats
from effnet.nas.spec import HeadSpec, NetworkSpec, StemSpec


def scaled_resolution(base_resolution: int, multiplier: float) -> int:
    """The one rounding rule for resolution: the nearest whole pixel, halves rounded up."""
    return int(base_resolution * multiplier + 0.5)


def scale(spec: NetworkSpec, depth: float, width: float, resolution: int, *,
          dropout: float | None = None, name: str | None = None,
          provenance: dict[str, Any] | None = None) -> NetworkSpec:
    """Grow `spec`: repeats `ceil(depth * r)`, channels `round_filters(c, width)` on stem, every
    stage and head, input `resolution` pixels. Provenance records the base and the multipliers."""
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
            dataclasses.replace(stage, repeats=round_repeats(stage.repeats, depth),
                                out_channels=round_filters(stage.out_channels, width))
            for stage in spec.stages
        ),
        head=HeadSpec(round_filters(spec.head.out_channels, width)),
        dropout=spec.dropout if dropout is None else float(dropout),
        provenance=record,
    )
