"""FLOPs and parameters: fvcore as the authority, and an analytic counter that matches it exactly.

What "FLOPs" means in effnet (fvcore's default convention, the paper's: EfficientNet-B0 is 0.39 B):
one fused multiply-add is one FLOP, counted on the model in eval mode at the spec's resolution,
batch 1, and only these operators count:

- ``conv``: out_h * out_w * out_channels * in_channels / groups * kernel^2 (bias not counted);
- ``batch_norm``: 2 per input element (eval mode, affine);
- ``adaptive_avg_pool2d``: 1 per input element (the head's global pooling);
- ``linear``: in_features * out_features (bias not counted).

Activations (SiLU, ReLU, sigmoid), the squeeze-excitation gate multiply, residual adds, the
`mean` of squeeze-excitation and the 2x2 `avg_pool2d` of a pooling shortcut count zero, as in fvcore
(a pooling shortcut's 1x1 projection is a conv and a batch_norm like any other). The analytic counter reads
the same block plan as the builder and reproduces fvcore's per-operator totals exactly, about 10,000x faster
(`effnet.nas.net.counting` counts with either).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from effnet.nas.net.layout import BlockPlan, conv_output_size, stage_blocks
from effnet.nas.net.spec import NetworkSpec

OPERATORS = ("conv", "batch_norm", "adaptive_avg_pool2d", "linear")


class Cost:
    """FLOPs by fvcore operator name, and parameters, of one part of a network (plain ints: this is hot)."""

    __slots__ = ("conv", "batch_norm", "adaptive_avg_pool2d", "linear", "params")

    def __init__(self) -> None:
        self.conv = self.batch_norm = self.adaptive_avg_pool2d = self.linear = self.params = 0

    @property
    def flops(self) -> int:
        return self.conv + self.batch_norm + self.adaptive_avg_pool2d + self.linear

    def by_operator(self) -> dict[str, int]:
        return {op: getattr(self, op) for op in OPERATORS if getattr(self, op)}

    def add_conv_bn(self, in_ch: int, out_ch: int, kernel: int, out_size: int, groups: int = 1) -> None:
        pixels = out_size * out_size
        weights = out_ch * (in_ch // groups) * kernel * kernel
        self.conv += pixels * weights
        self.batch_norm += 2 * out_ch * pixels
        self.params += weights + 2 * out_ch

    def add_se(self, channels: int, reduced: int) -> None:
        self.conv += 2 * channels * reduced
        self.params += 2 * channels * reduced + channels + reduced

    def add(self, other: Cost, times: int = 1) -> Cost:
        self.conv += other.conv * times
        self.batch_norm += other.batch_norm * times
        self.adaptive_avg_pool2d += other.adaptive_avg_pool2d * times
        self.linear += other.linear * times
        self.params += other.params * times
        return self


@dataclass
class CostReport:
    """Whole-network totals and the parts they come from: stem, one entry per stage, head."""

    total: Cost
    stem: Cost
    stages: list[Cost] = field(default_factory=list)
    head: Cost = field(default_factory=Cost)

    @property
    def flops(self) -> int:
        return self.total.flops

    @property
    def params(self) -> int:
        return self.total.params


def block_cost(b: BlockPlan) -> Cost:
    cost = Cost()
    if b.block == "mbconv":
        if b.mid_channels != b.in_channels:
            cost.add_conv_bn(b.in_channels, b.mid_channels, 1, b.in_size)
        cost.add_conv_bn(b.mid_channels, b.mid_channels, b.kernel, b.out_size, groups=b.mid_channels)
        if b.se_channels:
            cost.add_se(b.mid_channels, b.se_channels)
        cost.add_conv_bn(b.mid_channels, b.out_channels, 1, b.out_size)
    elif b.block == "dsconv":
        cost.add_conv_bn(b.in_channels, b.in_channels, b.kernel, b.out_size, groups=b.in_channels)
        if b.se_channels:
            cost.add_se(b.in_channels, b.se_channels)
        cost.add_conv_bn(b.in_channels, b.out_channels, 1, b.out_size)
    else:
        cost.add_conv_bn(b.in_channels, b.out_channels, b.kernel, b.out_size)
        if b.se_channels:
            cost.add_se(b.out_channels, b.se_channels)
    if b.project_shortcut:
        cost.add_conv_bn(b.in_channels, b.out_channels, 1, b.out_size)
    return cost


def analytic_cost(spec: NetworkSpec) -> CostReport:
    """FLOPs (fvcore's convention) and parameters of a spec, from the spec alone.

    A stage's later repeats share one shape (`stage_blocks`), so each is counted once and multiplied.
    """
    stem = Cost()
    stem_size = conv_output_size(spec.resolution, spec.stem.stride)
    stem.add_conv_bn(spec.in_channels, spec.stem.out_channels, spec.stem.kernel, stem_size)
    stages = []
    last = None
    for (first, repeated), stage in zip(stage_blocks(spec), spec.stages, strict=True):
        cost = block_cost(first)
        if repeated is not None:
            cost.add(block_cost(repeated), stage.repeats - 1)
        stages.append(cost)
        last = repeated or first
    assert last is not None, "a spec has at least one stage"
    head = Cost()
    head.add_conv_bn(last.out_channels, spec.head.out_channels, 1, last.out_size)
    head.adaptive_avg_pool2d = spec.head.out_channels * last.out_size * last.out_size
    head.linear = spec.head.out_channels * spec.num_classes
    head.params += spec.head.out_channels * spec.num_classes + spec.num_classes
    total = Cost()
    for part in (stem, *stages, head):
        total.add(part)
    return CostReport(total=total, stem=stem, stages=stages, head=head)


def analytic_flops(spec: NetworkSpec) -> int:
    return analytic_cost(spec).flops
