"""What a spec may cost, checked from the spec alone before anything is allocated.

Each integer of a spec is bounded (`MAX_INTEGER`), yet together they can ask for more than any
machine holds: repeats in the millions, a resolution of 100,000 px. Every spec that is loaded or
scaled must stay within these limits, far above any real network (EfficientNet-B7: 55 blocks, 66 M
parameters, 38 GFLOPs, 290 M feature-map values); the analytic counters check them in microseconds.
Building a network within the limits can still need more memory than a machine has free:
`check_memory` refuses that before the build.
"""

from __future__ import annotations

from dataclasses import dataclass

from effnet.nas.errors import InputError
from effnet.nas.memory import available_memory, gib
from effnet.nas.net.flops import analytic_cost
from effnet.nas.net.layout import BlockPlan, conv_output_size, stage_blocks
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.units import format_size

MAX_BLOCKS = 10_000
MAX_PARAMS = 2_000_000_000
MAX_FLOPS = 10**13
MAX_ACTIVATIONS = 10**10
LIMITS = (
    ("blocks", MAX_BLOCKS),
    ("parameters", MAX_PARAMS),
    ("FLOPs per image", MAX_FLOPS),
    ("feature-map values per image", MAX_ACTIVATIONS),
)
BYTES_PER_VALUE = 4
"""float32: what the builder allocates and fvcore's forward pass computes in."""


def block_activations(b: BlockPlan) -> int:
    """Values of the feature maps one block's convolutions write (batch 1; squeeze-excitation's 1x1 maps
    aside)."""
    out = b.out_channels * b.out_size**2
    if b.block == "mbconv":
        expanded = b.mid_channels * b.in_size**2 if b.mid_channels != b.in_channels else 0
        return expanded + b.mid_channels * b.out_size**2 + out
    if b.block == "dsconv":
        return b.in_channels * b.out_size**2 + out
    return out


def stage_activations(first: BlockPlan, repeated: BlockPlan | None, repeats: int) -> int:
    return block_activations(first) + (repeats - 1) * (block_activations(repeated) if repeated else 0)


def activation_count(spec: NetworkSpec) -> int:
    """Feature-map values of the whole network for one image: stem, every block, the head's 1x1 conv."""
    size = conv_output_size(spec.resolution, spec.stem.stride)
    total = spec.stem.out_channels * size**2
    last = None
    for (first, repeated), stage in zip(stage_blocks(spec), spec.stages, strict=True):
        total += stage_activations(first, repeated, stage.repeats)
        last = repeated or first
    assert last is not None, "a spec has at least one stage"
    return total + spec.head.out_channels * last.out_size**2


@dataclass(frozen=True)
class SpecCost:
    blocks: int
    params: int
    flops: int
    activations: int

    def problem(self) -> str | None:
        """The first limit this cost breaks, in words, or None."""
        values = (self.blocks, self.params, self.flops, self.activations)
        for (what, limit), value in zip(LIMITS, values, strict=True):
            if value > limit:
                return f"{format_size(value)} {what}, over the limit of {format_size(limit)}"
        return None


def spec_cost(spec: NetworkSpec) -> SpecCost:
    report = analytic_cost(spec)
    return SpecCost(
        blocks=spec.num_blocks, params=report.params, flops=report.flops, activations=activation_count(spec)
    )


def check_cost(spec: NetworkSpec, source: str) -> None:
    """Refuse a spec over any limit, naming it (`source` names the file or what made the spec). Blocks first:
    the other counts take time in proportion to them."""
    blocks = SpecCost(spec.num_blocks, 0, 0, 0).problem()
    problem = blocks if blocks is not None else spec_cost(spec).problem()
    if problem is not None:
        raise InputError(
            f"{source}: spec: the network has {problem}; use fewer repeats, fewer channels or a lower resolution"
        )


def memory_needed(spec: NetworkSpec, batch: int | None = None) -> int:
    """Bytes to build the network and run one image through it: weights and every feature map, float32. With
    `batch`, a training step's least: the weights four times (with their gradients, momentum and average) and
    each of `batch` images' feature maps twice (kept for the backward pass, and their gradients); torch needs
    more, so a refusal by this count is certain."""
    cost = spec_cost(spec)
    if batch is None:
        return BYTES_PER_VALUE * (cost.params + cost.activations)
    return BYTES_PER_VALUE * (4 * cost.params + 2 * batch * cost.activations)


def check_memory(spec: NetworkSpec, purpose: str, batch: int | None = None) -> None:
    """Refuse to build a network this machine has not the free memory for (where that is known); with `batch`,
    to train it on batches of that many images."""
    needed, available = memory_needed(spec, batch), available_memory()
    if available is not None and needed > available:
        what = "weights and feature maps for one image" if batch is None else f"at least, for batches of {batch}"
        fix = "a smaller network or a machine with more memory"
        raise InputError(
            f"{spec.name}: to {purpose} the network needs about {gib(needed)} ({what}) and {gib(available)} is "
            f"free on this machine; use {fix if batch is None else 'a smaller --batch-size, ' + fix}"
        )
