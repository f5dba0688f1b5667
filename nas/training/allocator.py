"""The C allocator, tuned for training: one process-wide setting, applied by the command line at start-up.

On Linux with glibc, large tensors (above glibc's dynamic mmap threshold, at most 32 MiB) are
served by fresh `mmap` calls and returned with `munmap` on free, so every training step page-faults
its activations in again: measured on a 2-core VM, over a million minor faults and seconds of
system time per EfficientNet-B0 step at 224 px. `configure_allocator` keeps them in the heap instead
(`mallopt`: mmap threshold 1 GiB, trimming off), which measured 1.8-2.1x faster B0 training at 224 px
and 1.4-1.6x faster inference (bench/RESULTS.md, "Model speed"). It acts on the running process, so
no re-exec is needed, and exports the same settings as `GLIBC_TUNABLES` for child processes. The
cost: the process keeps its peak heap instead of returning it to the system between steps. Switch
it off with `EFFNET_ALLOCATOR=system`. It imports no torch, so it can run before anything allocates.
"""

from __future__ import annotations

import ctypes
import os
import platform

ALLOCATOR_ENV = "EFFNET_ALLOCATOR"
"""`system` leaves the C allocator alone; anything else (or unset) applies the tuned settings."""

MMAP_THRESHOLD = 1 << 30
"""Allocations above this still get their own mapping (1 GiB: above any B0-B7 activation at batch 32)."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_TRIM_NEVER = -1  # mallopt(3): "Setting M_TRIM_THRESHOLD to -1 disables trimming completely"
_PRESET_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_PRELOADED_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")
_applied: str | None = None


def _allocator_preset() -> str | None:
    """What the environment already chose for the allocator, if anything."""
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES from the environment"
    if any(name in os.environ for name in _PRESET_ENV):
        return "MALLOC_*_ variables from the environment"
    preload = os.environ.get("LD_PRELOAD", "")
    for name in _PRELOADED_ALLOCATORS:
        if name in preload:
            return f"{name} via LD_PRELOAD"
    return None


def configure_allocator() -> str:
    """Keep large tensors in the glibc heap; returns a short description of what is in effect.

    Call it once at the start of a command (safe to call again). Does nothing with
    `EFFNET_ALLOCATOR=system`, when the environment already configures the allocator, or off glibc.
    """
    global _applied
    if _applied:
        return _applied
    if os.environ.get(ALLOCATOR_ENV, "").strip().lower() == "system":
        return f"system ({ALLOCATOR_ENV}=system)"
    preset = _allocator_preset()
    if preset:
        return preset
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "system (not glibc)"
    libc = ctypes.CDLL(None)
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    if not (libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_NEVER)):
        return "system (mallopt refused the settings)"
    tunables = f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.trim_threshold={1 << 62}"
    existing = os.environ.get("GLIBC_TUNABLES")
    os.environ["GLIBC_TUNABLES"] = f"{existing}:{tunables}" if existing else tunables
    _applied = f"glibc heap (mmap threshold {MMAP_THRESHOLD >> 20} MiB, no trimming)"
    return _applied
