"""The analytic counter against fvcore: every operator, the total and the parameters, on B0, the presets
B1-B4 and 200 random specs (B5-B7 take seconds each in fvcore; bench/bench_counting.py covers them), and with
TensorFlow's "SAME" padding on B0 at even and odd resolutions and on 40 random specs."""

from __future__ import annotations

import warnings

import pytest
import torch

from effnet.nas.net.counting import fvcore_count
from effnet.nas.net.flops import analytic_cost
from effnet.nas.net.layout import plan_network
from effnet.nas.net.model import build_model, count_parameters
from effnet.nas.net.spec_file import load_spec
from effnet.scaling.presets import official_preset

from random_specs import KERNELS, random_specs

RANDOM_SPECS = random_specs(200, seed=20190528)
SAME_SPECS = [spec.replace(padding="same") for spec in RANDOM_SPECS[:40]]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def assert_analytic_matches_fvcore(spec) -> None:
    model = build_model(spec)
    counted = fvcore_count(spec, model)
    report = analytic_cost(spec)
    assert report.total.by_operator() == counted.by_operator
    assert report.flops == counted.total
    assert report.params == count_parameters(model)


def test_b0_fvcore_figures(b0_yaml):
    # fvcore on torchvision's efficientnet_b0: conv + BN + head pooling + linear.
    counted = fvcore_count(load_spec(b0_yaml))
    assert counted.by_operator == {
        "conv": 384_534_752,
        "batch_norm": 13_475_392,
        "adaptive_avg_pool2d": 62_720,
        "linear": 1_280_000,
    }
    assert counted.total == 399_352_864
    assert counted.by_operator["conv"] + counted.by_operator["linear"] == 385_814_752


def test_b0_analytic_equals_fvcore(b0_yaml):
    assert_analytic_matches_fvcore(load_spec(b0_yaml))


@pytest.mark.parametrize("name", ["b1", "b2", "b3", "b4"])
def test_preset_analytic_equals_fvcore(name):
    assert_analytic_matches_fvcore(official_preset(name))


@pytest.mark.parametrize("resolution", [224, 225])
def test_b0_same_padding_analytic_equals_fvcore(resolution):
    """SAME pads each strided conv's input (F.pad, which fvcore does not count) and leaves its output size,
    so the count must not move: the figures of symmetric B0 by fvcore above, at 224 px."""
    spec = official_preset("b0").replace(padding="same", resolution=resolution)
    assert_analytic_matches_fvcore(spec)
    if resolution == 224:
        assert fvcore_count(spec).total == 399_352_864


@pytest.mark.parametrize("index", range(len(SAME_SPECS)))
def test_random_spec_with_same_padding_analytic_equals_fvcore(index):
    assert_analytic_matches_fvcore(SAME_SPECS[index])


@pytest.mark.parametrize("index", range(len(RANDOM_SPECS)))
def test_random_spec_analytic_equals_fvcore(index):
    assert_analytic_matches_fvcore(RANDOM_SPECS[index])


def fvcore_by_module(model, spec) -> dict[str, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        x = torch.zeros(1, spec.in_channels, spec.resolution, spec.resolution)
        analysis = FlopCountAnalysis(model.eval(), x)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        return {name: int(v) for name, v in analysis.by_module().items()}


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(official_preset("b0"), id="b0"),
        *(pytest.param(s, id=f"random{i}") for i, s in enumerate(RANDOM_SPECS[:12])),
    ],
)
def test_stem_stage_and_head_parts_equal_fvcore(spec):
    """The per-stage figures `effnet describe` prints, against fvcore's per-module counts and numel."""
    model = build_model(spec)
    by_module = fvcore_by_module(model, spec)
    report = analytic_cost(spec)
    plan = plan_network(spec)

    def params(*modules) -> int:
        return sum(count_parameters(m) for m in modules)

    assert (report.stem.flops, report.stem.params) == (by_module["stem"], params(model.stem))
    for stage, cost in enumerate(report.stages):
        indices = [b.position for b in plan.blocks if b.stage == stage]
        assert cost.flops == sum(by_module[f"blocks.{i}"] for i in indices)
        assert cost.params == params(*(model.blocks[i] for i in indices))
    assert report.head.flops == by_module["head"] + by_module["pool"] + by_module["classifier"]
    assert report.head.params == params(model.head, model.classifier)


def test_random_specs_cover_the_space():
    plans = [plan_network(s) for s in RANDOM_SPECS]
    blocks = [b for p in plans for b in p.blocks]
    stages = [st for s in RANDOM_SPECS for st in s.stages]
    assert {b.block for b in blocks} == {"mbconv", "dsconv", "conv"}
    assert {b.kernel for b in blocks} == {3, 5, 7}
    assert {st.expand for st in stages if st.block == "mbconv"} == {1, 3, 4, 6}
    assert {b.stride for b in blocks} == {1, 2}
    assert {b.se_channels > 0 for b in blocks} == {True, False}
    assert any(b.residual for b in blocks)
    # MnasNet's pooling shortcut in all three forms: pool and project, pool only, project only
    assert {(b.pool_shortcut, b.project_shortcut) for b in blocks} >= {(True, True), (True, False), (False, True)}
    # skip switched off on a block that could otherwise keep its shortcut
    assert any(not st.skip and (st.repeats > 1 or st.stride == 1) for st in stages)
    assert {s.resolution % 2 for s in RANDOM_SPECS} == {0, 1}
    assert min(s.resolution for s in RANDOM_SPECS) < 32 and max(s.resolution for s in RANDOM_SPECS) > 128
    assert any(p.final_size == 1 for p in plans)
    assert {s.stem.kernel for s in RANDOM_SPECS} == {1, 3, 5}
    assert {s.stem.stride for s in RANDOM_SPECS} == {1, 2}
    assert len({s.num_classes for s in RANDOM_SPECS}) > 50
    # the SAME-padded ones: strided convs of every kernel size on inputs of both parities
    same = [(b.kernel, b.in_size % 2) for s in SAME_SPECS for b in plan_network(s).blocks if b.stride == 2]
    assert set(same) == {(k, parity) for k in KERNELS for parity in (0, 1)}
