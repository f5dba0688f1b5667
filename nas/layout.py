"""A spec expanded block by block: the one place that decides channels, resolutions and shortcuts.

The model builder and the analytic counters both read this plan, so the network that is built
and the network that is counted cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from effnet.nas.spec import NetworkSpec


def conv_output_size(size: int, stride: int) -> int:
    """Spatial size after an odd-kernel convolution with padding kernel // 2: ceil(size / stride)."""
    return -(-size // stride)


def se_channels(in_channels: int, se_ratio: float) -> int:
    """Squeeze-excitation width, sized from the block's input channels as the reference does."""
    return max(1, int(in_channels * se_ratio)) if se_ratio > 0 else 0


@dataclass(frozen=True)
class BlockPlan:
    index: int
    stage: int
    block: str
    in_channels: int
    mid_channels: int
    out_channels: int
    kernel: int
    stride: int
    se_channels: int
    residual: bool
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


def plan_network(spec: NetworkSpec) -> NetworkPlan:
    size = conv_output_size(spec.resolution, spec.stem.stride)
    stem_size = size
    channels = spec.stem.out_channels
    total = spec.num_blocks
    blocks = []
    for stage_index, stage in enumerate(spec.stages):
        for repeat in range(stage.repeats):
            stride = stage.stride if repeat == 0 else 1
            out_size = conv_output_size(size, stride)
            index = len(blocks)
            blocks.append(BlockPlan(
                index=index,
                stage=stage_index,
                block=stage.block,
                in_channels=channels,
                mid_channels=channels * stage.expand,
                out_channels=stage.out_channels,
                kernel=stage.kernel,
                stride=stride,
                se_channels=se_channels(channels, stage.se_ratio),
                residual=stage.skip and stride == 1 and channels == stage.out_channels,
                in_size=size,
                out_size=out_size,
                drop_rate=spec.drop_connect * index / total,
            ))
            channels, size = stage.out_channels, out_size
    return NetworkPlan(spec=spec, stem_size=stem_size, blocks=tuple(blocks))
