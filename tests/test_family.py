"""The family table, --match-flops and the official fit, against hand counts and brute force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from effnet.nas.errors import InputError, SettingError
from effnet.nas.net.flops import analytic_flops
from effnet.nas.progress import Progress
from effnet.scaling.compound import Coefficients, compound_scale
from effnet.scaling.export import FamilyConfig, export_family
from effnet.scaling.family import MATCH_TOLERANCE, compound_family, load_coefficients, member_name, parse_phi_list
from effnet.scaling.match_flops import match_flops_family
from effnet.scaling.official import official_family_fit
from effnet.scaling.plots import family_figure
from effnet.scaling.presets import reference_b0

PAPER = Coefficients(1.2, 1.1, 1.15)
B0_FVCORE_FLOPS = 399_352_864
"""fvcore's total for a reference EfficientNet-B0 at 224 (measured with fvcore on torchvision's efficientnet_b0)."""

# (repeats, kernel, stride, expand, out_channels): paper Table 1.
B0_STAGES = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]


def hand_flops(resolution: int, stem: int, stages: list[tuple[int, int, int, int, int]], head: int) -> int:
    """Multiply-adds of an EfficientNet written out from the paper's block description, fvcore's rules:
    conv weights x output pixels, batch norm 2 per output element, global pool 1 per input element,
    classifier in x out; SE's two 1x1 convs on the pooled vector, sized from the block's input."""

    def out(size: int, stride: int) -> int:
        return -(-size // stride)  # 'same' padding

    size = out(resolution, 2)
    flops = size * size * (3 * 9 * stem + 2 * stem)
    channels = stem
    for repeats, kernel, stride, expand, out_channels in stages:
        for i in range(repeats):
            new_size = out(size, stride if i == 0 else 1)
            mid = channels * expand
            if expand != 1:
                flops += size * size * (channels * mid + 2 * mid)
            flops += new_size * new_size * (mid * kernel * kernel + 2 * mid)
            flops += 2 * mid * max(1, int(channels * 0.25))
            flops += new_size * new_size * (mid * out_channels + 2 * out_channels)
            channels, size = out_channels, new_size
    return flops + size * size * (channels * head + 2 * head + head) + head * 1000


def test_hand_count_reproduces_fvcore_on_b0():
    assert hand_flops(224, 32, B0_STAGES, 1280) == B0_FVCORE_FLOPS == analytic_flops(reference_b0())


def test_phi_1_costs_about_2_55_times_b0_not_1_92():
    # The formula promises alpha * beta^2 * gamma^2 = 1.2 * 1.21 * 1.3225 = 1.92. Rounding gives more:
    # - depth: ceil(1.2 * repeats) turns (1, 2, 2, 3, 3, 4, 1) into (2, 3, 3, 4, 4, 5, 2), 16 -> 23 blocks,
    #   every one-block stage doubles: 1.47x alone, not 1.2x;
    # - width: multiples of 8 keep stem 32 and stages 16, 24 unchanged (35.2, 17.6, 26.4 round down): 1.14x, not 1.21x;
    # - resolution: 224 * 1.15 = 257.6 -> 258, and 'same' strided convolutions round up, so the feature maps run
    #   129, 65, 33, 17, 9 instead of 112, 56, 28, 14, 7 (the last one (9/7)^2 = 1.65x): 1.49x, not 1.32x.
    # Together 2.55x. The network below is written out by hand (see test_compound.B2_*) and counted by hand.
    phi1 = [
        (r, k, s, e, c)
        for (_, k, s, e, _), r, c in zip(B0_STAGES, (2, 3, 3, 4, 4, 5, 2), (16, 24, 48, 88, 120, 208, 352), strict=True)
    ]
    by_hand = hand_flops(258, 32, phi1, 1408) / B0_FVCORE_FLOPS
    assert 2.54 < by_hand < 2.57
    member = compound_family(reference_b0(), PAPER, (1.0,))[0]
    assert member.flops_ratio == pytest.approx(by_hand, rel=1e-12)
    assert member.ideal_ratio == pytest.approx(1.92027)


def test_phi_7_sits_near_0_79_of_two_to_the_seven():
    # Rounding drifts from 2.55x at phi = 1 to about 0.79 x 2^7 at phi = 7.
    member = compound_family(reference_b0(), PAPER, (7.0,))[0]
    assert member.flops_ratio / 2**7 == pytest.approx(0.79, abs=0.01)


def test_family_flops_grow_monotonically_with_phi():
    members = compound_family(reference_b0(), PAPER, (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0))
    flops = [m.flops for m in members]
    assert flops == sorted(flops) and len(set(flops)) == len(flops)


def scan_flops(base, c: Coefficients, phis: np.ndarray) -> np.ndarray:
    """FLOPs along a plain scan of phi (no bisection, no step logic)."""
    return np.array([analytic_flops(compound_scale(base, c.alpha, c.beta, c.gamma, float(p))) for p in phis])


def test_match_flops_meets_every_integer_step_and_beats_a_brute_force_scan():
    base = reference_b0()
    steps = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0)
    members = match_flops_family(base, PAPER, steps)
    scanned = scan_flops(base, PAPER, np.linspace(0, 7.6, 1500))
    for member, k in zip(members, steps, strict=True):
        target = round(2**k * B0_FVCORE_FLOPS)
        assert member.match.target_flops == target
        assert member.flops == analytic_flops(member.spec)
        assert abs(member.flops / target - 1) <= MATCH_TOLERANCE, member.name
        assert member.match.why is None
        assert abs(member.deviation) <= np.min(np.abs(scanned / target - 1)) + 1e-12
        low, high = member.match.phi_range
        assert low <= member.phi <= high
    assert [m.name for m in members] == [f"b{k}" for k in range(1, 8)]
    assert [m.phi for m in members] == sorted(m.phi for m in members)


def test_match_flops_explains_a_step_that_rounding_skips():
    # 2^0.1 x B0 = 1.072 x B0. phi = 0 is B0 itself (2^-0.1 - 1 = -6.7 %), and the smallest phi > 0 already
    # rounds every stage up by one block (ceil(1.2^phi * r) = r + 1): 23 blocks, far above the target.
    member = match_flops_family(reference_b0(), PAPER, (0.1,))[0]
    assert member.phi == 0
    assert member.flops == B0_FVCORE_FLOPS
    assert member.deviation == pytest.approx(2**-0.1 - 1)
    assert not member.within_tolerance
    plus_one_block = [(r + 1, k, s, e, c) for r, k, s, e, c in B0_STAGES]
    above = hand_flops(224, 32, plus_one_block, 1280)
    assert "depth rounding" in member.match.why and "16 to 23 blocks" in member.match.why
    assert f"({above / (2**0.1 * B0_FVCORE_FLOPS) - 1:+.1%})" in member.match.why


def test_match_flops_names_a_resolution_jump():
    # Resolution alone (gamma 1.2): 224 -> 225 px makes every strided map round up (112 -> 113 ... 7 -> 8),
    # +16 % FLOPs in one pixel, so 2^0.1 x B0 (+7.2 %) has no network within 5 %.
    member = match_flops_family(reference_b0(), Coefficients(1.0, 1.0, 1.2), (0.1,))[0]
    assert not member.within_tolerance
    assert "resolution rounding jumps from 224 to 225 px" in member.match.why
    assert "from 7 to 8 px" in member.match.why


def test_match_flops_refuses_coefficients_that_never_grow():
    with pytest.raises(InputError, match="never grows"):
        match_flops_family(reference_b0(), Coefficients(1, 1, 1), (1.0,))


def test_official_fit_is_the_least_squares_phi():
    # The coefficient table (paper Table 2 / TensorFlow reference): depth, width, resolution.
    table = {
        "b1": (1.1, 1.0, 240),
        "b2": (1.2, 1.1, 260),
        "b3": (1.4, 1.2, 300),
        "b4": (1.8, 1.4, 380),
        "b5": (2.2, 1.6, 456),
        "b6": (2.6, 1.8, 528),
        "b7": (3.1, 2.0, 600),
    }
    design = np.log([[1.2], [1.1], [1.15]])
    fits = official_family_fit(1.2, 1.1, 1.15)
    assert [f.name for f in fits] == list(table)
    for fit in fits:
        depth, width, resolution = table[fit.name]
        observed = np.log([depth, width, resolution / 224])
        phi = np.linalg.lstsq(design, observed, rcond=None)[0][0]
        assert fit.phi == pytest.approx(phi)
        assert fit.row()["depth_off"] == pytest.approx(depth / 1.2**phi - 1)
        assert fit.row()["width_off"] == pytest.approx(width / 1.1**phi - 1)
        assert fit.row()["resolution_off"] == pytest.approx(resolution / 224 / 1.15**phi - 1)
    # B2 is the one preset the formula explains at phi = 1 (depth 1.2, width 1.1 exactly).
    assert fits[1].phi == pytest.approx(1.0, abs=0.03)


def test_phi_list_parsing():
    assert parse_phi_list("1,2,3") == (1.0, 2.0, 3.0)
    assert parse_phi_list(" 0.5 , 1.5") == (0.5, 1.5)
    for bad in ("0", "1,-2", "1,two", "", "1,,2", "nan", "inf", "1,1"):
        with pytest.raises(InputError, match="^phi "):
            parse_phi_list(bad)


def test_member_names_are_file_safe():
    assert [member_name(p) for p in (1.0, 7.0, 1.5, 0.25, 2.125, 1.0000001, 1e-5)] == [
        "b1",
        "b7",
        "b1p5",
        "b0p25",
        "b2p125",
        "b1p0000001",
        "b0p00001",
    ]


@pytest.mark.parametrize(
    "text, problem",
    [
        ("alpha: [1.2\n", "YAML syntax error"),
        ("- 1.2\n- 1.1\n", "must be a mapping"),
        ("alpha: 1.2\nbeta: 1.1\n", "missing key 'gamma'"),
        ("alpha: fast\nbeta: 1.1\ngamma: 1.15\n", "alpha must be a number"),
        ("alpha: 1.2\nbeta: 0.9\ngamma: 1.15\n", "beta must be at least 1"),
    ],
)
def test_coefficients_file_errors(tmp_path, text, problem):
    path = tmp_path / "coefficients.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=problem):
        load_coefficients(path)


def test_coefficients_file_with_grid_extras(tmp_path):
    path = tmp_path / "coefficients.yaml"
    path.write_text("alpha: 1.2\nbeta: 1.1\ngamma: 1.15\nproduct: 1.92\npoints: [{alpha: 1.0, score: 0.5}]\n")
    assert load_coefficients(path) == PAPER


@pytest.mark.parametrize("phis", [(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0), (1.0, 2.0)], ids=["b1-b7", "b1-b2"])
def test_both_family_panels_label_their_axes_and_log_ticks(phis):
    """The parameter panel spans less than a decade for B1-B2 (1.5x-2.5x) and barely one for B1-B7: a log axis
    labelled only at powers of ten shows one label there, or none."""
    figure = family_figure(compound_family(reference_b0(), PAPER, phis), "family")
    figure.canvas.draw()
    for axes in figure.axes:
        low, high = axes.get_ylim()
        shown = [t.get_text() for t in axes.get_yticklabels() if t.get_text() and low <= t.get_position()[1] <= high]
        assert len(shown) >= 2 and all(label.endswith("x") for label in shown), (axes.get_title(), shown)
        assert axes.get_xlabel() == "φ" and "÷ base" in axes.get_ylabel()


def test_family_config_refuses_a_bad_mode_or_class_count_when_made():
    with pytest.raises(SettingError, match="mode must be one of compound, match-flops, official, got 'scaled'"):
        FamilyConfig(reference_b0(), PAPER, mode="scaled")
    with pytest.raises(SettingError, match="classes must be at least 2, got 1"):
        FamilyConfig(reference_b0(), PAPER, classes=1)
    config = FamilyConfig(reference_b0(), PAPER, classes=7, run_dir="runs/family")
    assert config.base.num_classes == 7 and config.run_dir == Path("runs/family")


def test_export_family_reports_the_sizing_then_each_spec_written(tmp_path):
    events: list[Progress] = []
    result = export_family(
        FamilyConfig(reference_b0(), PAPER, phis=(1.0, 2.0), run_dir=tmp_path / "family"), on_progress=events.append
    )
    assert [(e.done, e.total, e.status) for e in events] == [
        (0, None, "sizing the family"),
        (1, 2, "wrote b1.yaml"),
        (2, 2, "wrote b2.yaml"),
    ]
    assert {"b1.yaml", "b2.yaml", "run.yaml"} <= {p.name for p in (tmp_path / "family").iterdir()}
    assert [m.name for m in result.members] == ["b1", "b2"]
