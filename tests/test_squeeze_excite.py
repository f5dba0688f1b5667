"""The squeeze-excitation's two 1x1 convs over the squeezed map run as matrix products on the CPU (channels_last):
the same loss, gradients and BatchNorm statistics as the convs (float64), in all 16 of B0's SEs, and the convs
themselves wherever a hook watches one, the input is in the default layout, or a tracer records the network."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from same_step import assert_same_step
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from effnet.nas.net.model import SqueezeExcite, build_model
from effnet.scaling.presets import reference_b0

CL = torch.channels_last
B0_SQUEEZE_EXCITES = 16
"""EfficientNet-B0's 16 MBConv blocks (1, 2, 2, 3, 3, 4, 1 per stage) each have an SE of ratio 0.25."""


class CountOps(TorchDispatchMode):
    """Counts the matrix products with a bias (`addmm`: the classifier, and each SE's two products) and the
    convolutions run under it."""

    def __init__(self) -> None:
        super().__init__()
        self.products = 0
        self.convolutions = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.addmm.default:
            self.products += 1
        if func is torch.ops.aten.convolution.default:
            self.convolutions += 1
        return func(*args, **(kwargs or {}))


def b0_64px() -> nn.Module:
    torch.manual_seed(0)
    return build_model(reference_b0().replace(resolution=64)).double().to(memory_format=CL).train()


def squeeze_excites(model: nn.Module) -> list[SqueezeExcite]:
    return [m for m in model.modules() if isinstance(m, SqueezeExcite)]


def forward_counts(model: nn.Module, images: torch.Tensor) -> CountOps:
    """The ops of one forward pass in eval mode (no BatchNorm statistics updated, no random draws taken)."""
    training = model.training
    counter = CountOps()
    with counter, torch.no_grad():
        model.eval()(images)
    model.train(training)
    return counter


def images_64px(layout: torch.memory_format = CL) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 64, 64, generator=generator, dtype=torch.float64).contiguous(memory_format=layout)


def test_a_training_step_with_the_products_equals_one_with_the_convs(one_torch_thread):
    """B0 at 64 px, channels_last: against the same network with a (no-op) hook on every SE's reduce conv, which
    makes each SE run its convs: the loss, every gradient and every BatchNorm's running statistics."""
    images = images_64px()
    labels = torch.randint(0, 1000, (4,), generator=torch.Generator().manual_seed(2))
    model, reference = b0_64px(), b0_64px()
    for se in squeeze_excites(reference):
        se.reduce.register_forward_hook(lambda module, inputs, output: None)
    assert len(squeeze_excites(model)) == B0_SQUEEZE_EXCITES
    assert forward_counts(model, images).products == 1 + 2 * B0_SQUEEZE_EXCITES
    assert forward_counts(reference, images).products == 1  # the classifier only

    results = []
    for network in (model, reference):
        torch.manual_seed(3)  # the same dropout and stochastic-depth draws
        loss = F.cross_entropy(network(images), labels)
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in network.named_parameters()}))
    (loss, grads), (expected_loss, expected_grads) = results
    assert_same_step(loss, grads, model, expected_loss, expected_grads, reference)


def test_a_hooked_conv_sees_its_4d_input_and_only_its_se_runs_convs(one_torch_thread):
    model = b0_64px().eval()
    seen: list[torch.Size] = []
    watched = squeeze_excites(model)[5]
    watched.expand.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape))
    counts = forward_counts(model, images_64px())
    assert seen == [torch.Size([4, watched.reduce.out_channels, 1, 1])]
    assert counts.products == 1 + 2 * (B0_SQUEEZE_EXCITES - 1)


def test_a_replaced_conv_runs_as_the_module_it_is(one_torch_thread):
    """A conv a user or a library swapped for a module of its own (a wrapper, a quantized conv) is called, not
    read for weights it may not have."""

    class Wrapped(nn.Module):
        def __init__(self, conv: nn.Conv2d):
            super().__init__()
            self.inner = conv
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return self.inner(x)

    model = b0_64px().eval()
    watched = squeeze_excites(model)[3]
    watched.reduce = Wrapped(watched.reduce)
    counts = forward_counts(model, images_64px())
    assert watched.reduce.calls == 1
    assert counts.products == 1 + 2 * (B0_SQUEEZE_EXCITES - 1)


def test_the_default_layout_and_a_global_hook_run_the_convs(one_torch_thread):
    model = b0_64px().eval()
    default_layout = b0_64px().to(memory_format=torch.contiguous_format)
    assert forward_counts(default_layout, images_64px(torch.contiguous_format)).products == 1
    handle = nn.modules.module.register_module_forward_hook(lambda module, inputs, output: None)
    try:
        assert forward_counts(model, images_64px()).products == 1
    finally:
        handle.remove()


def test_a_standalone_se_under_vmap_is_the_plain_se(one_torch_thread):
    """`torch.func.vmap` over an SE (each sample a batch of its own; its wrapped tensors answer no question of
    layout) equals a loop over the samples."""
    torch.manual_seed(0)
    se = SqueezeExcite(8, 2, "silu").double()
    stacked = torch.randn(3, 2, 8, 5, 4, dtype=torch.float64).contiguous()
    looped = torch.stack([se(sample.contiguous(memory_format=CL)) for sample in stacked])
    torch.testing.assert_close(torch.func.vmap(se)(stacked), looped, rtol=1e-12, atol=1e-12)


def test_fvcore_counts_the_convs(one_torch_thread):
    """fvcore counts FLOPs per op on a `torch.jit.trace` of the network: the SEs' convs are counted as convs,
    the same per operator as for the network in the default layout, where no SE takes the products."""
    counts = {}
    for layout in (CL, torch.contiguous_format):
        model = b0_64px().to(memory_format=layout).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notices, fvcore's tracer warnings
            from fvcore.nn import FlopCountAnalysis

            analysis = FlopCountAnalysis(model, images_64px(layout))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            counts[layout] = dict(analysis.by_operator())
    assert counts[CL] == counts[torch.contiguous_format]
    assert counts[CL]["linear"] == 4 * 1280 * 1000  # the classifier alone: 4 images, 1280 features, 1000 classes
