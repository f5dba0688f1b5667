"""BatchNorm folded into the convolution before it: the same function in eval mode, one pass less per layer.

In eval mode a BatchNorm is an affine map per channel, y = (x - mean) / sqrt(var + eps) * gamma + beta, so it
folds into the conv that feeds it: weights scaled by gamma / sqrt(var + eps) per output channel and a bias of
beta - mean * gamma / sqrt(var + eps). The folded network computes what the eval-mode network computes, up to
float rounding (the product is rounded once into the weights instead of applied to every activation), and
saves the BatchNorm's read and write of every activation. The activation after it moves into the folded conv
and runs in place on the conv's own new output, which saves another write per activation (measured on B0,
224 px, batch 32, 2 CPU threads: 6-9 % of the folded network's time) and overwrites nothing that any other
module returned, so forward hooks see what they saw. It is for inference only: the folded layers have no
running statistics to train.

Where a squeeze-excitation feeds a 1x1 conv (every MBConv block), the folded block can skip the gate's multiply:
conv(x * gate) is, per sample, the pixels (H*W x C) times the conv's weights scaled by that sample's gate (C x
C_out), one batched matrix product (`gated_pointwise`). It replaces a pass over the block's widest tensor by N
small weight copies, so it runs only where the pixels outnumber the output channels `GATED_MIN_PIXELS_PER_CHANNEL`
to one (B0 at 224 px: its first five blocks, each 1.0-1.5x faster; about 2 % of the folded network's time,
measured on a 2-core CPU with effnet's allocator), on the CPU with a channels_last tensor, and never where a hook
watches the SE or the conv (the SE's output does not exist on this path) nor under a tracer or exporter (they
record the layers as they are).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.nn.utils.fusion import fuse_conv_bn_eval

from effnet.nas.errors import InputError
from effnet.nas.net.activations import ACTIVATION_OPS
from effnet.nas.net.model import ConvBNAct, SameConv2d, SqueezeExcite

GATED_MIN_PIXELS_PER_CHANNEL = 8
"""`gated_pointwise` runs where H*W >= this x the conv's output channels: its N x C x C_out scaled weights then cost
less than the N x H*W x C multiply they save (B0's shapes, one thread, effnet's allocator: 1.46x faster at a ratio
of 784, 1.1-1.2x at 20-130, even or slower at 2.5 and below)."""

IN_PLACE: dict[type[nn.Module], Callable[..., torch.Tensor]] = {op.layer: op.function for op in ACTIVATION_OPS.values()}
"""Each activation layer `build_model` uses, as the function that applies it with `inplace=True` (another
activation layer would stay a layer of its own after the folded conv)."""


class _Activated(nn.Conv2d):
    """A conv that applies its activation, in place, to the output it has just made (before `SameConv2d` in a
    subclass's bases, its `forward` runs the padded one)."""

    activation: Callable[..., torch.Tensor]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(super().forward(x), inplace=True)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation.__name__}"


class ActivatedConv2d(_Activated):
    pass


class ActivatedSameConv2d(_Activated, SameConv2d):
    pass


def _activated(conv: nn.Conv2d, activation: nn.Module) -> nn.Conv2d:
    """`conv` (biased, folded) with `activation` applied inside it; the state dict's names stay the conv's.
    Built on the meta device, so no weights are initialised (and no random numbers drawn) only to be replaced."""
    with torch.device("meta"):
        if isinstance(conv, SameConv2d):
            fused: _Activated = ActivatedSameConv2d(
                conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0], groups=conv.groups, bias=True
            )
        else:
            fused = ActivatedConv2d(
                conv.in_channels,
                conv.out_channels,
                _pair(conv.kernel_size),
                _pair(conv.stride),
                conv.padding if isinstance(conv.padding, str) else _pair(conv.padding),
                dilation=_pair(conv.dilation),
                groups=conv.groups,
                bias=True,
            )
    fused.activation = IN_PLACE[type(activation)]
    fused.weight, fused.bias = conv.weight, conv.bias  # the folded tensors themselves: device, dtype and layout kept
    return fused


def _pair(values: tuple[int, ...]) -> tuple[int, int]:
    """A 2-d conv's (height, width) setting, as the conv's constructor takes it."""
    height, width = values
    return height, width


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """An eval-mode, gradient-free copy of `model` (a network `build_model` made) with each conv-BatchNorm pair
    folded into one biased conv, which also applies the activation that followed; the BatchNorm's and the
    activation's places hold an `nn.Identity`. The model itself is unchanged."""
    folded = copy.deepcopy(model).eval().requires_grad_(False)
    for module in folded.modules():
        if not isinstance(module, ConvBNAct):
            continue
        conv_layer, norm = module[0], module[1]
        if isinstance(conv_layer, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
            conv = fuse_conv_bn_eval(conv_layer, norm)
            module[1] = nn.Identity()
            if len(module) > 2 and type(module[2]) in IN_PLACE:
                conv = _activated(conv, module[2])
                module[2] = nn.Identity()
            module[0] = conv
    for name, module in list(folded.named_modules()):
        if type(module) is nn.Sequential and any(
            _se_then_pointwise(module, i) is not None for i in range(len(module) - 1)
        ):
            parent, _, child = name.rpartition(".")
            setattr(folded.get_submodule(parent), child, GatedLayers(*module))
    left = [name for name, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise InputError(f"{left[0]}: a BatchNorm outside a conv-BN-activation layer cannot be folded")
    return folded.eval()  # the layers put in place too


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


def _se_then_pointwise(layers: nn.Sequential, i: int) -> tuple[SqueezeExcite, ConvBNAct, nn.Conv2d] | None:
    """Where layer `i` is an SE and layer `i + 1` a folded conv-BN-act whose conv is 1x1, stride 1, ungrouped:
    the SE, that layer and its conv; else None."""
    se, project = layers[i], layers[i + 1]
    if not (isinstance(se, SqueezeExcite) and isinstance(project, ConvBNAct)):
        return None
    conv = project[0]
    if (
        isinstance(conv, nn.Conv2d)
        and type(conv) in (nn.Conv2d, ActivatedConv2d)
        and conv.kernel_size == (1, 1)
        and conv.stride == (1, 1)
        and conv.groups == 1
        and all(isinstance(m, nn.Identity) for m in list(project)[1:])
    ):
        return se, project, conv
    return None


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _gate_in_weights(x: torch.Tensor, se: nn.Module, project: nn.Module, conv: nn.Conv2d) -> bool:
    """Whether `GatedLayers` may run `se` and `project` as one `gated_pointwise` on `x` (see the module's doc)."""
    if (
        isinstance(x, torch.fx.Proxy)
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or torch.onnx.is_in_onnx_export()
    ):
        return False
    if module_hooks._global_forward_hooks or module_hooks._global_forward_pre_hooks:
        return False
    return (
        x.device.type == "cpu"
        and x.is_contiguous(memory_format=torch.channels_last)
        and x.shape[2] * x.shape[3] >= GATED_MIN_PIXELS_PER_CHANNEL * conv.out_channels
        and not _hooked(se)
        and not any(_hooked(m) for m in project.modules())
    )


class GatedLayers(nn.Sequential):
    """A folded block's layers (same children, same names), with each SE and the 1x1 conv after it run as one
    `gated_pointwise` where `_gate_in_weights` allows, else layer by layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = 0
        while i < len(self):
            pair = _se_then_pointwise(self, i) if i + 1 < len(self) else None
            if pair is not None and _gate_in_weights(x, *pair):
                se, _, conv = pair
                x = gated_pointwise(x, se.gate(x), conv)
                i += 2
            else:
                x = self[i](x)
                i += 1
        return x
