"""Seeded random network specs across the MnasNet operator set, small enough to count quickly.

Every draw goes through `spec_from_dict`, so each one is also a spec the validator accepts.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from effnet.nas.net.spec import ACTIVATIONS, NetworkSpec
from effnet.nas.net.spec_file import spec_from_dict
from effnet.nas.space.choices import CHOICE_KEYS, SearchSpace

SE_RATIOS = (0.0, 0.0, 0.05, 0.1, 0.25, 0.5, 0.9)
EXPANDS = (1, 3, 4, 6)
KERNELS = (3, 5, 7)
NAMES = ("net", "yes", "null", "123", "1e3", "a: b", "- dash", "~", "ünïcode")
"""Names that YAML would read as something else unless the dumper quotes them."""


def random_skip(draw: float) -> bool | str:
    """MnasNet's SkipOp from one uniform draw: identity 45 %, pooling 25 %, none 30 %."""
    return True if draw < 0.45 else "pool" if draw < 0.7 else False


def random_stage(rng: random.Random) -> dict[str, Any]:
    block = rng.choice(("mbconv", "mbconv", "dsconv", "conv"))
    return {
        "block": block,
        "repeats": rng.randint(1, 3),
        "kernel": rng.choice(KERNELS),
        "stride": rng.choice((1, 2)),
        "expand": rng.choice(EXPANDS) if block == "mbconv" else 1,
        "out_channels": rng.randint(3, 16),
        "se_ratio": rng.choice(SE_RATIOS),
        "skip": random_skip(rng.random()),
    }


def random_resolution(rng: random.Random, total_stride: int) -> int:
    """Mostly 32-64 px, sometimes up to 160 px or down to the smallest size the strides allow."""
    draw = rng.random()
    if draw < 0.1:
        return rng.randint(total_stride, max(total_stride, 32))
    if draw < 0.2:
        return rng.randint(65, 160)
    return rng.randint(max(32, total_stride), 64)


def random_spec_dict(rng: random.Random) -> dict[str, Any]:
    stem = {"out_channels": rng.randint(3, 16), "kernel": rng.choice((1, 3, 5)), "stride": rng.choice((1, 2))}
    stages = [random_stage(rng) for _ in range(rng.randint(1, 5))]
    total_stride = stem["stride"] * 2 ** sum(s["stride"] == 2 for s in stages)
    return {
        "name": rng.choice(NAMES),
        "resolution": random_resolution(rng, total_stride),
        "num_classes": rng.randint(1, 120),
        "in_channels": rng.choice((1, 3, 4)),
        "activation": rng.choice(ACTIVATIONS),
        "dropout": rng.choice((0.0, 0.2, 0.5)),
        "drop_connect": rng.choice((0.0, 0.1, 0.3)),
        "batch_norm": {"decay": rng.choice((0.9, 0.99, 0.997)), "epsilon": rng.choice((1e-3, 1e-5))},
        "stem": stem,
        "stages": stages,
        "head": {"out_channels": rng.randint(8, 64)},
        "provenance": {
            "trial": rng.randint(0, 10_000),
            "note": rng.choice(("random", "x: y", "")),
            "coefficients": {"alpha": rng.random(), "phi": rng.randint(1, 7)},
        },
    }


def random_specs(count: int, seed: int) -> list[NetworkSpec]:
    rng = random.Random(seed)
    return [spec_from_dict(random_spec_dict(rng), f"<random spec {i} of seed {seed}>") for i in range(count)]


def every_network(space: SearchSpace) -> list[NetworkSpec]:
    """Every distinct network of the space, by trying every combination of its decisions."""
    names, options = [], []
    for i, stage in enumerate(space.stages):
        for key in CHOICE_KEYS:
            if len(getattr(stage, key)) > 1:
                names.append(f"s{i + 1}_{key}")
                options.append(getattr(stage, key))
    networks: dict[str, NetworkSpec] = {}
    for combo in itertools.product(*options):
        picked = dict(zip(names, combo, strict=True))
        spec = space.build(lambda name, _options, picked=picked: picked[name])
        networks.setdefault(repr(spec.stages), spec)
    return list(networks.values())
