"""The forward pass is one function of its inputs: in every grad mode, seen by hooks, traced by torch.fx."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from effnet.nas.net.fold import fold_batch_norm
from effnet.nas.net.model import build_model
from effnet.scaling.presets import reference_b0

MODES = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode, "enable_grad": torch.enable_grad}


@pytest.fixture(scope="module")
def b0() -> nn.Module:
    """The reference B0 at 64 px (every block type, SE and residual of the real network), eval mode."""
    torch.manual_seed(0)
    return build_model(reference_b0().replace(resolution=64)).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("folded", [False, True], ids=["b0", "folded b0"])
@pytest.mark.parametrize("mode", list(MODES))
def test_what_a_forward_hook_sees_is_not_overwritten_afterwards(b0, images, mode, folded, one_torch_thread):
    """A hook keeps a module's output tensor; an in-place op later in the forward (an activation, the SE gate,
    a residual add) would change it under the hook's feet. Each kept tensor must still equal its copy. The
    folded network applies its activations in place, inside the conv that made the tensor: still unseen."""
    if folded:
        b0 = fold_batch_norm(b0)
    seen: list[tuple[str, torch.Tensor, torch.Tensor]] = []

    def keep(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            seen.append((name, output, output.detach().clone()))

        return hook

    handles = [m.register_forward_hook(keep(name)) for name, m in b0.named_modules() if name]
    try:
        with MODES[mode]():
            b0(images)
    finally:
        for handle in handles:
            handle.remove()
    assert len(seen) == len(handles)  # every module of B0 ran once and was seen
    changed = [name for name, kept, copy in seen if not torch.equal(kept.detach(), copy)]
    assert changed == [], f"overwritten after their hook ran: {changed[:5]}"


def test_every_grad_mode_computes_the_same_outputs(b0, images, one_torch_thread):
    outputs = {}
    for mode, context in MODES.items():
        with context():
            outputs[mode] = b0(images).detach()
    assert torch.equal(outputs["no_grad"], outputs["enable_grad"])
    assert torch.equal(outputs["inference_mode"], outputs["enable_grad"])


def test_torch_fx_traces_b0_into_the_same_function(b0, images, one_torch_thread):
    traced = torch.fx.symbolic_trace(b0)
    with torch.no_grad():
        assert torch.equal(traced(images), b0(images))
    assert torch.equal(traced(images).detach(), b0(images).detach())
