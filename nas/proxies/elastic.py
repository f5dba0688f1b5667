"""Weight-sharing layers: each holds the largest weights any choice of the space needs and computes with a
slice of them, the leading channels and, for a smaller kernel, one of (`KERNEL_SHARING`): the centre of the
largest one (`shared`); that centre through a learned linear map of its k x k taps (`transformed`, Once-for-All's
elastic kernel with its transformation matrices); or a kernel of its own (`separate`).

Each layer also gives its slice as the tensors of the builder's layer (`nas/net/model.py`): `ConvBN.state`
those of a `ConvBNAct` (conv `.0`, BatchNorm `.1`), `SqueezeExcite.state` those of a `SqueezeExcite`.
The forward computes what the builder's layer computes with those tensors: the same ops, out of place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from effnet.nas.net.activations import ACTIVATION_OPS
from effnet.nas.net.depthwise import depthwise_conv2d
from effnet.nas.net.model import pad_same
from effnet.nas.net.spec import BatchNormSpec

KERNEL_SHARING = ("shared", "separate", "transformed")


def centre(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """The centre kernel x kernel window of a conv weight (..., K, K)."""
    start = (weight.shape[-1] - kernel) // 2
    return weight[..., start : start + kernel, start : start + kernel]


def conv_bias(conv: nn.Conv2d) -> torch.Tensor:
    """The bias of a conv built with one (torch's default)."""
    assert conv.bias is not None
    return conv.bias


def init_conv(weight: torch.Tensor, groups_are_channels: bool) -> None:
    """The reference's conv initialisation (`Network._init_weights`): normal with std sqrt(2 / fan_out), fan_out
    = k^2 * out_channels / groups, so k^2 for a depthwise conv; here at the largest shape."""
    out_channels, _, kh, kw = weight.shape
    fan_out = kh * kw * (1 if groups_are_channels else out_channels)
    nn.init.normal_(weight, 0.0, (2.0 / fan_out) ** 0.5)


class ConvBN(nn.Module):
    """Conv (no bias, padded as the spec's `padding` says, depthwise or not) + BatchNorm at the largest channels, with
    one weight for the largest kernel (`shared`, `transformed`) or one per kernel size (`separate`).

    `transformed` (Once-for-All, Cai et al., ICLR 2020, section 3.3): each smaller kernel size k has a k^2 x k^2
    matrix, shared by the layer's channels and starting as the identity; a kernel of size k is the centre of the
    next larger size's kernel (itself transformed), its k^2 taps mapped by that matrix. The sizes chain from the
    largest down, as OFA's do (7 -> 5 -> 3), so a smaller kernel can differ from the centre it starts as
    without the larger one changing. The proxy's weight decay reaches the matrices as it does every 2-D weight
    (OFA's training decays them too)."""

    def __init__(
        self,
        in_max: int,
        out_max: int,
        kernels: tuple[int, ...],
        stride: int,
        bn: BatchNormSpec,
        depthwise: bool = False,
        sharing: str = "shared",
        padding: str = "symmetric",
    ):
        super().__init__()
        self.stride = stride
        self.padding = padding
        self.depthwise = depthwise
        self.sharing = sharing
        self.sizes = frozenset(kernels)
        self.largest = max(kernels)
        self.smaller = sorted(self.sizes - {self.largest}, reverse=True)
        sizes = tuple(sorted(set(kernels))) if sharing == "separate" else (self.largest,)
        self.weights = nn.ParameterDict(
            {str(k): nn.Parameter(torch.empty(out_max, 1 if depthwise else in_max, k, k)) for k in sizes}
        )
        self.transforms = nn.ParameterDict(
            {str(k): nn.Parameter(torch.eye(k * k)) for k in self.smaller if sharing == "transformed"}
        )
        self.bn = nn.BatchNorm2d(out_max, eps=bn.epsilon, momentum=1.0 - bn.decay)
        for weight in self.weights.values():
            init_conv(weight, depthwise)

    def weight(self, in_channels: int, out_channels: int, kernel: int) -> torch.Tensor:
        """The conv weight of the slice: (out_channels, 1 or in_channels, kernel, kernel)."""
        if kernel not in self.sizes:
            raise ValueError(f"kernel {kernel} is not one of this layer's sizes {sorted(self.sizes)}")
        full = self.weights[str(kernel if self.sharing == "separate" else self.largest)]
        sliced = full[:out_channels] if self.depthwise else full[:out_channels, :in_channels]
        if self.sharing == "separate" or kernel == self.largest:
            return sliced
        if self.sharing == "shared":
            return centre(sliced, kernel)
        for size in self.smaller:  # largest first: each size the centre of the one before, transformed
            window = centre(sliced, size)
            sliced = (window.reshape(-1, size * size) @ self.transforms[str(size)].T).view(window.shape)
            if size == kernel:
                break
        return sliced

    def forward(self, x: torch.Tensor, in_channels: int, out_channels: int, kernel: int) -> torch.Tensor:
        weight = self.weight(in_channels, out_channels, kernel)
        if self.padding == "same" and self.stride > 1 and kernel > 1:  # as `make_conv` builds it: SameConv2d
            x, pad = pad_same(x, kernel), 0
        else:
            pad = kernel // 2
        if self.depthwise:
            x = depthwise_conv2d(x, weight, self.stride, pad)
        else:
            x = F.conv2d(x, weight, None, self.stride, pad)
        bn = self.bn
        mean, var, _ = self.running_stats()
        assert bn.momentum is not None  # 1 - decay as built: precise BN (momentum None) runs on standalone nets only
        return F.batch_norm(
            x,
            mean[:out_channels],
            var[:out_channels],
            bn.weight[:out_channels],
            bn.bias[:out_channels],
            self.training,
            bn.momentum,
            bn.eps,
        )

    def running_stats(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The BatchNorm's running mean, variance and batch count (it tracks them, torch's default)."""
        bn = self.bn
        assert bn.running_mean is not None and bn.running_var is not None and bn.num_batches_tracked is not None
        return bn.running_mean, bn.running_var, bn.num_batches_tracked

    def state(self, prefix: str, in_channels: int, out_channels: int, kernel: int) -> dict[str, torch.Tensor]:
        """The slice as a builder's `ConvBNAct` named `prefix` holds it (views of the supernet's tensors; a
        transformed kernel is computed from them)."""
        bn = self.bn
        mean, var, count = self.running_stats()
        return {
            f"{prefix}.0.weight": self.weight(in_channels, out_channels, kernel),
            f"{prefix}.1.weight": bn.weight[:out_channels],
            f"{prefix}.1.bias": bn.bias[:out_channels],
            f"{prefix}.1.running_mean": mean[:out_channels],
            f"{prefix}.1.running_var": var[:out_channels],
            f"{prefix}.1.num_batches_tracked": count,
        }


class SqueezeExcite(nn.Module):
    """The builder's squeeze-excitation at the largest channels and reduction, computed on a slice."""

    def __init__(self, channels_max: int, reduced_max: int, activation: str):
        super().__init__()
        self.reduce = nn.Conv2d(channels_max, reduced_max, 1)
        self.expand = nn.Conv2d(reduced_max, channels_max, 1)
        self.act = ACTIVATION_OPS[activation].function
        for conv in (self.reduce, self.expand):
            init_conv(conv.weight, groups_are_channels=False)
            nn.init.zeros_(conv_bias(conv))

    def forward(self, x: torch.Tensor, channels: int, reduced: int) -> torch.Tensor:
        squeezed = x.sum((2, 3), keepdim=True) / (x.shape[2] * x.shape[3])
        hidden = self.act(F.conv2d(squeezed, self.reduce.weight[:reduced, :channels], conv_bias(self.reduce)[:reduced]))
        gate = F.conv2d(hidden, self.expand.weight[:channels, :reduced], conv_bias(self.expand)[:channels])
        return x * torch.sigmoid(gate)

    def state(self, prefix: str, channels: int, reduced: int) -> dict[str, torch.Tensor]:
        return {
            f"{prefix}.reduce.weight": self.reduce.weight[:reduced, :channels],
            f"{prefix}.reduce.bias": conv_bias(self.reduce)[:reduced],
            f"{prefix}.expand.weight": self.expand.weight[:channels, :reduced],
            f"{prefix}.expand.bias": conv_bias(self.expand)[:channels],
        }
