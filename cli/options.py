"""Command-line values several commands share: durations, and options renamed this release."""

from __future__ import annotations

import math
from typing import TypeVar

T = TypeVar("T")


def parse_duration(text: str, flag: str = "--timeout") -> float | None:
    """`90`, `90s`, `8m`, `2h`, or `none` for no limit; raises `InputError`."""
    from effnet.nas.errors import InputError

    value = text.strip().lower()
    if value in ("none", ""):
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    factor = units.get(value[-1], 1)
    number = value[:-1] if value[-1] in units else value
    try:
        seconds = float(number) * factor
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds > 10 * 365 * 86400:
        raise InputError(f"{flag} {text!r} is not a duration; write it like 480, 90s, 8m, 2h or none")
    if seconds <= 0:
        raise InputError(f"{flag} must be positive (or none), got {text!r}")
    return seconds


def renamed(new: T | None, old: T | None, new_flag: str, old_flag: str, default: T) -> T:
    """The value of an option renamed this release: the new flag's, or the old (deprecated) one's with a
    note on stderr; both at once must agree."""
    from effnet.cli.common import progress_console
    from effnet.nas.errors import InputError

    if old is None:
        return default if new is None else new
    if new is not None and new != old:
        raise InputError(f"{old_flag} is the old name of {new_flag}; give one of them, not both")
    progress_console.print(f"[yellow]note:[/] {old_flag} is deprecated and will be removed; use {new_flag}")
    return old
