"""The folded network's SE gate multiplied into the next 1x1 conv's weights: the same function as the layers it
replaces (forward and backward, float64), used exactly where the pixels outnumber the conv's output channels, and
never where a hook, torch.fx or an exporter would see the difference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from effnet.nas.net.fold import ActivatedConv2d, fold_batch_norm
from effnet.nas.net.gated import gated_pointwise
from effnet.nas.net.model import SqueezeExcite, build_model
from effnet.scaling.presets import reference_b0

CL = torch.channels_last


def channels_last(*shape: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64).contiguous(memory_format=CL)


@pytest.mark.parametrize("activated", [False, True], ids=["conv", "conv + SiLU"])
@pytest.mark.parametrize("bias", [False, True], ids=["no bias", "bias"])
def test_gated_pointwise_is_the_conv_of_the_gated_input_forward_and_backward(activated, bias, one_torch_thread):
    """Against the plain expression `conv(x * gate)` (then SiLU where the conv applies it): equal outputs and
    gradients for the input, the gate, the weights and the bias, and torch's gradcheck in float64."""
    if activated:
        conv: nn.Conv2d = ActivatedConv2d(6, 5, 1, 1, 0, bias=bias).double()
        conv.activation = F.silu
    else:
        conv = nn.Conv2d(6, 5, 1, bias=bias).double()
    x = channels_last(3, 6, 4, 5, seed=0).requires_grad_()
    gate = torch.rand(3, 6, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    params = [conv.weight, *([conv.bias] if bias else [])]

    def plain(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x * gate, conv.weight, conv.bias)
        return F.silu(out) if activated else out

    out = gated_pointwise(x, gate, conv)
    expected = plain(x, gate)
    assert out.shape == expected.shape and out.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    grad = channels_last(*expected.shape, seed=2)
    mine = torch.autograd.grad(out, [x, gate, *params], grad)
    theirs = torch.autograd.grad(expected, [x, gate, *params], grad)
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x, gate, *p: gated_pointwise(x, gate, conv), (x, gate, *params))


@pytest.fixture(scope="module")
def b0() -> nn.Module:
    torch.manual_seed(0)
    return build_model(reference_b0().replace(resolution=64)).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)).contiguous(memory_format=CL)


def run_counting_products(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The model's output in inference mode and how many batched matrix products (baddbmm) it ran."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        products = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.baddbmm.default:
                Count.products += 1
            return func(*args, **(kwargs or {}))

    with torch.inference_mode(), Count():
        out = model(images)
    return out, Count.products


def test_folded_b0_gates_the_weights_of_its_first_three_blocks_at_64_px(b0, images, one_torch_thread):
    """B0 at 64 px: block 1 at 32x32 px into 16 channels and stage 2's two blocks at 16x16 into 24 pass the rule
    (H*W >= 8 x output channels); stage 3 at 8x8 into 40 does not. The output is the unfolded network's."""
    folded = fold_batch_norm(b0).to(memory_format=CL)
    out, products = run_counting_products(folded, images)
    assert products == 3
    with torch.inference_mode():
        expected = b0(images)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_a_hooked_se_keeps_its_output_and_its_block_runs_layer_by_layer(b0, images, one_torch_thread):
    folded = fold_batch_norm(b0).to(memory_format=CL)
    se = next(m for m in folded.blocks[1].modules() if isinstance(m, SqueezeExcite))
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = se.register_forward_hook(lambda module, inputs, output: seen.append((inputs[0], output)))
    try:
        out, products = run_counting_products(folded, images)
    finally:
        handle.remove()
    assert products == 2  # blocks 1 and 3 still gate their weights
    ((x, kept),) = seen
    torch.testing.assert_close(kept, x * se.gate(x), rtol=0, atol=0)
    plain, _ = run_counting_products(fold_batch_norm(b0), images.contiguous())  # contiguous: no gated weights
    torch.testing.assert_close(out, plain, rtol=1e-4, atol=1e-4 * plain.abs().max().item())


def test_torch_fx_traces_the_folded_layers_as_they_are(b0, images, one_torch_thread):
    folded = fold_batch_norm(b0).to(memory_format=CL)
    traced = torch.fx.symbolic_trace(folded)
    assert not any(node.target in (torch.bmm, torch.baddbmm) for node in traced.graph.nodes)
    out, products = run_counting_products(traced, images)
    assert products == 0
    with torch.inference_mode():
        torch.testing.assert_close(out, folded(images), rtol=1e-4, atol=1e-4 * out.abs().max().item())
