"""Process and runtime settings for training: allocator, threads, device, memory format, compile.

Allocator. On Linux with glibc, large tensors (above glibc's dynamic mmap threshold, at most
32 MiB) are served by fresh `mmap` calls and returned with `munmap` on free, so every training
step page-faults its activations in again: measured on a 2-core VM, over a million minor faults
and seconds of system time per EfficientNet-B0 step at 224 px. `configure_allocator` keeps them
in the heap instead (`mallopt`: mmap threshold 1 GiB, trimming off), which measured 1.8-2.1x
faster B0 training at 224 px and 1.4-1.6x faster inference (bench/RESULTS.md, "Model speed").
It acts on the running process, so no re-exec is needed, and exports the same settings as
`GLIBC_TUNABLES` for child processes. The cost: the process keeps its peak heap instead of
returning it to the system between steps. Switch it off with `EFFNET_ALLOCATOR=system`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform

import torch
from torch import nn

from effnet.nas.errors import InputError

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


def configure_threads(threads: int | None = None) -> int:
    """Intra-op threads: `threads`, or one per CPU this process may run on. Returns the count."""
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` (CUDA when available, else CPU), `cpu`, `cuda` or `cuda:N`."""
    choice = name.strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda" or choice.startswith("cuda:"):
        index = choice.partition(":")[2]
        if index and not index.isdigit():
            raise InputError(f"--device {name}: a CUDA device is `cuda` or `cuda:N` with N a number")
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: no CUDA device is available here; use --device cpu or auto")
        if index and int(index) >= torch.cuda.device_count():
            raise InputError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here; "
                             f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return torch.device(choice)
    raise InputError(f"--device {name}: unknown device; use auto, cpu, cuda or cuda:N")


def memory_format(channels_last: bool = True) -> torch.memory_format:
    """channels_last unless asked otherwise: on CPU it measured 1.6x faster B0 training at 224 px and
    2.5x at the proxy's 32 px (bench/RESULTS.md); on CUDA it is the layout cuDNN's tensor cores want."""
    return torch.channels_last if channels_last else torch.contiguous_format


def place_model(model: nn.Module, device: torch.device, channels_last: bool = True) -> nn.Module:
    """Move a model to `device` in the chosen memory format (in place; returns it)."""
    return model.to(device=device, memory_format=memory_format(channels_last))


def place_batch(images: torch.Tensor, device: torch.device, channels_last: bool = True) -> torch.Tensor:
    """Move a batch of images to `device` in the chosen layout; non-blocking from pinned memory."""
    return images.to(device=device, memory_format=memory_format(channels_last),
                     non_blocking=images.is_pinned())


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (the tensor cores' format; no loss scaling needed); full fp32 on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_model(model: nn.Module, enabled: bool) -> nn.Module:
    """`torch.compile` the model when asked. On CPU it measured slower than eager for B0 and took a
    minute per architecture to compile (bench/RESULTS.md), so it is for long CUDA trainings."""
    return torch.compile(model) if enabled else model
