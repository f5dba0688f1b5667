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
