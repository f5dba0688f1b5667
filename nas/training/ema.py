"""An exponential moving average of a model's weights, as the EfficientNet reference keeps one.

The reference (TensorFlow's `ExponentialMovingAverage(decay, num_updates=step)`) averages every
trainable variable and the BatchNorm moving statistics, with the decay held at
``min(decay, (1 + n) / (10 + n))`` after n updates, so the average follows the weights closely
early on and short runs are not stuck near their random initialisation. Integer buffers
(BatchNorm's batch counter) are copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def warmed_decay(decay: float, updates: int) -> float:
    """TensorFlow's moving-average decay after `updates` updates: ``min(decay, (1 + n) / (10 + n))``."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class WeightEma:
    """Holds `average`, a frozen copy of the model whose weights are the running average."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.average = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        weight = 1.0 - warmed_decay(self.decay, self.updates)
        averaged, latest, copied, source = [], [], [], []
        for mine, theirs in zip(self.average.state_dict().values(), model.state_dict().values(), strict=True):
            if mine.is_floating_point():
                averaged.append(mine)
                latest.append(theirs.detach())
            else:
                copied.append(mine)
                source.append(theirs)
        if averaged:
            torch._foreach_lerp_(averaged, latest, weight)
        for mine, theirs in zip(copied, source, strict=True):
            mine.copy_(theirs)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"updates": self.updates, "decay": self.decay, "weights": self.average.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.average.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
