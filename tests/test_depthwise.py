"""The depthwise conv's chunked weight gradient equals torch's own, and runs only where nothing can see it."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from effnet.nas.net import depthwise
from effnet.nas.net.depthwise import FastDepthwiseConv2d, depthwise_conv2d, kernel_chunks, takes_fast_backward, window
from effnet.nas.net.model import SameConv2d, build_model
from effnet.scaling.presets import reference_b0


def channels_last(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    t = torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    return t.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    ("first", "columns", "rows"),
    [(-2, 8, 0), (0, 6, 0), (-3, 7, 0), (0, 4, 0), (1, 5, 0), (2, 2, 0), (-2, 8, 2), (3, 4, 1)],
)
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_a_window_equals_torchs_pad(first, columns, rows, layout):
    """Written in one pass for channels_last (torch's pad elsewhere): the same values and layout as `F.pad` with
    the window's padding (negative where it crops), into memory that held other values before (the borders are
    zeroed, not left as they were). Windows over x's left, right, inside and beyond both sides."""
    x = channels_last(2, 5, 3, 4).contiguous(memory_format=layout)
    for _ in range(3):  # reuse freed blocks: an unzeroed border would show their old values
        torch.full((2, 5, 3 + 2 * rows, columns), float("nan"), dtype=torch.float64)
        cut = window(x, first, columns, rows)
        assert torch.equal(cut, F.pad(x, (-first, first + columns - 4, rows, rows)))
        assert cut.is_contiguous(memory_format=layout)


@pytest.mark.parametrize(
    ("width", "stride", "chunks"),
    [
        (3, 1, [(0, 3, 0)]),
        (5, 1, [(0, 3, 0), (3, 2, 0)]),  # columns 0-2, 3-4
        (5, 2, [(0, 3, 0), (2, 3, 1)]),  # the second chunk must start at an even column: 2-4, column 2 skipped
        (7, 1, [(0, 3, 0), (3, 3, 0), (6, 1, 0)]),
        (7, 2, [(0, 3, 0), (2, 3, 1), (4, 3, 1)]),
    ],
)
def test_kernel_chunks_cover_every_column_once_each_starting_at_a_multiple_of_the_stride(width, stride, chunks):
    assert list(kernel_chunks(width, stride)) == chunks


@pytest.mark.parametrize("kernel", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [1, 2, 4, 7, 10])
@pytest.mark.parametrize("padding", ["half", "none"])
def test_gradients_equal_torchs_own_conv(kernel, stride, size, padding):
    """Against `F.conv2d`'s autograd (torch's convolution backward) in float64, for maps smaller and larger than
    the kernel, odd and even, padded by kernel // 2 (the builder's) or not at all (`SameConv2d` pads first)."""
    pad = kernel // 2 if padding == "half" else 0
    if size + 2 * pad < kernel:
        pytest.skip("no output")
    x = channels_last(3, 6, size, size).requires_grad_()
    weight = torch.randn(6, 1, kernel, kernel, dtype=torch.float64, requires_grad=True)
    reference_x = x.detach().clone().requires_grad_()
    reference_w = weight.detach().clone().requires_grad_()

    out = depthwise_conv2d(x, weight, stride, pad)
    reference = F.conv2d(reference_x, reference_w, None, stride, pad, 1, 6)
    grad = torch.randn_like(reference)
    out.backward(grad)
    reference.backward(grad)

    assert torch.equal(out.detach(), reference.detach())  # the forward is torch's own
    torch.testing.assert_close(x.grad, reference_x.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(weight.grad, reference_w.grad, rtol=1e-12, atol=1e-12)


def test_the_chunked_gradient_is_what_ran_and_is_twice_differentiable():
    x = channels_last(2, 4, 6, 6).requires_grad_()
    weight = torch.randn(4, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    assert takes_fast_backward(x, weight, 4, (1, 1), None)
    out = depthwise_conv2d(x, weight, 2, 2)
    assert out.grad_fn is not None and "DepthwiseConv" in type(out.grad_fn).__name__
    assert torch.autograd.gradcheck(lambda a, w: depthwise_conv2d(a, w, 2, 2), (x, weight))
    assert torch.autograd.gradgradcheck(lambda a, w: depthwise_conv2d(a, w, 1, 2), (x, weight))


def test_where_onednn_is_fast_or_nothing_asks_for_a_weight_gradient_torchs_conv_runs():
    x = channels_last(2, 8, 14, 14, dtype=torch.float32)
    five = torch.randn(8, 1, 5, 5, requires_grad=True)
    three = torch.randn(8, 1, 3, 3, requires_grad=True)
    assert takes_fast_backward(x, five, 8, (1, 1), None)
    assert not takes_fast_backward(x, three, 8, (1, 1), None)  # oneDNN's own depthwise kernel takes 3x3 on 14x14
    assert takes_fast_backward(x[..., :2, :2].contiguous(memory_format=torch.channels_last), three, 8, (1, 1), None)
    assert not takes_fast_backward(x.contiguous(), five, 8, (1, 1), None)  # the default layout
    assert not takes_fast_backward(x, five, 1, (1, 1), None)  # not depthwise
    assert not takes_fast_backward(x, five, 8, (2, 2), None)  # dilated
    assert not takes_fast_backward(x, five.detach(), 8, (1, 1), None)  # no weight gradient asked
    with torch.no_grad():
        assert not takes_fast_backward(x, five, 8, (1, 1), None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not takes_fast_backward(x, five, 8, (1, 1), None)


def b0_pair() -> tuple[nn.Module, nn.Module]:
    """The reference B0 at 64 px in training mode, twice with the same weights."""
    torch.manual_seed(0)
    model = build_model(reference_b0().replace(resolution=64)).train()
    return model.to(memory_format=torch.channels_last), copy.deepcopy(model)


def test_b0s_gradients_equal_those_of_torchs_conv(one_torch_thread, monkeypatch):
    """B0 in channels_last (its twelve 5x5 depthwise convs take the chunked gradient, counted) against the same
    weights with the chunked path switched off: every parameter's gradient within float32 rounding."""
    fast, plain = b0_pair()
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([1, 5, 9, 999])

    calls = []
    real = depthwise.depthwise_weight_grad
    monkeypatch.setattr(depthwise, "depthwise_weight_grad", lambda *a: calls.append(a[3]) or real(*a))
    torch.manual_seed(2)
    F.cross_entropy(fast(images.contiguous(memory_format=torch.channels_last)), labels).backward()
    monkeypatch.setattr(depthwise, "takes_fast_backward", lambda *a: False)
    torch.manual_seed(2)
    F.cross_entropy(plain(images.contiguous(memory_format=torch.channels_last)), labels).backward()

    # B0's 5x5 depthwise convs (4 + 6 = 9 blocks) and its 3x3 ones over maps smaller than 3x3 at 64 px (the last block)
    assert len(calls) == 10
    for (name, a), b in zip(fast.named_parameters(), plain.parameters(), strict=True):
        scale = b.grad.abs().max()
        if scale > 1e-4:  # gradients that are zero up to rounding compare as rounding
            torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-5 * scale, msg=name)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
def test_torch_fx_and_tracing_see_torchs_conv(one_torch_thread):
    """The chunked gradient is an autograd function; tracers record the conv it computes instead."""
    conv = FastDepthwiseConv2d(6, 6, 5, 1, 2, groups=6, bias=False)
    same = SameConv2d(6, 6, 5, 2, groups=6)
    x = channels_last(2, 6, 9, 9, dtype=torch.float32)
    for module in (conv, same):
        traced = torch.fx.symbolic_trace(module)
        assert [n.target for n in traced.graph.nodes if n.op == "call_function" and "conv" in str(n.target)]
        assert torch.equal(traced(x), module(x))
        scripted = torch.jit.trace(module, x)
        assert torch.equal(scripted(x), module(x))
        assert "aten::_convolution" in str(scripted.inlined_graph)


def test_torch_func_grad_over_b0_equals_autograd(one_torch_thread):
    """`torch.func` transforms take torch's conv: the chunked gradient's autograd.Function has no functorch
    rule, and under `torch.func.grad` it raised. B0 at 32 px in eval mode (BatchNorm's running statistics are
    not updated inside a transform), float64: the gradient by parameter equals `torch.autograd.grad`'s."""
    torch.manual_seed(0)
    model = build_model(reference_b0().replace(resolution=32)).double().to(memory_format=torch.channels_last).eval()
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    images = channels_last(2, 3, 32, 32)
    labels = torch.tensor([1, 2])

    def loss(p):
        return F.cross_entropy(torch.func.functional_call(model, (p, buffers), (images,)), labels)

    by_func = torch.func.grad(loss)(params)
    expected = torch.autograd.grad(F.cross_entropy(model(images), labels), list(model.parameters()))
    for (name, grad), reference in zip(by_func.items(), expected, strict=True):
        torch.testing.assert_close(grad, reference, rtol=1e-10, atol=1e-14, msg=name)
