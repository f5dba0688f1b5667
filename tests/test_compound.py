"""Compound scaling: `scale` builds the official presets, `compound_scale` the paper's d, w, r = alpha^phi, ..."""

from __future__ import annotations

import math

import pytest

from effnet.nas.errors import InputError
from effnet.nas.net.model import build_model, count_parameters
from effnet.scaling.compound import Coefficients, compound_scale, reference_dropout, scale, scaled_resolution
from effnet.scaling.presets import official_preset, reference_b0

B2_PARAMS = 9_109_994
"""EfficientNet-B2's parameter count (the TensorFlow reference and timm's efficientnet_b2)."""

# EfficientNet-B2's shape (TensorFlow reference, timm): width 1.1 and depth 1.2 on B0, rounded by hand:
# channels 32*1.1=35.2 -> 32, 16 -> 17.6 -> 16, 24 -> 26.4 -> 24, 40 -> 44 -> 48, 80 -> 88, 112 -> 123.2 -> 120,
# 192 -> 211.2 -> 208, 320 -> 352, head 1280 -> 1408; repeats ceil(1.2 * (1, 2, 2, 3, 3, 4, 1)).
B2_STEM, B2_HEAD = 32, 1408
B2_CHANNELS = (16, 24, 48, 88, 120, 208, 352)
B2_REPEATS = (2, 3, 3, 4, 4, 5, 2)

REFERENCE_DROPOUT = (0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5)
"""Paper Table 2 / the TensorFlow reference's dropout for B0..B7."""


def network_only(spec):
    """A spec without the fields that do not change the network: name, provenance, dropout."""
    return spec.replace(name="-", provenance={}, dropout=0.0)


def assert_b2_shape(spec):
    assert spec.stem.out_channels == B2_STEM
    assert spec.head.out_channels == B2_HEAD
    assert tuple(s.out_channels for s in spec.stages) == B2_CHANNELS
    assert tuple(s.repeats for s in spec.stages) == B2_REPEATS


def test_scale_gives_preset_b2_exactly():
    b0 = reference_b0()
    scaled = scale(b0, depth=1.2, width=1.1, resolution=260)
    assert network_only(scaled) == network_only(official_preset("b2"))
    assert_b2_shape(scaled)
    assert count_parameters(build_model(scaled)) == B2_PARAMS


def test_compound_scale_at_phi_1_is_b2_at_258_px():
    spec = compound_scale(reference_b0(), 1.2, 1.1, 1.15, 1)
    # 224 * 1.15 = 257.6 -> 258 px (nearest whole pixel); the network itself is B2's.
    assert spec.resolution == 258
    assert_b2_shape(spec)
    assert network_only(spec) == network_only(official_preset("b2")).replace(resolution=258)
    assert count_parameters(build_model(spec)) == B2_PARAMS
    p = spec.provenance
    assert (p["alpha"], p["beta"], p["gamma"], p["phi"]) == (1.2, 1.1, 1.15, 1.0)
    assert (p["depth"], p["width"], p["resolution"]) == (1.2, 1.1, 258)
    assert p["resolution_multiplier"] == pytest.approx(1.15)
    assert p["scaled_from"] == "efficientnet-b0"


def test_compound_scale_multipliers_follow_the_powers():
    spec = compound_scale(reference_b0(), 1.2, 1.1, 1.15, 3)
    assert spec.provenance["depth"] == pytest.approx(1.728)
    assert spec.provenance["width"] == pytest.approx(1.331)
    # 224 * 1.15^3 = 340.68... -> 341
    assert spec.resolution == 341
    # ceil(1.728 * 4) = 7 blocks in the 4-block stage, round_filters(320 * 1.331 = 425.92) = 424
    assert spec.stages[5].repeats == 7
    assert spec.stages[6].out_channels == 424


def test_compound_scale_at_phi_0_is_the_base_network():
    b0 = reference_b0()
    assert network_only(compound_scale(b0, 1.2, 1.1, 1.15, 0)) == network_only(b0)


@pytest.mark.parametrize("phi", range(8))
def test_dropout_rule_matches_the_reference_family(phi):
    assert reference_dropout(0.2, phi) == pytest.approx(REFERENCE_DROPOUT[phi])
    assert compound_scale(reference_b0(), 1.2, 1.1, 1.15, phi).dropout == pytest.approx(REFERENCE_DROPOUT[phi])


def test_dropout_rule_for_fractional_phi_takes_the_next_integer_member():
    for phi in (0.3, 1.0, 1.01, 1.5, 2.99, 3.0001, 4.5, 5.2, 6.7):
        assert reference_dropout(0.2, phi) == pytest.approx(REFERENCE_DROPOUT[math.ceil(phi)])


def test_dropout_rule_caps_at_half_and_never_lowers_the_base():
    assert reference_dropout(0.2, 40) == 0.5
    assert reference_dropout(0.45, 7) == 0.5
    assert reference_dropout(0.6, 7) == 0.6
    assert reference_dropout(0.0, 3) == pytest.approx(0.1)


def test_resolution_rule_rounds_halves_up():
    assert scaled_resolution(224, 1.15) == 258
    assert scaled_resolution(2, 1.25) == 3  # 2.5 exactly
    assert scaled_resolution(2, 1.2) == 2


@pytest.mark.parametrize(
    "alpha, beta, gamma",
    [(0.9, 1.1, 1.15), (1.2, 0.5, 1.15), (1.2, 1.1, float("nan")), (True, 1.1, 1.15), ("1.2", 1.1, 1.15)],
)
def test_coefficients_must_be_numbers_at_least_one(alpha, beta, gamma):
    with pytest.raises(InputError):
        Coefficients(alpha, beta, gamma)


def test_negative_phi_is_refused():
    with pytest.raises(InputError, match="phi"):
        compound_scale(reference_b0(), 1.2, 1.1, 1.15, -1)


def test_paper_coefficients_product():
    # alpha * beta^2 * gamma^2 = 1.2 * 1.21 * 1.3225 = 1.920270 (the paper's grid point)
    assert Coefficients(1.2, 1.1, 1.15).flops_factor == pytest.approx(1.92027)
