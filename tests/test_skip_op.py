"""MnasNet's SkipOp in the spec language: identity (`skip: true`), none (`false`) and the pooling shortcut
(`pool`), in the layout, the builder and both counters, counted by hand."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from effnet.nas.errors import InputError
from effnet.nas.net.counting import fvcore_count
from effnet.nas.net.flops import analytic_cost
from effnet.nas.net.layout import plan_network
from effnet.nas.net.model import build_model, count_parameters
from effnet.nas.net.spec_file import dump_spec_text, spec_from_dict
from effnet.nas.space.load import load_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_spec(skip) -> dict:
    """32 px, stem 8 channels at stride 2 (16 px), then three stages whose shortcut differs with `skip`."""
    return {
        "name": "skips",
        "resolution": 32,
        "num_classes": 5,
        "drop_connect": 0.0,
        "stem": {"out_channels": 8, "kernel": 3, "stride": 2},
        "stages": [
            {
                "block": "mbconv",
                "repeats": 2,
                "kernel": 3,
                "stride": 2,
                "expand": 1,
                "out_channels": 16,
                "se_ratio": 0.0,
                "skip": skip,
            },
            {
                "block": "conv",
                "repeats": 1,
                "kernel": 3,
                "stride": 1,
                "expand": 1,
                "out_channels": 24,
                "se_ratio": 0.0,
                "skip": skip,
            },
            {
                "block": "dsconv",
                "repeats": 1,
                "kernel": 3,
                "stride": 2,
                "expand": 1,
                "out_channels": 24,
                "se_ratio": 0.0,
                "skip": skip,
            },
        ],
        "head": {"out_channels": 32},
    }


def test_pool_is_a_third_skip_value_that_round_trips():
    spec = spec_from_dict(small_spec("pool"))
    assert [s.skip for s in spec.stages] == ["pool"] * 3
    assert "skip: pool" in dump_spec_text(spec)
    assert spec_from_dict(yaml_round_trip(spec)) == spec
    assert spec.stages[0].summary == "mb1k3x2c16+pool"
    with pytest.raises(InputError, match=r"stages\[0\].skip: must be true or false .* or pool, got string 'avg'"):
        spec_from_dict(small_spec("avg"))


def yaml_round_trip(spec):
    import yaml

    return yaml.safe_load(dump_spec_text(spec))


def test_the_identity_applies_where_it_can_and_the_pooling_shortcut_everywhere_else():
    blocks = plan_network(spec_from_dict(small_spec("pool"))).blocks
    shortcuts = [(b.residual, b.pool_shortcut, b.project_shortcut) for b in blocks]
    assert shortcuts == [
        (True, True, True),  # stage 1 first block: 8 -> 16 channels, 16 -> 8 px: pool and project
        (True, False, False),  # its repeat: stride 1, 16 -> 16 channels: the identity
        (True, False, True),  # stage 2: stride 1, 16 -> 24 channels: project only
        (True, True, False),  # stage 3: stride 2, 24 -> 24 channels: pool only
    ]
    identity_only = plan_network(spec_from_dict(small_spec(True))).blocks
    assert [(b.residual, b.pool_shortcut, b.project_shortcut) for b in identity_only] == [
        (False, False, False),
        (True, False, False),
        (False, False, False),
        (False, False, False),
    ]


def test_pooling_shortcut_costs_its_projections_by_hand_in_both_counters():
    # The two projections, by hand (1x1 conv on the output grid, BatchNorm at 2 per element):
    #   stage 1: 8 -> 16 channels at 8x8: conv 8*16*64 = 8,192, BN 2*16*64 = 2,048, params 8*16 + 2*16 = 160
    #   stage 2: 16 -> 24 channels at 8x8: conv 16*24*64 = 24,576, BN 2*24*64 = 3,072, params 16*24 + 2*24 = 432
    # The 2x2 average pooling counts zero: fvcore has no handle for avg_pool2d.
    pooled, plain = spec_from_dict(small_spec("pool")), spec_from_dict(small_spec(True))
    extra = {"conv": 8_192 + 24_576, "batch_norm": 2_048 + 3_072}
    for count in (lambda s: analytic_cost(s).total.by_operator(), lambda s: fvcore_count(s).by_operator):
        with_pool, without = count(pooled), count(plain)
        assert {op: with_pool[op] - without.get(op, 0) for op in with_pool} == {**{op: 0 for op in with_pool}, **extra}
    model = build_model(pooled)
    assert count_parameters(model) - count_parameters(build_model(plain)) == 160 + 432
    assert analytic_cost(pooled).params == count_parameters(model)
    assert fvcore_count(pooled, model).by_operator == analytic_cost(pooled).total.by_operator()


def test_the_shortcut_averages_each_2x2_window_and_what_an_edge_window_covers():
    model = build_model(spec_from_dict(small_spec("pool"))).eval()
    pool_only = model.blocks[3].shortcut  # stage 3: 24 -> 24 channels at stride 2
    ramp = torch.arange(9.0).reshape(1, 1, 3, 3).expand(1, 24, 3, 3)
    # windows of the 3x3 ramp 0..8: {0,1,3,4} -> 2, {2,5} -> 3.5, {6,7} -> 6.5, {8} -> 8
    assert torch.equal(pool_only(ramp)[0, 5], torch.tensor([[2.0, 3.5], [6.5, 8.0]]))
    x = torch.randn(2, 24, 3, 3)
    block = model.blocks[3]
    with torch.no_grad():
        assert torch.allclose(block(x), block.layers(x) + pool_only(x))


def test_a_pooling_shortcut_network_trains_a_step_with_stochastic_depth():
    spec = spec_from_dict({**small_spec("pool"), "drop_connect": 0.5})
    model = build_model(spec).train()
    loss = model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    projection = model.blocks[0].shortcut[1][0]  # pool, then the 1x1 conv of conv + BN
    assert projection.weight.grad is not None and projection.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["efficientnet", "mnasnet"])
def test_both_shipped_spaces_offer_mnasnets_three_skip_ops(name):
    space = load_space(name)
    assert all(stage.skip == (True, False, "pool") for stage in space.stages)
    spec = space.spec_from_params(
        {
            f"s{i + 1}_{key}": value
            for i, stage in enumerate(space.stages)
            for key, value in (
                ("block", "mbconv"),
                ("expand", stage.expand[-1]),
                ("kernel", 3),
                ("se_ratio", 0.25),
                ("skip", "pool"),
                ("width", 1.0),
                ("repeats_offset", 0),
            )
        }
    )
    assert {s.skip for s in spec.stages} == {"pool"}
    plan = plan_network(dataclasses.replace(spec, resolution=64))
    assert sum(b.pool_shortcut for b in plan.blocks) == 4  # the four stride-2 stages of both skeletons
    assert all(b.residual for b in plan.blocks)
