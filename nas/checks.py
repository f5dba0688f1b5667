"""Checks of setting values, shared by every config: each returns the value or raises `SettingError`."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from effnet.nas.errors import SettingError


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def whole(setting: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """An integer in [low, high]."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise SettingError(setting, f"must be a whole number, got {value!r}")
    shown = f"{value:.3g}" if abs(value) >= 10**15 else str(value)  # not a line of 300 digits
    if low is not None and value < low:
        raise SettingError(setting, f"must be at least {low}, got {shown}")
    if high is not None and value > high:
        raise SettingError(setting, f"must be at most {high:,}, got {shown}")
    return value


def number(
    setting: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite number in the range given; an open end excludes its value."""
    if not _is_number(value):
        raise SettingError(setting, f"must be a number, got {value!r}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite:
        raise SettingError(setting, f"must be a finite number, got {_shown(value)}")
    if low is not None and (value < low or (low_open and value == low)):
        raise SettingError(setting, f"must be {'above' if low_open else 'at least'} {low:g}, got {value:g}")
    if high is not None and (value > high or (high_open and value == high)):
        raise SettingError(setting, f"must be {'below' if high_open else 'at most'} {high:g}, got {value:g}")
    return float(value)


def _shown(value: float) -> str:
    """A number as an error shows it: an integer of hundreds of digits by its length."""
    text = str(value)
    return text if len(text) <= 24 else f"{text[:6]}... ({len(text.lstrip('-'))} digits)"


def instance(setting: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """A value of type `kind`; `what` says what to give and how to make one: `a NetworkSpec (effnet.load_spec)`."""
    if not isinstance(value, kind):
        raise SettingError(setting, f"must be {what}, got {type(value).__name__}")
    return value


def path(setting: str, value: Any) -> Any:
    """A file system path: a str or an os.PathLike (pathlib's raises a bare TypeError for anything else)."""
    return instance(setting, value, (str, os.PathLike), "a path (str or pathlib.Path)")


def choice(setting: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise SettingError(setting, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


SEED_LIMIT = 2**32
"""Seeds are whole numbers in [0, 2^32): what every generator effnet seeds (numpy, torch, Optuna) accepts."""


def seed(setting: str, value: Any) -> int:
    return whole(setting, value, low=0, high=SEED_LIMIT - 1)
