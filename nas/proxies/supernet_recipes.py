"""How a supernet's training step trains its paths: `uniform` or `sandwich`.

`uniform` (single-path one-shot, Guo et al., ECCV 2020): one path drawn uniformly among those of the FLOPs band,
trained on the batch's labels.

`sandwich` (slimmable networks' sandwich rule with in-place distillation, Yu et al.; BigNAS, Yu et al., ECCV
2020): on the same batch, the largest path on the labels, then the smallest path and two random in-band paths
on the largest path's predictions (soft cross-entropy against its detached softmax: the teacher is not taught
by its students), the gradients accumulated into one optimizer step. Largest and smallest are by analytic
FLOPs among the paths the supernet trains, those of the band: the space's own extremes where the band holds
them (`space_extremes`: at the widest or narrowest width per stage, the stage's costliest or cheapest option,
exact), else the costliest and cheapest of `EXTREME_DRAWS` random in-band paths (`band_extremes`). Outside the
band a path is never scored, and the space's extremes can be far from it (the efficientnet space spans
51M-2.0G FLOPs, where a 400M band lies): BigNAS's extremes would spend most of each step on weights no
candidate uses.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from effnet.nas.net.flops import analytic_flops
from effnet.nas.net.rounding import round_filters
from effnet.nas.net.spec import NetworkSpec, StageSpec
from effnet.nas.space.choices import SearchSpace
from effnet.nas.space.reach import stage_options

RANDOM_PATHS = 2
"""Random in-band paths a sandwich step trains beside the largest and the smallest (BigNAS's two)."""
EXTREME_DRAWS = 2_000
"""In-band paths drawn to find the band's largest and smallest where the space's extremes lie outside it."""

DrawPath = Callable[[random.Random], NetworkSpec]
"""Draws one in-band path from the random generator it is given."""


@dataclass(frozen=True)
class Sandwich:
    """The fixed paths of a sandwich step: the largest, the teacher, and the smallest."""

    largest: NetworkSpec
    smallest: NetworkSpec

    def __iter__(self) -> Iterator[NetworkSpec]:
        return iter((self.largest, self.smallest))

    def paths(self, rng: random.Random, draw: DrawPath) -> list[NetworkSpec]:
        """The step's paths, teacher first: largest, smallest, then `RANDOM_PATHS` drawn from `rng`."""
        return [self.largest, self.smallest, *(draw(rng) for _ in range(RANDOM_PATHS))]


def space_extremes(space: SearchSpace) -> tuple[NetworkSpec, NetworkSpec]:
    """The space's paths of most and fewest FLOPs. FLOPs grow with every stage's channels, so the most costly
    path is at each stage's widest width and the least at its narrowest; with the widths fixed, a stage's cost
    depends on its own choices alone, so each stage's costliest (cheapest) option is chosen on its own."""

    def extreme(pick: Any) -> NetworkSpec:
        spec = space.build(lambda _name, options: options[0])
        for index, choices in enumerate(space.stages):
            channels = round_filters(choices.out_channels, pick(choices.width))
            paths = [
                _with_stage(spec, index, stage)
                for stage in stage_options(choices, skips=True)
                if stage.out_channels == channels
            ]
            spec = pick(paths, key=analytic_flops)
        return spec

    return extreme(max), extreme(min)


def _with_stage(spec: NetworkSpec, index: int, stage: StageSpec) -> NetworkSpec:
    return spec.replace(stages=(*spec.stages[:index], stage, *spec.stages[index + 1 :]))


def band_extremes(space: SearchSpace, low: float, high: float, draw: DrawPath, seed: int) -> Sandwich:
    """The largest and smallest paths the supernet trains in the FLOPs band [low, high]: the space's extremes
    where they lie in it, else the costliest (cheapest) of `EXTREME_DRAWS` in-band paths drawn from `seed`."""
    largest, smallest = space_extremes(space)
    if low <= analytic_flops(largest) <= high and low <= analytic_flops(smallest) <= high:
        return Sandwich(largest, smallest)
    rng = random.Random(seed)
    drawn = sorted((draw(rng) for _ in range(EXTREME_DRAWS)), key=analytic_flops)
    return Sandwich(
        largest if analytic_flops(largest) <= high else drawn[-1],
        smallest if analytic_flops(smallest) >= low else drawn[0],
    )


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy of the student's logits against the teacher's predicted distribution, the teacher
    detached (KL divergence from the teacher plus its entropy, a constant to the student); mean over the batch."""
    target = teacher.detach().float().softmax(dim=1)
    return -(target * student.float().log_softmax(dim=1)).sum(dim=1).mean()


def sandwich_backward(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    paths: Sequence[NetworkSpec],
    autocast: AbstractContextManager,
) -> torch.Tensor:
    """Accumulate one sandwich step's gradients: `paths[0]` (the teacher) on `labels`, each other path on the
    teacher's detached predictions, one backward per path (one graph held at a time). Returns the teacher's
    label loss, detached."""
    teacher, *students = paths
    with autocast:
        logits = model(images, teacher)
        loss = F.cross_entropy(logits, labels)
    loss.backward()
    soft = logits.detach()
    for path in students:
        with autocast:
            student = distillation_loss(model(images, path), soft)
        student.backward()
    return loss.detach()
