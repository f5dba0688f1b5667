"""The reference implementation's rounding rules (TensorFlow `efficientnet_builder.py`).

Used wherever channels or repeats are multiplied: compound scaling, the official presets and the
width choices of the search space.
"""

from __future__ import annotations

import math


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Scale `channels` by `width` to the nearest multiple of `divisor`, never below 90 % of the scaled value."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """Scale a stage's repeats by `depth`, rounding up as the reference does."""
    return int(math.ceil(depth * repeats))
