"""How much memory this machine has free, for checks that refuse work it cannot hold."""

from __future__ import annotations

import os
from pathlib import Path

GIB = 2**30


def available_memory() -> int | None:
    """Bytes the kernel could give this process now (Linux's MemAvailable), or the free physical memory
    where there is no /proc/meminfo; None where neither is known."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gib(size: float) -> str:
    return f"{size / GIB:.1f} GiB"


LOADER_WORKER_MEMORY = 200 * 2**20
"""What one DataLoader worker process holds of its own: about 20 MiB measured (forked, prefetching 224-px
batches of JPEGs), plus one decoded image of up to 64 megapixels (183 MiB)."""


def check_loader_workers(loader_workers: int | None, processes: int = 1, process_memory: int = 0) -> None:
    """Refuse `loader_workers` DataLoader processes for each of `processes` (each holding about `process_memory`
    itself) where this machine's free memory (if known) holds fewer: a `SettingError` naming how many fit."""
    from effnet.nas.errors import SettingError

    available = available_memory()
    if not loader_workers or available is None:
        return
    need = processes * (process_memory + loader_workers * LOADER_WORKER_MEMORY)
    if need > available:
        fit = max(0, (available // processes - process_memory) // LOADER_WORKER_MEMORY)
        each = "" if processes == 1 else f" for each of {processes} workers"
        raise SettingError(
            "loader_workers",
            f"{loader_workers}{each} need about {gib(need)} (about "
            f"{LOADER_WORKER_MEMORY // 2**20} MiB each) and {gib(available)} is "
            f"free; use at most {fit}",
        )
