"""The EfficientNet paper's training recipe (Tan & Le 2019, section 5.2, and the TensorFlow reference's defaults).

- RMSProp with decay 0.9 and momentum 0.9, as `torch.optim.RMSprop(alpha=0.9, momentum=0.9,
  eps=sqrt(1e-3))`. TensorFlow adds its epsilon (1e-3) inside the square root, ``g / sqrt(ms + eps)``;
  torch adds it outside, ``g / (sqrt(ms) + eps)``. With torch's eps = sqrt(1e-3) ~ 0.0316 both
  denominators tend to sqrt(ms) where ms >> 1e-3, both tend to 0.0316 where ms << 1e-3, and they
  never differ by more than a factor sqrt(2). TensorFlow starts the mean square at 1, torch at 0
  (whose first steps are sign-like, up to about 3x the learning rate per weight), so the optimizer's
  state is created at 1 here. One difference remains: TensorFlow multiplies the learning rate into
  the momentum buffer, torch applies the current rate to the whole buffer, which only matters
  while the rate changes (warm-up, each 3 % decay).
- Learning rate 0.256 for a batch of 4096, scaled linearly with the batch: ``0.256 * batch / 4096``;
  linear warm-up over the first epochs, then staircase decay by 0.97 every 2.4 epochs, both counted
  in steps from the start of training, as the reference does.
- L2 weight decay 1e-5 on every weight but BatchNorm's (torch's `weight_decay` adds ``wd * w`` to
  the gradient, the gradient of the reference's ``wd * sum(w**2) / 2``).
- The spec's dropout and stochastic depth, label smoothing 0.1, and an exponential moving average
  of the weights (`WeightEma`, decay 0.9999 with the reference's warm-up of the decay). Both the raw
  and the averaged weights are evaluated every epoch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from effnet.nas import checks
from effnet.nas.data.transforms import AUGMENTS

PAPER_LR = 0.256
PAPER_BATCH = 4096
PAPER_WARMUP_EPOCHS = 5.0


def paper_lr(batch_size: int) -> float:
    """The paper's 0.256 per 4096 images, scaled linearly to `batch_size`."""
    return PAPER_LR * batch_size / PAPER_BATCH


def default_warmup_epochs(epochs: int) -> float:
    """The paper's 5 epochs, or a tenth of a run shorter than 50 epochs."""
    return min(PAPER_WARMUP_EPOCHS, epochs / 10)


@dataclass(frozen=True)
class Recipe:
    """The recipe one run trains with, every number settled: what its checkpoint records (as "settings") and a
    resumed run must match but for `epochs`. `TrainConfig` is what a caller asks for, with defaults still to
    derive (the learning rate from the batch, the warm-up from the epochs, the augmentation from the data)."""

    data: str
    resolution: int
    epochs: int
    batch_size: int
    """The global batch over all processes."""
    lr: float
    warmup_epochs: float
    seed: int = 0
    decay_rate: float = 0.97
    decay_epochs: float = 2.4
    weight_decay: float = 1e-5
    label_smoothing: float = 0.1
    ema_decay: float = 0.9999
    rmsprop_decay: float = 0.9
    momentum: float = 0.9
    rmsprop_epsilon: float = 1e-3
    """TensorFlow's epsilon (inside the square root); torch gets its square root, see the module notes."""
    precise_bn_batches: int = 10
    """Training batches (per process) to recompute BatchNorm statistics over before each evaluation; 0: off."""
    augment: str = "paper"
    """none, light (random resized crop and flip) or paper (and AutoAugment's ImageNet policy)."""

    def __post_init__(self) -> None:
        check_recipe_numbers(
            self.epochs,
            self.batch_size,
            self.lr,
            self.warmup_epochs,
            self.ema_decay,
            self.label_smoothing,
            self.weight_decay,
            self.precise_bn_batches,
        )
        checks.number("decay_rate", self.decay_rate, low=0, high=1, low_open=True)
        checks.number("decay_epochs", self.decay_epochs, low=0, low_open=True)
        checks.choice("augment", self.augment, AUGMENTS)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_recipe_numbers(
    epochs: Any,
    batch_size: Any,
    lr: Any,
    warmup_epochs: Any,
    ema_decay: Any,
    label_smoothing: Any,
    weight_decay: Any,
    precise_bn_batches: Any,
) -> None:
    """The numbers a caller gives for a recipe (`TrainConfig`'s, where the learning rate and warm-up may be None
    still: derived later) and a settled `Recipe`'s, each a `SettingError` naming it."""
    checks.whole("epochs", epochs, low=1, high=100_000)
    checks.whole("batch_size", batch_size, low=1, high=1_000_000)
    if lr is not None:
        checks.number("lr", lr, low=0, low_open=True)
    if warmup_epochs is not None:
        checks.number("warmup_epochs", warmup_epochs, low=0)
    checks.number("ema_decay", ema_decay, low=0, high=1, high_open=True)
    checks.number("label_smoothing", label_smoothing, low=0, high=1, high_open=True)
    checks.number("weight_decay", weight_decay, low=0)
    checks.whole("precise_bn_batches", precise_bn_batches, low=0, high=100_000)


def lr_multiplier(step: int, warmup_steps: int, decay_steps: int, decay_rate: float) -> float:
    """Linear warm-up to 1 over `warmup_steps`, then `decay_rate` per `decay_steps` (staircase, from step 0)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return decay_rate ** (step // decay_steps)


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.RMSprop:
    batch_norm = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters(recurse=False)}
    decayed = [p for p in model.parameters() if id(p) not in batch_norm]
    free = [p for p in model.parameters() if id(p) in batch_norm]
    groups = [{"params": decayed, "weight_decay": recipe.weight_decay}, {"params": free, "weight_decay": 0.0}]
    optimizer = torch.optim.RMSprop(
        groups,
        lr=recipe.lr,
        alpha=recipe.rmsprop_decay,
        momentum=recipe.momentum,
        eps=math.sqrt(recipe.rmsprop_epsilon),
    )
    for p in model.parameters():  # TensorFlow's start (ms = 1); torch fills in state only where there is none
        optimizer.state[p] = {
            "step": torch.zeros(()),
            "square_avg": torch.ones_like(p),
            "momentum_buffer": torch.zeros_like(p),
        }
    return optimizer
