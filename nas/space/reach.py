"""What a search space can reach: its least and greatest FLOPs, and the most any of its networks costs.

A sampled network is the space's base with one choice per stage. A stage's cost depends on its own
choices and on the channels it receives, which the previous stage's width alone decides (strides and
resolution are the skeleton's); the stem's cost is fixed and the head's depends only on the last
stage's channels. So the extremes of the total follow from one pass over the stages that keeps, for
each channel count a stage can output, the least and the most that any choices up to it can cost
(dynamic programming over a chain of stages): exact, and linear in the number of stages where
enumerating the networks is exponential. Identity skips cost nothing (a residual add counts zero
FLOPs and has no weights), so they are not enumerated.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from effnet.nas.errors import SettingError
from effnet.nas.net.flops import analytic_cost
from effnet.nas.net.layout import conv_output_size, stage_blocks
from effnet.nas.net.limits import SpecCost, stage_activations
from effnet.nas.net.rounding import round_filters
from effnet.nas.net.spec import StageSpec, StemSpec
from effnet.nas.space.choices import SearchSpace, StageChoices
from effnet.nas.units import format_size


@dataclass(frozen=True)
class _Totals:
    """Least FLOPs and most of each cost over the choices that lead to one channel count."""

    min_flops: int
    max: SpecCost

    def plus(self, flops: int, step: SpecCost) -> _Totals:
        m = self.max
        return _Totals(
            self.min_flops + flops,
            SpecCost(
                m.blocks + step.blocks, m.params + step.params, m.flops + step.flops, m.activations + step.activations
            ),
        )

    def merge(self, other: _Totals) -> _Totals:
        a, b = self.max, other.max
        return _Totals(
            min(self.min_flops, other.min_flops),
            SpecCost(
                max(a.blocks, b.blocks),
                max(a.params, b.params),
                max(a.flops, b.flops),
                max(a.activations, b.activations),
            ),
        )


@dataclass(frozen=True)
class SpaceReach:
    """The least and greatest FLOPs of the space's networks, and the most blocks, parameters, FLOPs and
    feature-map values any of them has (each the maximum over the whole space on its own)."""

    min_flops: int
    max_flops: int
    largest: SpecCost


def stage_options(choices: StageChoices, skips: bool = False) -> Iterator[StageSpec]:
    """Every stage the choices can make; `skips` False: up to the skip (each with the first skip choice)."""
    for block, kernel, se_ratio, width, offset, skip in itertools.product(
        choices.block,
        choices.kernel,
        choices.se_ratio,
        choices.width,
        choices.repeats_offset,
        choices.skip if skips else choices.skip[:1],
    ):
        for expand in choices.expand if block == "mbconv" else (1,):
            yield StageSpec(
                block=block,
                repeats=choices.repeats + offset,
                kernel=kernel,
                stride=choices.stride,
                expand=expand,
                out_channels=round_filters(choices.out_channels, width),
                se_ratio=se_ratio,
                skip=skip,
            )


def space_reach(space: SearchSpace) -> SpaceReach:
    base = space.base
    stem = analytic_cost(base).stem
    stem_channels, size = base.stem.out_channels, conv_output_size(base.resolution, base.stem.stride)
    start = SpecCost(0, stem.params, stem.flops, stem_channels * size**2)
    totals = {stem_channels: _Totals(stem.flops, start)}
    last_stage = len(space.stages) - 1
    for index, choices in enumerate(space.stages):
        reached: dict[int, _Totals] = {}
        for channels, so_far in totals.items():
            for stage in stage_options(choices):
                # the stage alone, fed `channels` at `size` px by a 1x1 stem: its cost is that report's stage
                probe = base.replace(resolution=size, stem=StemSpec(channels, 1, 1), stages=(stage,))
                report = analytic_cost(probe)
                first, repeated = stage_blocks(probe)[0]
                part, flops = report.stages[0], report.stages[0].flops
                step = SpecCost(stage.repeats, part.params, flops, stage_activations(first, repeated, stage.repeats))
                if index == last_stage:
                    head = report.head
                    head_values = base.head.out_channels * (repeated or first).out_size ** 2
                    flops += head.flops
                    step = SpecCost(
                        step.blocks, step.params + head.params, step.flops + head.flops, step.activations + head_values
                    )
                total = so_far.plus(flops, step)
                known = reached.get(stage.out_channels)
                reached[stage.out_channels] = total if known is None else known.merge(total)
        totals = reached
        size = conv_output_size(size, choices.stride)
    best = list(totals.values())
    overall = best[0]
    for other in best[1:]:
        overall = overall.merge(other)
    return SpaceReach(min_flops=overall.min_flops, max_flops=overall.max.flops, largest=overall.max)


def check_band(space: SearchSpace, low: int, high: int) -> SpaceReach:
    """Refuse a FLOPs band [low, high] that no network of the space reaches, naming the space's range."""
    reach = space_reach(space)
    if high < reach.min_flops or low > reach.max_flops:
        band = format_size(low) if low == high else f"{format_size(low)}–{format_size(high)}"
        reached = f"{format_size(reach.min_flops)}–{format_size(reach.max_flops)}"
        raise SettingError(
            "target_flops",
            f"asks for {band} FLOPs, which no network of the {space.name} space has: "
            f"they cost {reached} FLOPs at {space.base.resolution} px; choose a target "
            "in that range",
        )
    return reach
