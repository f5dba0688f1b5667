"""TensorFlow's "SAME" padding (`padding: same`): where a strided conv puts its padding, checked against
TensorFlow's definition (out = ceil(n / s), padding max((out - 1) * s + k - n, 0), the smaller half before),
worked out by hand for each case below; torch.fx traces it; the symmetric default is untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from effnet.nas.net.model import SameConv2d, build_model
from effnet.scaling.presets import reference_b0


def top_left_tap(kernel: int) -> SameConv2d:
    """A one-channel SAME conv, stride 2, whose only weight is the kernel's top-left tap: output[i, j] is the
    padded input at (2i, 2j), so the output shows where the padding went."""
    conv = SameConv2d(1, 1, kernel, 2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0
    return conv


# (kernel, size, padding before by hand): k 3, n 4: out 2, total 2 + 3 - 4 = 1 -> 0 before, 1 after;
# k 5, n 4: total 2 + 5 - 4 = 3 -> 1 before, 2 after; k 3, n 5: out 3, total 4 + 3 - 5 = 2 -> 1 and 1;
# k 7, n 6: out 3, total 4 + 7 - 6 = 5 -> 2 before, 3 after.
CASES = [(3, 4, 0), (5, 4, 1), (3, 5, 1), (7, 6, 2)]


@pytest.mark.parametrize("kernel,size,before", CASES)
def test_same_padding_puts_the_smaller_half_first(kernel, size, before):
    x = torch.arange(1.0, size * size + 1).reshape(1, 1, size, size)
    with torch.no_grad():
        out = top_left_tap(kernel)(x)
    assert out.shape[-2:] == (-(-size // 2), -(-size // 2))
    padded = nn.functional.pad(x, (before, 0, before, 0))  # only the leading side reaches the top-left taps
    expected = padded[..., ::2, ::2][..., : out.shape[-2], : out.shape[-1]]
    assert torch.equal(out, expected)


def test_same_padding_on_a_rectangle_pads_each_side_for_its_own_size():
    x = torch.arange(1.0, 4 * 5 + 1).reshape(1, 1, 4, 5)  # 4 rows: 0 before; 5 columns: 1 before
    with torch.no_grad():
        out = top_left_tap(3)(x)
    assert out.shape[-2:] == (2, 3)
    assert out[0, 0, 0].tolist() == [0.0, 2.0, 4.0]  # row 0: padding column, x[0, 1], x[0, 3]
    assert out[0, 0, 1].tolist() == [0.0, 12.0, 14.0]  # row 2 of x: padding column, x[2, 1], x[2, 3]


def test_symmetric_default_builds_plain_convs_and_same_only_strided_ones():
    plain = build_model(reference_b0())
    same = build_model(reference_b0().replace(padding="same"))
    assert not any(isinstance(m, SameConv2d) for m in plain.modules())
    strided = [m for m in same.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == 5 and all(isinstance(m, SameConv2d) for m in strided)  # the stem and 4 stages
    assert list(plain.state_dict()) == list(same.state_dict())


def test_torch_fx_traces_same_padding_for_any_input_size(one_torch_thread):
    torch.manual_seed(0)
    model = build_model(reference_b0().replace(padding="same", resolution=64)).eval()
    traced = torch.fx.symbolic_trace(model)
    for size in (64, 67):
        x = torch.randn(2, 3, size, size + 1)
        with torch.no_grad():
            assert torch.equal(traced(x), model(x))
