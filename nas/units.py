"""Sizes on the command line: `400M`, `0.4G`, `400e6`, `400000000`."""

from __future__ import annotations

import math
import re

from effnet.nas.errors import InputError

_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9, "T": 10**12}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]?)\s*$")


def parse_size(text: str, what: str = "size") -> int:
    """A positive count with an optional K/M/G (or B for billions) suffix; raises `InputError`."""
    match = _SIZE.match(str(text))
    suffix = match.group(2).upper() if match else ""
    if not match or suffix not in _SUFFIXES:
        raise InputError(f"{what} {text!r} is not a size; write it like 400M, 0.4G, 400e6 or 400000000")
    value = float(match.group(1)) * _SUFFIXES[suffix]
    if not math.isfinite(value) or value < 1:
        raise InputError(f"{what} {text!r} must be a positive count (at least 1), like 400M")
    return int(round(value))


def format_size(value: float) -> str:
    """400000000 -> '400.0M', 1.8e9 -> '1.80G', 1e13 -> '10.00T', 1.38e308 -> '1.38e+308'."""
    value = float(value)
    if abs(value) >= 1e15:  # beyond any network: no line of hundreds of digits
        return f"{value:.3g}"
    if abs(value) >= 1e12:
        return f"{value / 1e12:.2f}T"
    if abs(value) >= 1e9:
        return f"{value / 1e9:.2f}G"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.1f}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.1f}K"
    return f"{value:.0f}"
