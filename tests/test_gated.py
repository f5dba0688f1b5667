"""The training network's SE gate multiplied into the next 1x1 conv's weights: the same loss, gradients and
BatchNorm statistics as the layers run one by one (float64), on exactly the blocks the pixel rule names, and
never where a hook or torch.fx would see the difference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from same_step import assert_same_step
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from effnet.nas.net import gated
from effnet.nas.net.model import SqueezeExcite, build_model
from effnet.scaling.presets import reference_b0

CL = torch.channels_last


class CountProducts(TorchDispatchMode):
    """Counts the batched matrix products (bmm) run under it: one per gated block in the forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.products = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.bmm.default:
            self.products += 1
        return func(*args, **(kwargs or {}))


def b0_64px() -> nn.Module:
    torch.manual_seed(0)
    return build_model(reference_b0().replace(resolution=64)).double().to(memory_format=CL).train()


def step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict, int]:
    """One training step's loss and parameter gradients, and how many gated products its forward ran (the same
    dropout and stochastic-depth draws at every call)."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(2)
    counter = CountProducts()
    with counter:
        loss = F.cross_entropy(model(images), labels)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, counter.products


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 64, 64, generator=generator, dtype=torch.float64).contiguous(memory_format=CL)
    return images, torch.randint(0, 1000, (4,), generator=generator)


def test_a_training_step_gates_the_first_three_blocks_of_b0_at_64_px_and_changes_nothing_it_computes(
    batch, monkeypatch, one_torch_thread
):
    """B0 at 64 px: block 1 at 32x32 px into 16 channels and stage 2's two blocks at 16x16 into 24 pass the rule
    (H*W >= 8 x output channels), stage 3 at 8x8 into 40 does not. Against the same network with the rule
    switched off: the loss, every parameter's gradient and every BatchNorm's running statistics."""
    images, labels = batch
    model, reference = b0_64px(), b0_64px()
    loss, grads, products = step(model, images, labels)
    assert products == 3
    monkeypatch.setattr(gated, "GATED_MIN_PIXELS_PER_CHANNEL", 10**9)
    expected_loss, expected_grads, none = step(reference, images, labels)
    assert none == 0
    assert_same_step(loss, grads, model, expected_loss, expected_grads, reference)


def test_a_hooked_se_sees_its_output_and_only_its_block_runs_layer_by_layer(batch, one_torch_thread):
    images, labels = batch
    model = b0_64px()
    se = next(m for m in model.blocks[1].modules() if isinstance(m, SqueezeExcite))
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = se.register_forward_hook(lambda module, inputs, output: seen.append((inputs[0], output)))
    try:
        _, _, products = step(model, images, labels)
    finally:
        handle.remove()
    assert products == 2  # blocks 1 and 3 still gate their weights
    ((x, output),) = seen
    torch.testing.assert_close(output, x * se.gate(x), rtol=0, atol=0)


def test_a_backward_hook_on_the_projection_conv_gets_its_gradients(batch, one_torch_thread):
    """A full backward hook needs the conv's own call: the block runs layer by layer and the hook fires."""
    images, labels = batch
    model = b0_64px()
    project = model.blocks[0].layers[-1][0]
    fired: list[torch.Size] = []
    handle = project.register_full_backward_hook(lambda module, grad_in, grad_out: fired.append(grad_out[0].shape))
    try:
        _, _, products = step(model, images, labels)
    finally:
        handle.remove()
    assert products == 2 and fired == [torch.Size([4, 16, 32, 32])]


def test_torch_fx_traces_the_training_layers_as_they_are(batch, one_torch_thread):
    images, labels = batch
    model = b0_64px()
    traced = torch.fx.symbolic_trace(model)
    assert not any(node.target in (torch.bmm, torch.baddbmm) for node in traced.graph.nodes)
    modules = {node.target for node in traced.graph.nodes if node.op == "call_module"}
    assert {"blocks.1.layers.2.expand", "blocks.1.layers.3.0"} <= modules  # the SE's conv, the projection conv
    loss, _, products = step(traced, images, labels)
    assert products == 0
    expected_loss, _, _ = step(b0_64px(), images, labels)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-12, atol=0)
