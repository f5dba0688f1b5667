"""The one progress event every long call reports through its `on_progress` callback.

Search, grid-scale, proxy-check, training and the data and supernet stages before them all call
`on_progress(Progress(...))`; the library never prints, the command line draws the bar or the log lines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """How far a long call is: `done` of `total` units (trained candidates, grid points, training steps) and a status
    line.

    `detail` says what the unit in hand is doing (a candidate's epoch): it changes while `done` stays.
    `preparing` marks the work before the units start (decoding the data, training the supernet): its
    `done` and `total` count images or steps, not units."""

    done: int
    total: int | None
    status: str = ""
    detail: str = ""
    preparing: bool = False
    metrics: Mapping[str, float] | None = None
    """Numbers for the caller to show with the event: training's event at the end of each epoch carries that
    epoch's record (epoch, train_loss, val_top1, ema_val_top1, lr, seconds). None: nothing measured."""


ProgressCallback = Callable[[Progress], None]
DetailCallback = Callable[[str], None]
"""Told what the unit in hand is doing (`Progress.detail`), from inside the objective."""
