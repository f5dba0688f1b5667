"""The reference rounding rules against hand-worked cases.

round_filters(c, w) = max(8, int(c*w + 4) // 8 * 8), plus 8 if that is below 0.9 * c * w.
round_repeats(r, d) = ceil(d * r).
"""

import pytest

from effnet.nas.net.rounding import round_filters, round_repeats
from effnet.scaling.presets import official_preset

FILTER_CASES = [
    # (channels, width, expected)  hand working: c*w -> int(c*w + 4) // 8 * 8 -> 90 % check
    (32, 1.0, 32),  # 32 -> 36 // 8 * 8 = 32
    (32, 1.1, 32),  # 35.2 -> int(39.2) = 39 -> 32; 0.9 * 35.2 = 31.68 <= 32
    (16, 1.1, 16),  # 17.6 -> 21 -> 16; 15.84 <= 16
    (112, 1.1, 120),  # 123.2 -> 127 -> 120; 110.88 <= 120
    (192, 1.1, 208),  # 211.2 -> 215 -> 208
    (1280, 1.1, 1408),  # 1408 -> 1412 -> 1408
    (32, 1.2, 40),  # 38.4 -> 42 -> 40
    (32, 1.4, 48),  # 44.8 -> 48 -> 48
    (16, 1.4, 24),  # 22.4 -> 26 -> 24; 20.16 <= 24
    (24, 1.4, 32),  # 33.6 -> 37 -> 32; 30.24 <= 32
    (112, 1.4, 160),  # 156.8 -> 160 -> 160
    (192, 1.4, 272),  # 268.8 -> 272 -> 272
    (32, 1.8, 56),  # 57.6 -> 61 -> 56; 51.84 <= 56
    (320, 2.0, 640),  # 640 -> 644 -> 640
    (26, 1.0, 24),  # 26 -> 30 -> 24; 23.4 <= 24: no bump
    (32, 0.5, 16),  # 16 -> 20 -> 16
    (40, 0.75, 32),  # 30 -> 34 -> 32; 27 <= 32
    # the 90 % bump: the nearest multiple of 8 lies more than 10 % below the scaled value
    (27, 1.0, 32),  # 27 -> 31 -> 24; 0.9 * 27 = 24.3 > 24 -> 24 + 8 = 32
    (19, 1.0, 24),  # 19 -> 23 -> 16; 17.1 > 16 -> 24
    (11, 1.0, 16),  # 11 -> 15 -> 8; 9.9 > 8 -> 16
    (24, 0.75, 24),  # 18 -> 22 -> 16; 16.2 > 16 -> 24 (MnasNet's 0.75 filter multiplier)
    # never below the divisor
    (2, 1.0, 8),  # 2 -> 6 -> 0 -> max(8, 0) = 8; 1.8 <= 8
    (1, 0.5, 8),  # 0.5 -> 4 -> 0 -> 8
]


@pytest.mark.parametrize("channels,width,expected", FILTER_CASES)
def test_round_filters(channels, width, expected):
    assert round_filters(channels, width) == expected


def test_round_filters_other_divisor():
    # 35.2 -> int(35.2 + 2) = 37 // 4 * 4 = 36; 31.68 <= 36
    assert round_filters(32, 1.1, divisor=4) == 36
    # 9 -> int(9 + 2) = 11 // 4 * 4 = 8; 8.1 > 8 -> 12
    assert round_filters(9, 1.0, divisor=4) == 12


def test_round_filters_returns_int():
    assert type(round_filters(32, 1.1)) is int


REPEAT_CASES = [
    (1, 1.0, 1),
    (2, 1.0, 2),
    (1, 1.1, 2),  # ceil(1.1)
    (2, 1.1, 3),  # ceil(2.2)
    (3, 1.1, 4),  # ceil(3.3)
    (3, 1.2, 4),  # ceil(3.6)
    (4, 1.8, 8),  # ceil(7.2)
    (2, 2.2, 5),  # ceil(4.4)
    (3, 2.6, 8),  # ceil(7.8)
    (1, 3.1, 4),  # ceil(3.1)
    (4, 3.1, 13),  # ceil(12.4)
    (4, 0.5, 2),  # exactly 2
    (1, 0.5, 1),  # ceil(0.5)
]


@pytest.mark.parametrize("repeats,depth,expected", REPEAT_CASES)
def test_round_repeats(repeats, depth, expected):
    assert round_repeats(repeats, depth) == expected


def test_presets_use_both_rules():
    # B4 (width 1.4, depth 1.8): channels from the cases above, repeats ceil(1.8 * r) for r = 1,2,2,3,3,4,1.
    b4 = official_preset("b4")
    assert b4.stem.out_channels == 48
    assert [s.out_channels for s in b4.stages] == [24, 32, 56, 112, 160, 272, 448]
    assert [s.repeats for s in b4.stages] == [2, 4, 4, 6, 6, 8, 2]
    assert b4.head.out_channels == 1792
    # B1 (depth 1.1): 2, 3, 3, 4, 4, 5, 2 = 23 blocks; B7 (depth 3.1): 4, 7, 7, 10, 10, 13, 4 = 55 blocks.
    assert official_preset("b1").num_blocks == 23
    assert official_preset("b7").num_blocks == 55
