"""Checks of command-line values that several commands share: durations, devices, run directories."""

from __future__ import annotations

import shutil
from pathlib import Path

from effnet.nas.errors import InputError
from effnet.nas.training.runtime import resolve_device

MIN_FREE_BYTES = 64 * 2**20


def parse_duration(text: str) -> float | None:
    """`90`, `90s`, `8m`, `2h`, or `none` for no limit."""
    value = text.strip().lower()
    if value in ("none", "0", ""):
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    factor = units.get(value[-1], 1)
    number = value[:-1] if value[-1] in units else value
    try:
        seconds = float(number) * factor
    except ValueError:
        raise InputError(f"--timeout {text!r} is not a duration; write it like 480, 90s, 8m, 2h or none") from None
    if seconds <= 0:
        raise InputError(f"--timeout must be positive (or none), got {text!r}")
    return seconds


def worker_device(name: str) -> str:
    """`auto`, `cpu` or `cuda` resolved to `cpu` or `cuda`; workers take one visible GPU each, so a
    numbered device is refused with the way to pick GPUs."""
    device = resolve_device(name)
    if device.index is not None:
        raise InputError(f"--device {name}: workers take the visible GPUs one each; use --device cuda and "
                         f"choose GPUs with CUDA_VISIBLE_DEVICES")
    return device.type


def check_run_dir(run_dir: Path) -> None:
    """Fail before any training if the run directory cannot hold the study and its files."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise InputError(f"run directory {run_dir} is not writable ({err.strerror}); choose another --run-dir") from None
    free = shutil.disk_usage(run_dir).free
    if free < MIN_FREE_BYTES:
        raise InputError(f"only {free // 2**20} MiB free under {run_dir}; free some space or choose another --run-dir")
