"""Two training steps that computed the same thing, checked in float64: the loss, every gradient, every buffer."""

from __future__ import annotations

import torch
from torch import nn


def assert_same_step(
    loss: torch.Tensor,
    grads: dict[str, torch.Tensor],
    model: nn.Module,
    expected_loss: torch.Tensor,
    expected_grads: dict[str, torch.Tensor],
    reference: nn.Module,
) -> None:
    """`model`'s step (its loss and parameter gradients by name) against `reference`'s, and their buffers
    (BatchNorm's running statistics) after it; the same products summed in another order differ by ~1e-15."""
    torch.testing.assert_close(loss, expected_loss, rtol=1e-12, atol=0)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-9, atol=1e-12, msg=name)
    for (name, buffer), expected in zip(model.named_buffers(), reference.buffers(), strict=True):
        torch.testing.assert_close(buffer, expected, rtol=1e-12, atol=1e-12, msg=name)
