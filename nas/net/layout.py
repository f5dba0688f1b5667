"""A spec expanded block by block: the one place that decides channels, resolutions and shortcuts.

The model builder and the analytic counters both read this plan, so the network that is built
and the network that is counted cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from effnet.nas.net.spec import POOL_SKIP, NetworkSpec, StageSpec


def conv_output_size(size: int, stride: int) -> int:
    """Spatial size after an odd-kernel convolution with padding kernel // 2: ceil(size / stride)."""
    return -(-size // stride)


def se_channels(in_channels: int, se_ratio: float) -> int:
    """Squeeze-excitation width, sized from the block's input channels as the reference does."""
    return max(1, int(in_channels * se_ratio)) if se_ratio > 0 else 0


class BlockPlan(NamedTuple):
    """One block's shapes (a NamedTuple: the analytic counter builds these thousands of times a second)."""

    position: int
    """The block's place in the network, from 0."""
    stage: int
    block: str
    in_channels: int
    mid_channels: int
    out_channels: int
    kernel: int
    stride: int
    se_channels: int
    residual: bool
    """The block adds a shortcut to its output: the identity, or the pooling shortcut below."""
    pool_shortcut: bool
    """The shortcut average-pools 2x2 with stride 2 (`skip: pool` on a striding block)."""
    project_shortcut: bool
    """The shortcut ends in a 1x1 conv + BatchNorm (`skip: pool` where the channels change)."""
    in_size: int
    out_size: int
    drop_rate: float


@dataclass(frozen=True)
class NetworkPlan:
    spec: NetworkSpec
    stem_size: int
    blocks: tuple[BlockPlan, ...]

    @property
    def final_size(self) -> int:
        return self.blocks[-1].out_size

    @property
    def final_channels(self) -> int:
        return self.blocks[-1].out_channels


def shortcut(stage: StageSpec, stride: int, in_channels: int) -> tuple[bool, bool, bool]:
    """(residual, pool, project) of a block: the identity where stride is 1 and the channels match (unless
    `skip` is off); with `skip: pool` everywhere else a shortcut that pools where the block strides and
    projects where the channels change."""
    identity = stride == 1 and in_channels == stage.out_channels
    if stage.skip == POOL_SKIP and not identity:
        return True, stride != 1, in_channels != stage.out_channels
    return bool(stage.skip) and identity, False, False


def stage_blocks(spec: NetworkSpec) -> list[tuple[BlockPlan, BlockPlan | None]]:
    """Per stage, its first block and (if it repeats) the block every later repeat copies.

    Only the first block of a stage strides or changes channels, so two shapes describe a stage.
    `index` and `drop_rate` are those of the stage's first block.
    """
    size = conv_output_size(spec.resolution, spec.stem.stride)
    channels = spec.stem.out_channels
    index, total = 0, spec.num_blocks
    stages = []
    for stage_index, stage in enumerate(spec.stages):
        shapes = []
        for stride in (stage.stride, 1) if stage.repeats > 1 else (stage.stride,):
            out_size = conv_output_size(size, stride)
            residual, pool, project = shortcut(stage, stride, channels)
            shapes.append(
                BlockPlan(
                    position=index,
                    stage=stage_index,
                    block=stage.block,
                    in_channels=channels,
                    mid_channels=channels * stage.expand,
                    out_channels=stage.out_channels,
                    kernel=stage.kernel,
                    stride=stride,
                    se_channels=se_channels(channels, stage.se_ratio),
                    residual=residual,
                    pool_shortcut=pool,
                    project_shortcut=project,
                    in_size=size,
                    out_size=out_size,
                    drop_rate=spec.drop_connect * index / total,
                )
            )
            channels, size = stage.out_channels, out_size
        stages.append((shapes[0], shapes[1] if len(shapes) > 1 else None))
        index += stage.repeats
    return stages


def plan_network(spec: NetworkSpec) -> NetworkPlan:
    blocks = []
    total = spec.num_blocks
    for (first, repeated), stage in zip(stage_blocks(spec), spec.stages, strict=True):
        blocks.append(first)
        if repeated is None:  # a stage of one block
            continue
        for offset in range(1, stage.repeats):
            index = first.position + offset
            blocks.append(repeated._replace(position=index, drop_rate=spec.drop_connect * index / total))
    return NetworkPlan(spec=spec, stem_size=conv_output_size(spec.resolution, spec.stem.stride), blocks=tuple(blocks))
