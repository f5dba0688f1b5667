"""A network as the parts a latency table times: its stem, each of its blocks, its head.

In eager execution (torch, folded) every layer is its own kernel, run one after the other, and onnxruntime runs
a block's nodes in order too: a network's time is close to the sum of its parts' times (FBNet's and
Once-for-All's latency lookup tables), less what one part's data left in the caches for the next. A part is
named by a key that holds everything its time depends on (type, channels, kernel, stride, squeeze-excitation
width, shortcut, input size, activation, padding) and nothing else, so blocks of different networks with the
same shapes are one entry. `space_parts` lists every part any network of a space can have, exactly: the stages
are a chain, a stage's blocks depend on its own choices and the channels the previous stage's width gives it
(`effnet.nas.space.reach` walks the same chain for FLOPs).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import nn

from effnet.nas.net.layout import BlockPlan, conv_output_size, plan_network, stage_blocks
from effnet.nas.net.model import Block, ConvBNAct
from effnet.nas.net.spec import NetworkSpec, StageSpec, StemSpec
from effnet.nas.space.choices import SearchSpace, StageChoices
from effnet.nas.space.reach import stage_options


@dataclass(frozen=True)
class Part:
    """One part to time: its key, what it is (`stem`, `block`, `head`), the spec whose activation, padding,
    BatchNorm, stem, head and classes it is built with, the shape of one image it takes (channels, height,
    width) and, for a block, its plan."""

    key: str
    kind: str
    spec: NetworkSpec
    input_shape: tuple[int, int, int]
    plan: BlockPlan | None = None

    def build(self) -> nn.Module:
        """The part as `build_model` builds it inside a network (weights initialised, train mode)."""
        spec = self.spec
        if self.kind == "stem":
            stem = spec.stem
            return ConvBNAct(spec.in_channels, stem.out_channels, stem.kernel, stem.stride, spec)
        if self.kind == "head":
            return Head(self.input_shape[0], spec)
        assert self.plan is not None, "a block part has its plan"
        return Block(self.plan, spec)


class Head(nn.Sequential):
    """A network's end as `Network.forward` runs it: 1x1 conv-BN-act, global average pooling, the classifier
    (dropout is the identity at inference)."""

    def __init__(self, in_channels: int, spec: NetworkSpec):
        out = spec.head.out_channels
        super().__init__(
            ConvBNAct(in_channels, out, 1, 1, spec),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Linear(out, spec.num_classes),
        )


def _shortcut(plan: BlockPlan) -> str:
    if not plan.residual:
        return "none"
    if plan.pool_shortcut or plan.project_shortcut:
        return ("pool" if plan.pool_shortcut else "") + ("proj" if plan.project_shortcut else "")
    return "id"


def _style(spec: NetworkSpec) -> str:
    return f"{spec.activation}:{spec.padding}"


def stem_key(spec: NetworkSpec) -> str:
    stem = spec.stem
    return (
        f"stem:c{spec.in_channels}>{stem.out_channels}:k{stem.kernel}:s{stem.stride}:r{spec.resolution}:{_style(spec)}"
    )


def block_key(plan: BlockPlan, spec: NetworkSpec) -> str:
    p = plan
    return (
        f"{p.block}:c{p.in_channels}>{p.mid_channels}>{p.out_channels}:k{p.kernel}:s{p.stride}:se{p.se_channels}:"
        f"{_shortcut(p)}:r{p.in_size}:{_style(spec)}"
    )


def head_key(channels: int, size: int, spec: NetworkSpec) -> str:
    return f"head:c{channels}>{spec.head.out_channels}>{spec.num_classes}:r{size}:{spec.activation}"


def network_keys(spec: NetworkSpec) -> list[str]:
    """The keys of a network's parts, in the order it runs them (a block that repeats, once per repeat)."""
    plan = plan_network(spec)
    last = plan.blocks[-1]
    return [
        stem_key(spec),
        *(block_key(block, spec) for block in plan.blocks),
        head_key(last.out_channels, last.out_size, spec),
    ]


def space_parts(space: SearchSpace) -> list[Part]:
    """Every distinct part of every network `space` can make, each once, in the order a network runs them."""
    found: dict[str, Part] = {}
    for part in _space_parts(space):
        found.setdefault(part.key, part)
    return list(found.values())


def stage_parts(base: NetworkSpec, channels: int, size: int, choices: StageChoices) -> Iterator[StageParts]:
    """Every stage `choices` can make when fed `channels` at `size` px, with its blocks as parts."""
    for stage in stage_options(choices, skips=True):
        # the stage alone, fed `channels` at `size` px by a 1x1 stem: its blocks are the network's
        probe = base.replace(resolution=size, stem=StemSpec(channels, 1, 1), stages=(stage,))
        first, repeated = (
            None if plan is None else Part(block_key(plan, base), "block", base, _block_shape(plan), plan)
            for plan in stage_blocks(probe)[0]
        )
        assert first is not None, "a stage has a first block"
        yield StageParts(stage, first, repeated)


@dataclass(frozen=True)
class StageParts:
    """A stage and its blocks as parts: the first, and the one its later repeats copy (None for one block)."""

    stage: StageSpec
    first: Part
    repeated: Part | None

    def keys(self) -> Iterator[str]:
        yield self.first.key
        if self.repeated is not None:
            yield from [self.repeated.key] * (self.stage.repeats - 1)


def _block_shape(plan: BlockPlan) -> tuple[int, int, int]:
    return (plan.in_channels, plan.in_size, plan.in_size)


def stem_part(base: NetworkSpec) -> Part:
    return Part(stem_key(base), "stem", base, (base.in_channels, base.resolution, base.resolution))


def head_part(base: NetworkSpec, channels: int, size: int) -> Part:
    return Part(head_key(channels, size, base), "head", base, (channels, size, size))


def _space_parts(space: SearchSpace) -> Iterator[Part]:
    base = space.base
    yield stem_part(base)
    channels_in = {base.stem.out_channels}
    size = conv_output_size(base.resolution, base.stem.stride)
    for choices in space.stages:
        channels_out = set()
        for channels in sorted(channels_in):
            for option in stage_parts(base, channels, size, choices):
                yield option.first
                if option.repeated is not None:
                    yield option.repeated
                channels_out.add(option.stage.out_channels)
        channels_in = channels_out
        size = conv_output_size(size, choices.stride)
    for channels in sorted(channels_in):
        yield head_part(base, channels, size)
