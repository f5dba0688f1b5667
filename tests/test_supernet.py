"""The supernet proxy: inherited networks are the builder's networks, slicing, training once, resuming, scoring."""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
import signal
from pathlib import Path

import pytest
import torch

from effnet.nas.data.sources import proxy_data
from effnet.nas.errors import InputError, SettingError
from effnet.nas.net.flops import analytic_flops
from effnet.nas.net.model import build_model
from effnet.nas.net.spec import BatchNormSpec
from effnet.nas.proxies import supernet_training
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.elastic import ConvBN
from effnet.nas.proxies.factory import make_proxy
from effnet.nas.proxies.supernet import Supernet
from effnet.nas.proxies.supernet_training import (
    SupernetSetup,
    draw_path,
    load_supernet,
    read_checkpoint,
    train_supernet,
)
from effnet.nas.signals import request_stop
from effnet.nas.space.load import load_space

SPACE = load_space(Path(__file__).parent / "data" / "supernet_space.yaml")
BASE = {  # one path of the space; each test varies from it
    "s1_block": "mbconv",
    "s1_expand": 3,
    "s1_kernel": 3,
    "s1_se_ratio": 0.25,
    "s1_skip": "pool",
    "s1_width": 2.0,
    "s1_repeats_offset": 0,
    "s2_block": "mbconv",
    "s2_expand": 3,
    "s2_kernel": 5,
    "s2_se_ratio": 0.25,
    "s2_skip": "pool",
    "s2_width": 1.0,
    "s2_repeats_offset": 0,
}
EVERY_CHOICE = [
    (name, option)
    for name, options in [
        (f"s{i + 1}_{key}", getattr(stage, key))
        for i, stage in enumerate(SPACE.stages)
        for key in ("block", "expand", "kernel", "se_ratio", "skip", "width", "repeats_offset")
    ]
    for option in options
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks: one torch thread is faster, and on a shared 2-core machine far faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def path(**changes) -> object:
    return SPACE.spec_from_params({**BASE, **changes})


def randomised(supernet: Supernet) -> Supernet:
    """Every weight, BatchNorm statistic and bias away from its initial value, so a wrong slice shows."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in itertools.chain(supernet.named_parameters(), supernet.named_buffers()):
            if not tensor.is_floating_point():
                continue
            noise = torch.rand(tensor.shape, generator=generator)
            tensor.copy_(0.5 + noise if name.endswith("running_var") else 0.6 * (noise - 0.5))
    return supernet


def assert_inherits(supernet: Supernet, spec, images: torch.Tensor) -> None:
    """The path's weights fit the builder's network of the spec exactly, and both compute the same outputs."""
    state = supernet.state_for(spec)
    model = build_model(supernet.network(spec))
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    for training in (False, True):  # running statistics, then batch statistics
        supernet.train(training)
        model.train(training)
        torch.testing.assert_close(supernet(images, spec), model(images))


SHARINGS = [
    ("shared", "separate"),
    ("separate", "separate"),
    ("separate", "nested"),
    ("shared", "nested"),
    ("transformed", "nested"),
]


@pytest.fixture(scope="module", params=SHARINGS, ids=[f"kernels={k}-ops={o}" for k, o in SHARINGS])
def supernet(request) -> Supernet:
    torch.manual_seed(0)
    kernels, ops = request.param
    return randomised(Supernet(SPACE, resolution=16, num_classes=4, kernels=kernels, ops=ops))


IMAGES = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


# -- the inherited network is the stand-alone network ---------------------------------------------


@pytest.mark.parametrize("name, option", EVERY_CHOICE, ids=[f"{n}={o}" for n, o in EVERY_CHOICE])
def test_inherited_network_is_the_standalone_network_for_every_choice(supernet, name, option):
    assert_inherits(supernet, path(**{name: option}), IMAGES)


def test_inherited_network_is_the_standalone_network_for_random_paths(supernet):
    rng = random.Random(5)
    for _ in range(15):
        assert_inherits(supernet, SPACE.random_spec(rng), IMAGES)


def test_inherited_network_is_the_standalone_network_with_same_padding():
    """TensorFlow's SAME padding in the base: the supernet pads its strided convs as the builder does (an even
    16 px input, where SAME and symmetric padding differ)."""
    torch.manual_seed(0)
    space = dataclasses.replace(SPACE, base=SPACE.base.replace(padding="same"))
    net = randomised(Supernet(space, resolution=16, num_classes=4, kernels="separate"))
    rng = random.Random(7)
    for _ in range(5):
        assert_inherits(net, space.random_spec(rng), IMAGES)


def test_standalone_holds_copies_and_scores_like_the_supernet(supernet):
    spec = path(s2_block="dsconv", s2_width=0.5)
    model = supernet.standalone(spec).eval()
    supernet.eval()
    torch.testing.assert_close(model(IMAGES), supernet(IMAGES, spec))
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.zero_()  # what precise BN does to a copy's statistics must not reach the supernet
    supernet_state = supernet.state_for(spec)
    assert all(t.abs().sum() > 0 for k, t in supernet_state.items() if k.endswith(("weight", "running_var")))


def test_identity_and_pooling_shortcuts_follow_the_widths():
    """Stage 1 keeps the identity at width 1.0 (8 -> 8 channels, stride 1) and projects at width 2.0; a projection's
    weights are the stage's first layer's."""
    net = Supernet(SPACE, resolution=16, num_classes=4)
    assert "blocks.0.shortcut.0.0.weight" not in net.state_for(path(s1_width=1.0))
    projected = net.state_for(path(s1_width=2.0))["blocks.0.shortcut.0.0.weight"]
    assert projected.shape == (16, 8, 1, 1)  # 8 stem channels to 16
    pooled = net.state_for(path(s2_width=0.5))["blocks.1.shortcut.1.0.weight"]  # after the 2x2 pooling
    assert pooled.shape == (8, 16, 1, 1)


# -- slicing -------------------------------------------------------------------------------------


def test_a_smaller_kernel_is_the_centre_of_the_largest_when_shared():
    net = Supernet(SPACE, resolution=16, num_classes=4, kernels="shared")
    depthwise = net.stages[1][0].ops["dsconv"].depthwise
    with torch.no_grad():
        depthwise.weights["5"].copy_(torch.arange(25.0).view(1, 1, 5, 5) + 100 * torch.arange(16.0).view(16, 1, 1, 1))
    state = net.state_for(path(s2_block="dsconv", s2_kernel=3, s2_width=1.0))
    centre = torch.tensor([[6.0, 7, 8], [11, 12, 13], [16, 17, 18]])  # rows 1-3, columns 1-3 of a 5x5 counted 0-24
    weight = state["blocks.1.layers.0.0.weight"]
    assert weight.shape == (16, 1, 3, 3)
    for channel in (0, 5, 15):
        assert torch.equal(weight[channel, 0], centre + 100 * channel)


def test_a_transformed_kernel_maps_the_centre_by_its_matrix():
    """OFA's elastic kernel: the 3x3 kernel is the 5x5's centre, its 9 taps mapped by the layer's 9x9 matrix
    (the same for every channel), which starts as the identity; the 5x5 kernel stays the weight itself."""
    net = Supernet(SPACE, resolution=16, num_classes=4, kernels="transformed")
    depthwise = net.stages[1][0].ops["dsconv"].depthwise
    assert set(depthwise.weights) == {"5"} and set(depthwise.transforms) == {"3"}
    assert torch.equal(depthwise.transforms["3"], torch.eye(9))
    with torch.no_grad():
        depthwise.weights["5"].copy_(torch.arange(25.0).view(1, 1, 5, 5) + 100 * torch.arange(16.0).view(16, 1, 1, 1))
    small = path(s2_block="dsconv", s2_kernel=3, s2_width=1.0)
    centre = torch.tensor([[6.0, 7, 8], [11, 12, 13], [16, 17, 18]])  # rows 1-3, columns 1-3 of a 5x5 counted 0-24
    assert torch.equal(net.state_for(small)["blocks.1.layers.0.0.weight"][5, 0], centre + 500)  # the identity
    with torch.no_grad():  # tap i becomes the sum of taps i and i+1 (the last tap alone), by a hand-made matrix
        depthwise.transforms["3"].copy_(torch.eye(9) + torch.diag(torch.ones(8), 1))
    weight = net.state_for(small)["blocks.1.layers.0.0.weight"]
    for channel in (0, 5, 15):
        taps = (centre + 100 * channel).flatten()
        expected = torch.cat([taps[:-1] + taps[1:], taps[-1:]]).view(3, 3)
        assert torch.equal(weight[channel, 0], expected)
    large = net.state_for(path(s2_block="dsconv", s2_kernel=5, s2_width=1.0))["blocks.1.layers.0.0.weight"]
    assert torch.equal(large, depthwise.weights["5"])


def test_a_transformed_kernel_chains_through_the_sizes_between():
    """With kernels 3, 5 and 7, the 3x3 is the centre of the transformed 5x5, mapped again (7 -> 5 -> 3)."""
    conv = ConvBN(2, 2, (3, 5, 7), 1, BatchNormSpec(), depthwise=True, sharing="transformed")
    assert set(conv.transforms) == {"5", "3"}
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for tensor in (conv.weights["7"], conv.transforms["5"], conv.transforms["3"]):
            tensor.copy_(torch.randn(tensor.shape, generator=generator))
    full = conv.weights["7"]
    five = (full[:, :, 1:6, 1:6].reshape(2, 25) @ conv.transforms["5"].T).view(2, 1, 5, 5)
    three = (five[:, :, 1:4, 1:4].reshape(2, 9) @ conv.transforms["3"].T).view(2, 1, 3, 3)
    torch.testing.assert_close(conv.weight(2, 2, 5), five)
    torch.testing.assert_close(conv.weight(2, 2, 3), three)


def test_a_transformed_kernel_trains_its_matrix_and_the_largest_kernel():
    """A 3x3 path's loss reaches the 9x9 matrix and, through it, the 5x5 weight's centre alone."""
    net = Supernet(SPACE, resolution=16, num_classes=4, kernels="transformed")
    depthwise = net.stages[1][0].ops["dsconv"].depthwise
    net(IMAGES, path(s2_block="dsconv", s2_kernel=3)).square().sum().backward()
    matrix, largest = depthwise.transforms["3"].grad, depthwise.weights["5"].grad
    assert matrix is not None and matrix.abs().sum() > 0
    assert largest is not None and largest[..., 1:4, 1:4].abs().sum() > 0
    ring = largest.clone()
    ring[..., 1:4, 1:4] = 0
    assert ring.abs().sum() == 0  # the taps outside the centre take no part in a 3x3 kernel


def test_a_kernel_size_or_sharing_the_layer_does_not_offer_is_refused():
    """A size between two offered ones is no chained centre, and an unknown sharing is no sharing at all."""
    conv = ConvBN(2, 2, (3, 7), 1, BatchNormSpec(), depthwise=True, sharing="transformed")
    with pytest.raises(ValueError, match=r"kernel 5 is not one of this layer's sizes \[3, 7\]"):
        conv.weight(2, 2, 5)
    with pytest.raises(SettingError, match="supernet_kernels must be one of shared, separate, transformed"):
        Supernet(SPACE, resolution=16, num_classes=4, kernels="shard")
    with pytest.raises(SettingError, match="supernet_ops must be one of separate, nested"):
        Supernet(SPACE, resolution=16, num_classes=4, ops="nest")


def test_separate_kernels_have_their_own_weights():
    net = Supernet(SPACE, resolution=16, num_classes=4, kernels="separate")
    depthwise = net.stages[1][0].ops["dsconv"].depthwise
    assert set(depthwise.weights) == {"3", "5"}
    with torch.no_grad():
        depthwise.weights["3"].fill_(3.0)
        depthwise.weights["5"].fill_(5.0)
    small = net.state_for(path(s2_block="dsconv", s2_kernel=3))["blocks.1.layers.0.0.weight"]
    large = net.state_for(path(s2_block="dsconv", s2_kernel=5))["blocks.1.layers.0.0.weight"]
    assert (small == 3.0).all() and (large == 5.0).all()


def test_nested_ops_group_the_expand_ratios_and_the_blocks_without_an_expansion():
    separate = Supernet(SPACE, resolution=16, num_classes=4, ops="separate")
    nested = Supernet(SPACE, resolution=16, num_classes=4, ops="nested")
    assert set(separate.stages[1][0].ops) == {"mbconv1", "mbconv3", "dsconv", "conv"}
    assert set(nested.stages[1][0].ops) == {"mbconv1", "mbconv", "conv"}  # dsconv runs on mbconv1's weights
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(nested) < count(separate)


def test_nested_layers_that_can_keep_the_identity_start_with_a_zero_scale():
    """Zero-gamma: a stage's later layers start as their shortcut in every path; its first layer, which
    changes the shape, and every layer of separate ops start as the builder initialises them."""
    nested = Supernet(SPACE, resolution=16, num_classes=4, ops="nested")
    first, later = nested.stages[1][0], nested.stages[1][1]
    assert all(bool(op.project.bn.weight.eq(1).all()) for k, op in first.ops.items() if k != "conv")
    assert bool(first.ops["conv"].conv.bn.weight.eq(1).all())
    assert all(bool(op.project.bn.weight.eq(0).all()) for k, op in later.ops.items() if k != "conv")
    assert bool(later.ops["conv"].conv.bn.weight.eq(0).all())
    separate = Supernet(SPACE, resolution=16, num_classes=4, ops="separate")
    assert all(bool(bn.weight.eq(1).all()) for bn in separate.modules() if isinstance(bn, torch.nn.BatchNorm2d))


def test_nested_expand_ratios_take_the_leading_channels_of_the_largest():
    """Stage 2 offered expand 1, 3 and 6 (16 -> 16 channels at width 1.0): expand 3 uses the first 48 channels of
    the op's 96-channel expansion, its depthwise conv and the projection's input; expand 1 and dsconv share one
    op of their own."""
    stages = (SPACE.stages[0], dataclasses.replace(SPACE.stages[1], expand=(1, 3, 6)))
    space = dataclasses.replace(SPACE, stages=stages)
    net = Supernet(space, resolution=16, num_classes=4, kernels="separate", ops="nested")
    op = net.stages[1][0].ops["mbconv"]
    with torch.no_grad():
        channel = torch.arange(96.0)
        op.expand.weights["1"].copy_(channel.view(96, 1, 1, 1).expand(96, 16, 1, 1))
        op.depthwise.weights["3"].copy_(channel.view(96, 1, 1, 1).expand(96, 1, 3, 3))
        op.project.weights["1"].copy_(channel.view(1, 96, 1, 1).expand(16, 96, 1, 1))
    for expand in (3, 6):
        state = net.state_for(path(s2_block="mbconv", s2_expand=expand, s2_kernel=3, s2_se_ratio=0.0))
        leading = torch.arange(16.0 * expand)
        assert torch.equal(state["blocks.1.layers.0.0.weight"][:, 0, 0, 0], leading)  # the expansion
        assert torch.equal(state["blocks.1.layers.1.0.weight"][:, 0, 0, 0], leading)  # the depthwise conv
        assert torch.equal(state["blocks.1.layers.2.0.weight"][5, :, 0, 0], leading)  # the projection's input
    single = net.stages[1][0].ops["mbconv1"]
    with torch.no_grad():
        single.depthwise.weights["3"].fill_(7.0)
        single.project.bn.weight.copy_(torch.arange(16.0) + 1000)
    for block in ("mbconv", "dsconv"):
        state = net.state_for(path(s2_block=block, s2_expand=1, s2_kernel=3, s2_se_ratio=0.0))
        depthwise, project = state["blocks.1.layers.0.0.weight"], state["blocks.1.layers.1.0.weight"]
        assert depthwise.shape == (16, 1, 3, 3) and project.shape == (16, 16, 1, 1)
        assert (depthwise == 7.0).all()
        assert torch.equal(state["blocks.1.layers.1.1.weight"], torch.arange(16.0) + 1000)
        assert "blocks.1.layers.2.0.weight" not in state  # no expansion


def test_widths_take_the_leading_channels_of_output_and_input():
    net = Supernet(SPACE, resolution=16, num_classes=4)
    conv = net.stages[1][0].ops["conv"].conv  # 16 (stage 1 at width 2.0) -> 16 channels at most
    with torch.no_grad():
        out_index = torch.arange(16.0).view(16, 1, 1, 1)
        in_index = torch.arange(16.0).view(1, 16, 1, 1)
        conv.weights["5"].copy_((100 * out_index + in_index).expand(16, 16, 5, 5))
        conv.bn.weight.copy_(torch.arange(16.0))
    state = net.state_for(path(s1_width=1.0, s2_block="conv", s2_kernel=5, s2_width=0.5))  # 8 -> 8 channels
    weight = state["blocks.1.layers.0.0.weight"]
    assert weight.shape == (8, 8, 5, 5)
    assert weight[3, 6, 2, 2] == 306 and weight[7, 0, 0, 4] == 700 and weight[0, 7, 4, 0] == 7
    assert torch.equal(state["blocks.1.layers.0.1.weight"], torch.arange(8.0))


def test_repeats_take_the_first_layers_of_a_stage():
    net = Supernet(SPACE, resolution=16, num_classes=4)
    layers = net.stages[1]
    assert len(layers) == 3  # 2 repeats + the largest offset, 1
    with torch.no_grad():
        for index, layer in enumerate(layers):
            layer.ops["conv"].conv.weights["5"].fill_(float(index))
    for offset, repeats in ((-1, 1), (0, 2), (1, 3)):
        state = net.state_for(path(s2_block="conv", s2_kernel=3, s2_repeats_offset=offset))
        firsts = [state[f"blocks.{1 + i}.layers.0.0.weight"] for i in range(repeats)]  # block 0 is stage 1's
        assert [float(w.detach().unique()) for w in firsts] == list(range(repeats))
        assert f"blocks.{1 + repeats}.layers.0.0.weight" not in state


def test_a_spec_outside_the_space_is_refused():
    net = Supernet(SPACE, resolution=16, num_classes=4)
    spec = path()
    outside = spec.replace(stages=(dataclasses.replace(spec.stages[0], kernel=7), spec.stages[1]))
    with pytest.raises(InputError, match="stage 1 has kernel 7, not a choice of the space 'supernet-test'"):
        net.state_for(outside)


# -- training once, reuse, resume -----------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic():
    return proxy_data("synthetic", 16, seed=0)


def tiny(**changes) -> ProxyConfig:
    return ProxyConfig(
        **{
            "name": "supernet",
            "data": "synthetic",
            "resolution": 16,
            "batch_size": 32,
            "lr": 0.01,
            "supernet_epochs": 2,
            "max_train_batches": 3,
            **changes,
        }
    )


ONE_THREAD = ProxyRuntime(threads=1)
WHOLE_SPACE = (0.0, 1e12)


def setup_in(folder: Path) -> SupernetSetup:
    return SupernetSetup(SPACE, *WHOLE_SPACE, folder)


def test_paths_are_drawn_inside_the_band_or_refused():
    rng = random.Random(0)
    flops = sorted(analytic_flops(SPACE.random_spec(rng)) for _ in range(200))
    low, high = flops[50], flops[150]  # the middle half of the space
    assert all(low <= analytic_flops(draw_path(SPACE, rng, low, high)) <= high for _ in range(50))
    with pytest.raises(InputError, match="no architecture of the space 'supernet-test' in"):
        draw_path(SPACE, rng, 1, 2)


def test_supernet_is_trained_once_and_then_reused(synthetic, tmp_path, monkeypatch):
    setup = setup_in(tmp_path)
    progress = []
    first = train_supernet(setup, tiny(), synthetic, ONE_THREAD, on_progress=progress.append)
    assert (first.steps, first.total_steps, first.complete, first.stopped) == (6, 6, True, None)  # 2 epochs x 3
    assert [(p.done, p.total) for p in progress] == [(step, 6) for step in range(1, 7)]
    assert all(p.preparing for p in progress)  # steps of the supernet, not the study's units
    assert "training the supernet: epoch 2/2" in progress[-1].status
    assert first.path.parent == tmp_path and first.path.name.startswith("supernet-")
    saved = first.path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("a trained supernet was trained again")

    monkeypatch.setattr(supernet_training, "_Trainer", no_training)
    again = train_supernet(setup, tiny(), synthetic, ONE_THREAD)
    assert (again.steps, again.seconds_now, again.seconds) == (6, 0.0, first.seconds)
    assert first.path.stat().st_mtime_ns == saved
    assert setup.checkpoint(tiny(supernet_epochs=3), 0) != first.path  # another shape, another file
    assert setup.checkpoint(tiny(supernet_kernels="shared"), 0) != first.path
    assert setup.checkpoint(tiny(supernet_recipe="sandwich"), 0) != first.path  # recipes never share a checkpoint
    assert setup.checkpoint(tiny(supernet_ops="nested"), 0) != first.path
    assert "supernet_ops" not in setup.settings(tiny(), 0)["proxy"]  # the checkpoints of before keep their name
    assert setup.settings(tiny(supernet_recipe="sandwich"), 0)["proxy"]["supernet_recipe"] == "sandwich"
    assert setup.checkpoint(tiny(), 1) != first.path
    assert setup.checkpoint(tiny(epochs=7), 0) == first.path  # the train proxy's epochs do not shape it
    state = torch.load(first.path, weights_only=True)  # plain tensors and data only
    assert state["step"] == 6 and state["settings"] == setup.settings(tiny(), 0)
    assert "optimizer" not in state  # finished: nothing resumes it


@pytest.mark.parametrize(
    "recipe, ops, kernels",
    [
        ("uniform", "separate", "separate"),
        ("sandwich", "separate", "separate"),
        ("uniform", "nested", "separate"),
        ("sandwich", "nested", "separate"),
        ("uniform", "nested", "transformed"),
    ],
)
def test_a_resumed_training_ends_where_an_uninterrupted_one_does(synthetic, tmp_path, recipe, ops, kernels):
    config = tiny(supernet_recipe=recipe, supernet_ops=ops, supernet_kernels=kernels)
    whole = train_supernet(setup_in(tmp_path / "whole"), config, synthetic, ONE_THREAD)

    def stop_after_four(progress):
        if progress.done == 4:  # in the middle of the second epoch
            request_stop(signal.SIGINT)

    setup = setup_in(tmp_path / "resumed")
    stopped = train_supernet(setup, config, synthetic, ONE_THREAD, on_progress=stop_after_four)
    assert (stopped.steps, stopped.stopped, stopped.signal, stopped.complete) == (4, "interrupt", signal.SIGINT, False)
    assert read_checkpoint(setup, config, 0)["step"] == 4 and "optimizer" in read_checkpoint(setup, config, 0)
    with pytest.raises(InputError, match="the supernet is not trained \\(4 of 6 steps\\)"):
        load_supernet(setup, config, synthetic, 0)
    resumed = train_supernet(setup, config, synthetic, ONE_THREAD)
    assert resumed.steps == 6 and resumed.complete
    a = torch.load(whole.path, weights_only=True)["model"]
    b = torch.load(resumed.path, weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [torch.load(t.path, weights_only=True)["losses"] for t in (whole, resumed)]
    assert losses[0] == losses[1] and len(losses[0]) == 2
    assert any(".transforms." in k for k in a) == (kernels == "transformed")  # the matrices resume with the rest


def test_training_stops_at_the_deadline_with_its_checkpoint(synthetic, tmp_path):
    setup = setup_in(tmp_path)
    stopped = train_supernet(setup, tiny(), synthetic, ONE_THREAD, deadline=0.0)  # long past: one step, then stop
    assert (stopped.steps, stopped.stopped, stopped.complete) == (1, "timeout", False)
    assert read_checkpoint(setup, tiny(), 0)["step"] == 1


def test_a_diverging_supernet_training_is_refused_and_saves_nothing(synthetic, tmp_path):
    setup = setup_in(tmp_path)
    # step 1's loss comes from the initial weights; its update at lr 1e30 ruins them, so step 2 is the first NaN
    with pytest.raises(InputError, match="supernet training: loss became NaN at epoch 1 step 2"):
        train_supernet(setup, tiny(lr=1e30), synthetic, ONE_THREAD)
    assert read_checkpoint(setup, tiny(lr=1e30), 0) is None


# -- scoring ----------------------------------------------------------------------------------------


def test_supernet_proxy_scores_inherited_weights_without_changing_them(synthetic, tmp_path):
    setup = setup_in(tmp_path)
    config = tiny(supernet_epochs=20, max_train_batches=None)  # 160 steps
    train_supernet(setup, config, synthetic, ONE_THREAD)
    proxy = make_proxy(config, synthetic, ONE_THREAD, setup)
    before = {k: v.clone() for k, v in proxy.supernet.state_dict().items()}
    rng = random.Random(2)
    scores = [proxy.score(SPACE.random_spec(rng)) for _ in range(6)]
    assert all(0.0 <= s <= 1.0 for s in scores)
    # 4 balanced classes, 64 validation images: chance is 0.25 with a standard deviation of 0.022 for a mean of 6
    assert sum(scores) / len(scores) > 0.35
    after = proxy.supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    spec = SPACE.random_spec(random.Random(2))
    assert proxy.score(spec) == scores[0]  # deterministic
    with pytest.raises(InputError, match="trained with seed 0, not 3"):
        proxy.score(spec, seed=3)


def test_supernet_proxy_needs_its_setup(synthetic):
    with pytest.raises(InputError, match="needs its SupernetSetup"):
        make_proxy(tiny(), synthetic, ONE_THREAD)


@pytest.mark.parametrize("damage", ["shape", "nan", "sparse", "loss"])
def test_a_damaged_supernet_checkpoint_is_refused_naming_the_tensor(damage, synthetic, tmp_path):
    """A finished checkpoint with the right settings but one tensor of another shape, NaN weights, a sparse
    tensor or a NaN loss is refused on load, before any candidate is scored with it (it used to fail every
    trial, or score every candidate alike)."""
    setup = setup_in(tmp_path)
    done = train_supernet(setup, tiny(), synthetic, ONE_THREAD)
    state = torch.load(done.path, weights_only=True)
    name = next(key for key, tensor in state["model"].items() if tensor.dim() == 4)
    tensor = state["model"][name]
    if damage == "shape":
        state["model"][name] = tensor[:, :1].clone()
        expected = f"tensor {name!r} has shape {list(tensor[:, :1].shape)}, the model's {list(tensor.shape)}"
    elif damage == "nan":
        tensor[0, 0, 0, 0] = tensor[-1, 0, 0, 0] = float("nan")
        expected = f"tensor {name!r} holds 2 NaN or infinite values"
    elif damage == "sparse":
        state["model"][name] = tensor.to_sparse()
        expected = f"tensor {name!r} is stored as torch.sparse_coo, not dense"
    else:
        state["losses"][-1] = float("nan")
        expected = "the supernet's recorded losses are not all finite numbers"
    torch.save(state, done.path)
    for load in (
        lambda: train_supernet(setup, tiny(), synthetic, ONE_THREAD),
        lambda: load_supernet(setup, tiny(), synthetic, 0),
    ):
        with pytest.raises(InputError, match=re.escape(f"{done.path}: {expected}")):
            load()
