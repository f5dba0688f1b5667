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

A block's squeeze-excitation and the 1x1 conv after it still run as one batched product where it pays
(`effnet.nas.net.gated`): the folded conv applies its bias and activation there.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from effnet.nas.errors import InputError, SettingError
from effnet.nas.net.activations import ACTIVATION_OPS
from effnet.nas.net.model import ConvBNAct, SameConv2d

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
    if not isinstance(model, nn.Module):
        raise SettingError("model", f"must be a torch module (effnet.build_model(spec)), got {type(model).__name__}")
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
    left = [name for name, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise InputError(f"{left[0]}: a BatchNorm outside a conv-BN-activation layer cannot be folded")
    return folded.eval()  # the layers put in place too
