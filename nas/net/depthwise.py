"""A depthwise convolution whose weight gradient takes oneDNN's fast depthwise kernel on the CPU.

oneDNN (torch's CPU convolutions) has a dedicated depthwise kernel for the weight gradient only where the
kernel is at most 3 wide and the input is at least as tall as the kernel; every other depthwise weight
gradient (a 5x5 kernel, or a 3x3 one over a 2x2 map) falls to its generic grouped kernel, which is 5-20x
slower than the forward (bench/RESULTS.md, "Model speed"). The same gradient is a sum of gradients of
kernels at most 3 wide: the columns `start .. start + width` of the kernel are the gradient of a
`width`-wide kernel over the zero-padded input, read from column `start` on (at stride 1, a window of the
input cut there; at stride 2, the padded input with the output gradient shifted right by `start / stride`
columns instead). A chunk starts at a multiple of the stride, so for stride 2 and a 5x5 kernel the chunks
are columns 0-2 and 2-4, column 2 taken from the first. The forward and the input gradient are torch's own.

Only the weight gradient's arithmetic differs (the same products, summed in another order). The fast path
runs where it pays and nothing sees it: under autograd on the CPU in float32 or float64, channels_last,
without autocast, and never while torch.fx, TorchScript, torch.compile, the ONNX exporter or a `torch.func`
transform records or transforms the ops (`effnet.nas.net.unobserved`); every other call is `F.conv2d`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effnet.nas.net.unobserved import recorded

FAST_WIDTH = 3
"""The widest kernel oneDNN's depthwise weight-gradient kernel takes."""


def kernel_chunks(kernel_width: int, stride: int) -> Iterator[tuple[int, int, int]]:
    """(start, width, skip) per chunk: kernel columns `start .. start + width`, each starting at a multiple
    of `stride` and at most `FAST_WIDTH` wide; its first `skip` columns were given by the chunk before."""
    column = 0
    while column < kernel_width:
        start = column - column % stride
        width = min(FAST_WIDTH, kernel_width - start)
        yield start, width, column - start
        column = start + width


def window(x: torch.Tensor, first: int, columns: int, rows: int = 0) -> torch.Tensor:
    """Columns `first .. first + columns` of `x` (N x C x H x W; those outside it zeros) with `rows` rows of zeros
    above and below: `F.pad(x, (-first, first + columns - W, rows, rows))`. A channels_last `x` gives a
    channels_last window written in one pass (borders zeroed, the rest copied), where `F.pad` fills the whole
    tensor first (1.2-1.9x slower at B0's shapes, 2 threads)."""
    n, c, h, w = x.shape
    if not x.is_contiguous(memory_format=torch.channels_last):
        return F.pad(x, (-first, first + columns - w, rows, rows))
    out = torch.empty((n, c, h + 2 * rows, columns), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    out[..., :rows, :].zero_()
    out[..., rows + h :, :].zero_()
    interior = out[..., rows : rows + h, :]
    low = min(max(-first, 0), columns)  # the window's columns low .. high are x's
    high = max(min(w - first, columns), low)
    interior[..., :low].zero_()
    interior[..., high:].zero_()
    interior[..., low:high].copy_(x[..., first + low : first + high])
    return out


def depthwise_weight_grad(
    x: torch.Tensor, grad_out: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> torch.Tensor:
    """The gradient of a depthwise conv's (channels, 1, kh, kw) weight, as chunks at most `FAST_WIDTH` wide.

    Each chunk is the weight gradient of a narrower conv over columns of the zero-padded input. At stride 1 each
    chunk reads its own window of the input, exactly as wide as its conv needs for the output gradient's
    columns; at stride 2 the chunks share one padded input and the output gradient is shifted instead (a quarter
    of the input's size to copy, against a second window)."""
    channels, width_in = x.shape[1], x.shape[-1]
    # Rows: the conv's own padding where the input is at least as tall as the kernel (oneDNN's fast kernel takes
    # it there: 5-25 % less than padding the rows here, at B0's shapes); else padded here with the columns.
    rows_in_conv = x.shape[-2] >= kernel[0]
    rows = 0 if rows_in_conv else padding[0]
    conv_padding = [padding[0] if rows_in_conv else 0, 0]
    out_width = grad_out.shape[-1]
    padded_width = width_in + 2 * padding[1]
    padded = None if stride[1] == 1 else window(x, -padding[1], padded_width, rows)
    chunks = []
    for start, width, skip in kernel_chunks(kernel[1], stride[1]):
        if padded is None:
            source, grad = window(x, start - padding[1], out_width + width - 1, rows), grad_out
        else:
            source, grad = padded, grad_out
            chunk_width = (padded_width - width) // stride[1] + 1
            shift = start // stride[1]
            if shift or chunk_width != out_width:
                grad = window(grad_out, -shift, chunk_width)
        shape = grad.new_empty((channels, 1, kernel[0], width))
        part = torch.ops.aten.convolution_backward(
            grad, source, shape, None, list(stride), conv_padding, [1, 1], False, [0, 0], channels, [False, True, False]
        )[1]
        chunks.append(part[..., skip:])
    return torch.cat(chunks, dim=-1)


class _DepthwiseConv(torch.autograd.Function):
    """`forward(ctx, ...)` rather than `setup_context`: measured 50 us less per call (a 2x2 map's conv is 100 us)."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int]
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, list(ctx.stride), list(ctx.padding), [1, 1], False, [0, 0],
                x.shape[1], [True, False, False],
            )[0]  # fmt: skip
        if ctx.needs_input_grad[1]:
            kernel = (weight.shape[-2], weight.shape[-1])
            grad_weight = depthwise_weight_grad(x, grad_out, kernel, ctx.stride, ctx.padding)
        return grad_x, grad_weight, None, None


def _slow_in_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return weight.shape[-1] > FAST_WIDTH or x.shape[-2] < weight.shape[-2]


def takes_fast_backward(
    x: torch.Tensor, weight: torch.Tensor, groups: int, dilation: tuple[int, ...], bias: torch.Tensor | None
) -> bool:
    """Whether `depthwise_conv2d` would compute this conv's weight gradient in chunks (see the module's doc)."""
    if recorded(x) or not (torch.is_grad_enabled() and weight.requires_grad):
        return False
    return (
        groups > 1
        and bias is None
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and x.dim() == 4
        and groups == x.shape[1] == weight.shape[0]
        and weight.shape[1] == 1
        and tuple(dilation) == (1, 1)
        and not torch.is_autocast_enabled("cpu")
        and x.is_contiguous(memory_format=torch.channels_last)
        and _slow_in_onednn(x, weight)
    )


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """`F.conv2d(x, weight, None, stride, padding, 1, channels)` for a (channels, 1, kh, kw) weight, with the
    weight gradient in chunks where `takes_fast_backward` holds."""
    if takes_fast_backward(x, weight, weight.shape[0], (1, 1), None):
        return _DepthwiseConv.apply(x, weight, (stride, stride), (padding, padding))
    return F.conv2d(x, weight, None, stride, padding, 1, weight.shape[0])


class FastDepthwiseConv2d(nn.Conv2d):
    """`nn.Conv2d`, except that as a depthwise conv with zero padding by integers it takes
    `depthwise_conv2d`'s weight gradient. A subclass, so state dicts and hooks are those of `nn.Conv2d`;
    torch.fx traces into it (a `conv2d` call where a plain `nn.Conv2d` is a leaf module)."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (
            self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and takes_fast_backward(input, weight, self.groups, self.dilation, bias)
        ):
            stride, padding = self.stride, self.padding
            return _DepthwiseConv.apply(input, weight, (stride[0], stride[1]), (padding[0], padding[1]))
        return super()._conv_forward(input, weight, bias)
