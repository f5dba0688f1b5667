"""The head's global average pool as a sum over the pixels (CPU, channels_last, nothing watching): the same loss,
gradients and BatchNorm statistics as `AdaptiveAvgPool2d` (float64), the head's gradient kept channels_last, and
the pool itself wherever a hook watches it or a tracer records the network (fvcore counts it)."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from same_step import assert_same_step
from torch import nn

from effnet.nas.net.model import build_model
from effnet.scaling.presets import reference_b0

CL = torch.channels_last


def b0_64px() -> nn.Module:
    torch.manual_seed(0)
    return build_model(reference_b0().replace(resolution=64)).double().to(memory_format=CL).train()


def images_64px() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 64, 64, generator=generator, dtype=torch.float64).contiguous(memory_format=CL)


def step(model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[bool]]:
    """One training step's loss and gradients, and whether the gradient of the head BatchNorm's output (what the
    head's activation passes back) was channels_last."""
    head_grad_channels_last: list[bool] = []

    def watch_output(module, inputs, output):
        output.register_hook(lambda grad: head_grad_channels_last.append(grad.is_contiguous(memory_format=CL)))

    handle = model.head[1].register_forward_hook(watch_output)  # the head's BatchNorm; the pool is not watched
    try:
        torch.manual_seed(3)  # the same dropout and stochastic-depth draws
        loss = F.cross_entropy(model(images_64px()), torch.tensor([1, 2, 3, 4]))
        loss.backward()
    finally:
        handle.remove()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters()}, head_grad_channels_last


def test_the_sum_equals_the_pool_and_keeps_the_heads_gradient_channels_last(one_torch_thread):
    model, reference = b0_64px(), b0_64px()
    reference.pool.register_forward_hook(lambda module, inputs, output: None)  # a watched pool runs itself
    loss, grads, head_cl = step(model)
    expected_loss, expected_grads, reference_head_cl = step(reference)
    assert head_cl == [True] and reference_head_cl == [False]
    assert_same_step(loss, grads, model, expected_loss, expected_grads, reference)


def test_fvcore_counts_the_pool(one_torch_thread):
    """fvcore traces the network (`torch.jit.trace`): the pool is recorded as the pool, one FLOP per input
    element (4 images x 1280 channels x 2 x 2 pixels at 64 px), as it counts B0's 62,720 at 224 px."""
    model = b0_64px().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notices, fvcore's tracer warnings
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, images_64px())
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        counts = dict(analysis.by_operator())
    assert counts["adaptive_avg_pool2d"] == 4 * 1280 * 2 * 2
