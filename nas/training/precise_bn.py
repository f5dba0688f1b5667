"""Precise BatchNorm statistics: recompute the running averages for the weights as they are now.

Running averages gathered during a short training describe weights that no longer exist: with the
spec's decay 0.99 they stay near their initial values after a few dozen steps (depthwise outputs have
variances far below the initial 1) and evaluation sits at chance. Measured for B0 on digits (32 px,
3 epochs, lr 0.002, the former He init), val top-1 per epoch: the spec's running averages 0.10 / 0.10 / 0.10; averages
over each epoch's batches 0.11 / 0.76 / 0.85; recomputed from 8 batches 0.57 / 0.78 / 0.85
(bench/RESULTS.md), so the proxy's first report already ranks. `effnet train` does the same before
each evaluation, as the reference recipes' "precise BN" does.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch
from torch import nn

from effnet.nas.training.runtime import autocast_for, place_batch


def recompute_batch_norm(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device) -> None:
    """Replace every BatchNorm layer's running statistics by their plain average over `batches`
    (forward only; dropout and drop-path off, as in evaluation). The model is left in eval mode.
    With no batches the running statistics are left as they are."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    batches = iter(batches)
    first = next(batches, None)
    if not layers or first is None:
        return
    model.eval()
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over the batches
        layer.train()
    with torch.no_grad(), autocast_for(device):
        for images in itertools.chain([first], batches):
            model(place_batch(images, device))
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
    model.eval()
