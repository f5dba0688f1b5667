"""The fastest and slowest networks a space can make, as a latency table predicts them.

A network's predicted time is a sum over its parts, and a stage's parts depend only on its own choices and the
channels the previous stage hands it, so the least and greatest sums follow from one pass over the stages that
keeps, for each channel count a stage can output, the least and greatest time of any choices up to it (the
dynamic programme `effnet.nas.space.reach` runs for FLOPs): exact, without enumerating the networks.
"""

from __future__ import annotations

from dataclasses import dataclass

from effnet.nas.errors import InputError
from effnet.nas.latency.parts import head_part, stage_parts, stem_part
from effnet.nas.latency.table import LatencyTable
from effnet.nas.net.layout import conv_output_size
from effnet.nas.space.choices import SearchSpace


@dataclass(frozen=True)
class LatencyReach:
    """The least and greatest predicted latency, in seconds, of the space's networks."""

    fastest_s: float
    slowest_s: float


def latency_reach(space: SearchSpace, table: LatencyTable) -> LatencyReach:
    """The least and greatest latency `table` predicts for a network of `space`, found exactly without
    enumerating the networks.

    Args:
        space: the search space (`effnet.load_space`), at the resolution and classes the table was built for.
        table: this machine's latency table holding every part of the space (`effnet.build_latency_table`).

    Raises:
        InputError: the table lacks a part of the space (built for another space or resolution); the message
            names the command that builds it.

    Example:
        >>> import effnet
        >>> space = effnet.load_space("mnasnet")
        >>> table = effnet.build_latency_table(space).table  # doctest: +SKIP
        >>> reach = effnet.latency_reach(space, table)  # doctest: +SKIP
        >>> reach.fastest_s <= reach.slowest_s  # doctest: +SKIP
        True
    """
    base = space.base
    times = table.parts

    def time_of(key: str) -> float:
        if key not in times:
            raise InputError(
                f"the latency table lacks parts of the {space.name} space (first: {key}); "
                f"build it for this space: effnet latency-table --space {space.name}"
            )
        return times[key].median_s

    stem = time_of(stem_part(base).key)
    reached = {base.stem.out_channels: (stem, stem)}
    size = conv_output_size(base.resolution, base.stem.stride)
    for choices in space.stages:
        after: dict[int, tuple[float, float]] = {}
        for channels, (low, high) in reached.items():
            for option in stage_parts(base, channels, size, choices):
                cost = sum(time_of(key) for key in option.keys())
                out = option.stage.out_channels
                known = after.get(out)
                new = (low + cost, high + cost)
                after[out] = new if known is None else (min(known[0], new[0]), max(known[1], new[1]))
        reached = after
        size = conv_output_size(size, choices.stride)
    totals = [
        (low + time_of(head_part(base, channels, size).key), high + time_of(head_part(base, channels, size).key))
        for channels, (low, high) in reached.items()
    ]
    return LatencyReach(
        fastest_s=table.factor * min(low for low, _ in totals), slowest_s=table.factor * max(high for _, high in totals)
    )
