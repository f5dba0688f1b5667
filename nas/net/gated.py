"""A squeeze-excitation's gate multiplied into the weights of the 1x1 conv after it, training and inference.

Where an SE feeds a 1x1 conv (every MBConv block), conv(x * gate) is, per sample, the pixels (H*W x C) times
the conv's weights scaled by that sample's gate (C x C_out): one batched matrix product (`gated_pointwise`). It
replaces the multiply's pass over the block's widest tensor, and in training the two passes of its gradient
(the input's, and the gate's product before its sum), by N small weight copies and their gradient (N x C x
C_out). So it runs only where the pixels outnumber the output channels `GATED_MIN_PIXELS_PER_CHANNEL` to one,
on the CPU with a channels_last tensor, and never where a hook watches the SE, the conv or the layer holding it
(the SE's output and the conv's input do not exist on this path) nor under a tracer, compiler or exporter (they
record the layers as they are). Measured in bench/RESULTS.md ("Model speed").

The pair is found by its structure, not by class, so that the model builder and the BatchNorm folding share
it: a layer with a `gate(x)` method, then a sequence whose first layer is a 1x1, stride-1, unpadded, ungrouped
conv (which may apply an activation of its own, as a folded conv does, through an `activation` attribute).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from effnet.nas.net.unobserved import unobserved

GATED_MIN_PIXELS_PER_CHANNEL = 8
"""`gated_pointwise` runs where H*W >= this x the conv's output channels: its N x C x C_out scaled weights then
cost less than the N x H*W x C multiply they save. B0's shapes, effnet's allocator, one and two threads: a
training step's pair (forward and backward) 1.3-2.7x faster at ratios of 10-130, even at 2.5, 2-20x slower at
1.6 and below; inference 1.46x faster at 784, 1.1-1.2x at 20-130, even or slower at 2.5 and below."""


def gated_pointwise(x: torch.Tensor, gate: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """`conv(x * gate)` (then the conv's own activation, if it applies one) for a channels_last `x` (N x C x H x W),
    a gate of N x C x 1 x 1 and a 1x1, stride-1, ungrouped `conv`: each sample's pixels, a view of `x` as
    H*W x C, times the conv's C x C_out weights scaled by that sample's gate. The result is channels_last too."""
    n, c, h, w = x.shape
    weights = conv.weight.reshape(conv.out_channels, c).t() * gate.reshape(n, c, 1)
    pixels = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
    out = torch.bmm(pixels, weights) if conv.bias is None else torch.baddbmm(conv.bias, pixels, weights)
    out = out.view(n, h, w, conv.out_channels).permute(0, 3, 1, 2)
    activation = getattr(conv, "activation", None)
    return out if activation is None else activation(out, inplace=True)


def gate_then_pointwise(layers: nn.Sequential, i: int) -> tuple[nn.Module, nn.Sequential, nn.Conv2d] | None:
    """Where layer `i` has a `gate` (an SE) and layer `i + 1` is a sequence that starts with a 1x1, stride-1,
    unpadded, ungrouped conv: that layer, the sequence and its conv; else None."""
    if i + 1 >= len(layers):
        return None
    se, project = layers[i], layers[i + 1]
    if not (callable(getattr(se, "gate", None)) and isinstance(project, nn.Sequential) and len(project)):
        return None
    conv = project[0]
    if (
        isinstance(conv, nn.Conv2d)
        and conv.kernel_size == (1, 1)
        and conv.stride == (1, 1)
        and conv.padding == (0, 0)
        and conv.dilation == (1, 1)
        and conv.groups == 1
    ):
        return se, project, conv
    return None


def gate_in_weights(x: torch.Tensor, se: nn.Module, project: nn.Sequential, conv: nn.Conv2d) -> bool:
    """Whether `GatedLayers` may run `se` and `conv` as one `gated_pointwise` on `x` (see the module's doc)."""
    return (
        unobserved(x, se, project, conv)
        and x.device.type == "cpu"
        and x.is_contiguous(memory_format=torch.channels_last)
        and x.shape[2] * x.shape[3] >= GATED_MIN_PIXELS_PER_CHANNEL * conv.out_channels
    )


class GatedLayers(nn.Sequential):
    """A block's layers (an `nn.Sequential`'s children and names), with each SE and the 1x1 conv after it run as
    one `gated_pointwise` where `gate_in_weights` allows (then the rest of the conv's sequence, its BatchNorm and
    activation, as layers), else layer by layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = 0
        while i < len(self):
            pair = gate_then_pointwise(self, i)
            if pair is not None and gate_in_weights(x, *pair):
                se, project, conv = pair
                gate = cast(Callable[[torch.Tensor], torch.Tensor], se.gate)
                x = gated_pointwise(x, gate(x), conv)
                for layer in list(project)[1:]:
                    x = layer(x)
                i += 2
            else:
                x = self[i](x)
                i += 1
        return x
