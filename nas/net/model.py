"""Spec -> `nn.Module`: one builder for every spec.

Stem conv-BN-act; per block MBConv, depthwise-separable or regular conv with optional
squeeze-excitation and a shortcut (the identity, or MnasNet's pooling shortcut) with stochastic
depth; head 1x1 conv-BN-act, global average pooling, dropout, classifier. Layer shapes come from
`plan_network`, which the analytic counters read too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from effnet.nas import checks
from effnet.nas.errors import InputError
from effnet.nas.net.activations import ACTIVATION_OPS
from effnet.nas.net.depthwise import FastDepthwiseConv2d
from effnet.nas.net.gated import GatedLayers, gate_then_pointwise
from effnet.nas.net.layout import BlockPlan, plan_network
from effnet.nas.net.limits import check_cost
from effnet.nas.net.spec import BLOCK_TYPES, NetworkSpec
from effnet.nas.net.unobserved import unobserved


def _activation(name: str) -> nn.Module:
    """Out of place, like every op of the forward: a forward hook keeps what it saw, and the forward is the
    same function of its inputs with or without autograd (and under `torch.fx` tracing). In-place ops
    under `no_grad` bought 9-12 % B0 inference on a 2-core CPU; `fold_batch_norm` is the fast path."""
    return ACTIVATION_OPS[name].layer()


class SameConv2d(FastDepthwiseConv2d):
    """A strided convolution with TensorFlow's "SAME" padding: the input padded so the output has ceil(size / 2)
    pixels, half the padding before and the rest (one more pixel where the size is even) after.

    For stride 2 and an odd kernel k >= 3 the padding is k - 2 + size % 2 in all; it is computed from the input's
    size at every call, as TensorFlow does, in arithmetic that torch.fx and the exporters trace. A subclass of
    `nn.Conv2d` (not a pad module beside it) so that the state dict's names are those of a symmetric conv.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, groups: int = 1, bias: bool = False):
        if stride != 2 or kernel < 3 or kernel % 2 == 0:
            raise ValueError(f"SameConv2d is for stride 2 and odd kernels from 3, got kernel {kernel} stride {stride}")
        super().__init__(in_ch, out_ch, kernel, stride, 0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pad_same(x, self.kernel_size[0]))


def pad_same(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """`x` padded for a stride-2 conv of odd `kernel` >= 3 as TensorFlow's "SAME" pads it (see `SameConv2d`)."""
    pad_h = kernel - 2 + x.shape[-2] % 2
    pad_w = kernel - 2 + x.shape[-1] % 2
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


def make_conv(in_ch: int, out_ch: int, kernel: int, stride: int, padding: str, groups: int = 1) -> nn.Conv2d:
    """A bias-free conv padded as the spec says: symmetric kernel // 2, or "SAME", which differs from it only
    where the conv strides (for stride 1 and an odd kernel both pad kernel // 2 on every side). A grouped
    (depthwise) conv is a `FastDepthwiseConv2d`, for its faster weight gradient on the CPU."""
    if padding == "same" and stride > 1 and kernel > 1:
        return SameConv2d(in_ch, out_ch, kernel, stride, groups=groups)
    if groups > 1:
        return FastDepthwiseConv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)
    return nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)


class ConvBNAct(nn.Sequential):
    """Conv (no bias, padded as the spec says) -> BatchNorm -> optional activation."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, spec: NetworkSpec, groups: int = 1, act: bool = True
    ):
        layers: list[nn.Module] = [
            make_conv(in_ch, out_ch, kernel, stride, spec.padding, groups),
            nn.BatchNorm2d(out_ch, eps=spec.batch_norm.epsilon, momentum=1.0 - spec.batch_norm.decay),
        ]
        if act:
            layers.append(_activation(spec.activation))
        super().__init__(*layers)


def pixel_mean(x: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    """The mean over an N x C x H x W tensor's pixels as a sum divided by their count: under autograd its
    gradient is a broadcast view of the N x C one, where `mean`'s and `AdaptiveAvgPool2d`'s are new full-size
    tensors in the default layout (1.5x slower SE steps, and a head whose gradient leaves channels_last)."""
    return x.sum((2, 3), keepdim=keepdim) / (x.shape[2] * x.shape[3])


class SqueezeExcite(nn.Module):
    """Global mean -> 1x1 reduce -> act -> 1x1 expand -> sigmoid gate.

    The squeeze is a spatial mean rather than `AdaptiveAvgPool2d`, as in the TensorFlow reference;
    fvcore does not count it (nor `mean`), and the analytic counter follows it (`pixel_mean`).
    """

    def __init__(self, channels: int, reduced: int, activation: str):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = _activation(activation)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The per-sample, per-channel gate (N x C x 1 x 1) that `forward` multiplies `x` by.

        On the CPU, for a channels_last `x` (how effnet trains and infers there), the two 1x1 convs over the
        squeezed 1x1 map run as matrix products (`F.linear` on the N x C squeeze, the same weights viewed as
        matrices) where nothing watches them (`effnet.nas.net.unobserved`): oneDNN's convolution on a 1x1 map
        costs 3-4x the product, forward and backward (B0's 16 SEs: about 22 against 7 ms a training step at
        batch 32, 2 threads)."""
        squeezed = pixel_mean(x, keepdim=True)
        if not (
            type(self.reduce) is nn.Conv2d  # not one a user or a library replaced (quantized, wrapped, ...)
            and type(self.expand) is nn.Conv2d
            and unobserved(x, self.reduce, self.act, self.expand)
            and x.device.type == "cpu"
            and x.is_contiguous(memory_format=torch.channels_last)
        ):
            return torch.sigmoid(self.expand(self.act(self.reduce(squeezed))))
        n, c = squeezed.shape[:2]
        hidden = self.act(F.linear(squeezed.view(n, c), self.reduce.weight.flatten(1), self.reduce.bias))
        return torch.sigmoid(F.linear(hidden, self.expand.weight.flatten(1), self.expand.bias)).view(n, c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class DropPath(nn.Module):
    """Stochastic depth on a residual: shortcut + branch, the branch dropped per sample while training.

    The scaled mask is applied and added in one `addcmul`: one pass and one allocation.
    """

    def __init__(self, drop_rate: float):
        super().__init__()
        self.drop_rate = drop_rate

    def forward(self, shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_rate == 0.0:
            return shortcut + branch
        keep = 1.0 - self.drop_rate
        mask = branch.new_empty((branch.shape[0], 1, 1, 1)).bernoulli_(keep).div_(keep)
        return torch.addcmul(shortcut, branch, mask)

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate:.4f}"


def pooling_shortcut(plan: BlockPlan, spec: NetworkSpec) -> nn.Sequential:
    """`skip: pool` where the identity cannot apply: 2x2 average pooling, stride 2, where the block strides
    (`ceil_mode` gives ceil(size / 2), the branch's own output size; windows hanging over the edge average
    what they cover), then a 1x1 conv + BatchNorm where the channels change (ResNet-D's downsampling shortcut)."""
    layers: list[nn.Module] = []
    if plan.pool_shortcut:
        layers.append(nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False))
    if plan.project_shortcut:
        layers.append(ConvBNAct(plan.in_channels, plan.out_channels, 1, 1, spec, act=False))
    return nn.Sequential(*layers)


class Block(nn.Module):
    """One block of any type; its layers in order, then the shortcut where the plan keeps one."""

    def __init__(self, plan: BlockPlan, spec: NetworkSpec):
        super().__init__()
        layers: list[nn.Module] = []
        p = plan
        if p.block == "mbconv":
            if p.mid_channels != p.in_channels:
                layers.append(ConvBNAct(p.in_channels, p.mid_channels, 1, 1, spec))
            layers.append(ConvBNAct(p.mid_channels, p.mid_channels, p.kernel, p.stride, spec, groups=p.mid_channels))
            if p.se_channels:
                layers.append(SqueezeExcite(p.mid_channels, p.se_channels, spec.activation))
            layers.append(ConvBNAct(p.mid_channels, p.out_channels, 1, 1, spec, act=False))
        elif p.block == "dsconv":
            layers.append(ConvBNAct(p.in_channels, p.in_channels, p.kernel, p.stride, spec, groups=p.in_channels))
            if p.se_channels:
                layers.append(SqueezeExcite(p.in_channels, p.se_channels, spec.activation))
            layers.append(ConvBNAct(p.in_channels, p.out_channels, 1, 1, spec))
        elif p.block == "conv":
            layers.append(ConvBNAct(p.in_channels, p.out_channels, p.kernel, p.stride, spec))
            if p.se_channels:
                layers.append(SqueezeExcite(p.out_channels, p.se_channels, spec.activation))
        else:
            raise InputError(f"block {p.position}: unknown block {p.block!r}; known blocks: {', '.join(BLOCK_TYPES)}")
        plain = nn.Sequential(*layers)
        gated = any(gate_then_pointwise(plain, i) is not None for i in range(len(plain)))
        self.layers = GatedLayers(*layers) if gated else plain  # the SE's gate in the next conv's weights
        self.residual = p.residual
        self.shortcut = pooling_shortcut(p, spec) if p.pool_shortcut or p.project_shortcut else None
        self.drop_path = DropPath(p.drop_rate) if p.residual and p.drop_rate > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.residual:
            return self.layers(x)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        if self.drop_path is None:
            return shortcut + self.layers(x)
        return self.drop_path(shortcut, self.layers(x))


class Network(nn.Module):
    def __init__(self, spec: NetworkSpec):
        super().__init__()
        plan = plan_network(spec)
        self.spec = spec
        self.stem = ConvBNAct(spec.in_channels, spec.stem.out_channels, spec.stem.kernel, spec.stem.stride, spec)
        self.blocks = nn.Sequential(*(Block(b, spec) for b in plan.blocks))
        self.head = ConvBNAct(plan.final_channels, spec.head.out_channels, 1, 1, spec)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(spec.head.out_channels, spec.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """The TensorFlow reference's initialisation (`conv_kernel_initializer` and `dense_kernel_initializer`
        of its efficientnet_model.py; timm's `_init_weight_goog`): every conv normal(0, sqrt(2 / fan_out)) with
        fan_out = k^2 * out_channels / groups, so a depthwise conv (groups = channels) has fan_out k^2, as
        TensorFlow's depthwise kernel [k, k, channels, 1] gives it; the classifier uniform within
        +-1/sqrt(classes), but never wider than +-sqrt(3/features) (weights of variance 1/features: logits on the
        scale of the features); biases 0, BatchNorm scale 1 and shift 0. (torch's `kaiming_normal_` leaves the
        groups out of the fan-out: a depthwise 3x3 over 96 channels would get std 0.048 instead of 0.47.)

        The reference's classifier bound was set for ImageNet (1000 classes on 1280 features, under the cap);
        taken as it is for a few classes on a wide head it grows the first logits: B1 (1408 features) with 5
        classes started with logits of std 4.2 and a cross-entropy of 4.6 (ln 5 = 1.61), far above chance, and
        `train` spent its first epochs undoing it. A narrow head (32 features, 10 classes) is left near the
        reference's bound: 4 epochs on digits scored the same with either."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = min(1.0 / m.out_features**0.5, (3.0 / m.in_features) ** 0.5)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pooled(self.features(x))))

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        """The head's global average pool, N x C. On the CPU, for channels_last features where nothing watches
        the pool (`effnet.nas.net.unobserved`), `pixel_mean`: the same mean, so the head's activation, BatchNorm
        and conv take their gradients in channels_last; `AdaptiveAvgPool2d`'s comes in the default layout, and
        mixing the two cost 2 % of B0's training step at 224 px (2 threads)."""
        if (
            unobserved(features, self.pool)
            and features.device.type == "cpu"
            and features.is_contiguous(memory_format=torch.channels_last)
        ):
            return pixel_mean(features)
        return self.pool(features).flatten(1)


def build_model(spec: NetworkSpec) -> Network:
    """The network `spec` describes, initialised as the TensorFlow reference does; a spec over the limits of
    `effnet.nas.net.limits` (one made in code, say: a loaded one is checked as it is read) is refused before
    anything is allocated."""
    checks.instance("spec", spec, NetworkSpec, "a NetworkSpec (effnet.load_spec(path))")
    check_cost(spec, spec.name)
    return Network(spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
