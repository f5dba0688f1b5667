"""Search spaces: MnasNet's factorized hierarchical space, and how its decisions make a `NetworkSpec`.

A space is a skeleton of stages (repeats, stride, base channels) and, per stage, the choices the
search makes for every layer of that stage at once: block type, expand ratio (MBConv only),
kernel, SE ratio, skip (MnasNet's SkipOp: identity, pooling or none), width multiplier of the
skeleton's channels (rounded with the reference's `round_filters`) and repeats offset. The same
decision function serves Optuna trials, random draws and stored parameters, so a trial's spec can
always be rebuilt from its parameters. Space files are read by `effnet.nas.space.load`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from effnet.nas.net.rounding import round_filters
from effnet.nas.net.spec import NetworkSpec, Skip, StageSpec

CHOICE_KEYS = ("block", "expand", "kernel", "se_ratio", "skip", "width", "repeats_offset")


@dataclass(frozen=True)
class StageChoices:
    """The skeleton of one stage and the options searched for it."""

    repeats: int
    stride: int
    out_channels: int
    block: tuple[str, ...]
    expand: tuple[int, ...]
    kernel: tuple[int, ...]
    se_ratio: tuple[float, ...]
    skip: tuple[Skip, ...]
    width: tuple[float, ...]
    repeats_offset: tuple[int, ...]


Pick = Callable[[str, Sequence[Any]], Any]
"""Chooses one option for a named decision: Optuna's suggest_categorical, a random draw, a lookup."""


@dataclass(frozen=True)
class SearchSpace:
    name: str
    base: NetworkSpec
    """Everything but the stages (resolution, classes, stem, head, regularisation), validated."""
    stages: tuple[StageChoices, ...]

    def build(self, pick: Pick) -> NetworkSpec:
        stages = []
        for i, s in enumerate(self.stages):
            block = _pick(pick, f"s{i + 1}_block", s.block)
            expand = _pick(pick, f"s{i + 1}_expand", s.expand) if block == "mbconv" else 1
            width = _pick(pick, f"s{i + 1}_width", s.width)
            stages.append(
                StageSpec(
                    block=block,
                    repeats=s.repeats + _pick(pick, f"s{i + 1}_repeats_offset", s.repeats_offset),
                    kernel=_pick(pick, f"s{i + 1}_kernel", s.kernel),
                    stride=s.stride,
                    expand=expand,
                    out_channels=round_filters(s.out_channels, width),
                    se_ratio=_pick(pick, f"s{i + 1}_se_ratio", s.se_ratio),
                    skip=_pick(pick, f"s{i + 1}_skip", s.skip),
                )
            )
        return self.base.replace(stages=tuple(stages))

    def suggest(self, trial: Any) -> NetworkSpec:
        """Sample a spec with an Optuna trial (one categorical parameter per searched decision)."""
        return self.build(trial.suggest_categorical)

    def random_spec(self, rng: random.Random) -> NetworkSpec:
        return self.build(lambda _name, options: rng.choice(list(options)))

    def spec_from_params(self, params: Mapping[str, Any]) -> NetworkSpec:
        """Rebuild the spec a trial sampled, from its stored parameters."""
        return self.build(lambda name, _options: params[name])

    def digest(self) -> str:
        """A digest of the space's content: a space file edited between runs is another space."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]


def _pick(pick: Pick, name: str, options: Sequence[Any]) -> Any:
    """Fixed decisions (one option) are not parameters: Optuna never sees them."""
    return options[0] if len(options) == 1 else pick(name, options)
