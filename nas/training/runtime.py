"""Runtime settings for training: threads, device, memory format, autocast, compile (the allocator is
`effnet.nas.training.allocator`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TypeVar

import torch
from torch import nn

from effnet.nas.cpus import usable_cores
from effnet.nas.errors import SettingError

ModuleT = TypeVar("ModuleT", bound=nn.Module)


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads at `threads` while the block runs, then what they were (None: untouched)."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def configure_threads(threads: int | None = None) -> int:
    """Intra-op threads: `threads`, or one per core this process may use. Returns the count."""
    if threads is None:
        threads = usable_cores()
    if threads < 1:
        raise SettingError("threads", f"must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` (CUDA when available, else CPU), `cpu`, `cuda` or `cuda:N`; anything else is a `SettingError`."""
    choice = str(name).strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda" or choice.startswith("cuda:"):
        index = choice.partition(":")[2]
        if index and not index.isdigit():
            raise SettingError("device", f"{name!r}: a CUDA device is `cuda` or `cuda:N` with N a number")
        if not torch.cuda.is_available():
            raise SettingError("device", f"{name!r}: no CUDA device is available here; use cpu or auto")
        if index and int(index) >= torch.cuda.device_count():
            raise SettingError(
                "device",
                f"{name!r}: only {torch.cuda.device_count()} CUDA device(s) here; "
                f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}",
            )
        return torch.device(choice)
    raise SettingError("device", f"{name!r}: unknown device; use auto, cpu, cuda or cuda:N")


def memory_format(channels_last: bool = True) -> torch.memory_format:
    """channels_last unless asked otherwise: on CPU it measured 1.6x faster B0 training at 224 px and
    2.5x at the proxy's 32 px (bench/RESULTS.md); on CUDA it is the layout cuDNN's tensor cores want."""
    return torch.channels_last if channels_last else torch.contiguous_format


def place_model(model: ModuleT, device: torch.device, channels_last: bool = True) -> ModuleT:
    """Move a model to `device` in the chosen memory format (in place; returns it)."""
    # Module.to takes memory_format together with a device (torch parses both in one call), but torch's overloads
    # of it offer memory_format only alone
    return model.to(device=device, memory_format=memory_format(channels_last))  # type: ignore[call-overload]


def place_batch(images: torch.Tensor, device: torch.device, channels_last: bool = True) -> torch.Tensor:
    """Move a batch of images to `device` in the chosen layout; non-blocking from pinned memory."""
    return images.to(device=device, memory_format=memory_format(channels_last), non_blocking=images.is_pinned())


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (the tensor cores' format; no loss scaling needed); full fp32 on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


CUDA_TOOLKIT_NOTICE = "No CUDA runtime is found"
"""How torch's `torch.utils.cpp_extension` starts the warning it logs when it finds a CUDA toolkit but no GPU."""


class _WithoutCudaToolkitNotice(logging.Filter):
    """Drops torch's "No CUDA runtime is found, using CUDA_HOME=..." warning. The compiler imports
    `torch.utils.cpp_extension`, which logs it wherever a CUDA toolkit is installed and no GPU answers: on a
    CPU training it says nothing about the run (a `--device cuda` without a GPU is refused before)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(CUDA_TOOLKIT_NOTICE)


def silence_cuda_toolkit_notice() -> None:
    """Drop that one warning from torch's `torch.utils.cpp_extension` log for the rest of the process (a filter on
    that logger, added once). For the command line, which owns its process; the library leaves torch's logs alone."""
    extensions_log = logging.getLogger("torch.utils.cpp_extension")
    if not any(isinstance(f, _WithoutCudaToolkitNotice) for f in extensions_log.filters):
        extensions_log.addFilter(_WithoutCudaToolkitNotice())


def compile_model(model: nn.Module, enabled: bool) -> nn.Module:
    """`torch.compile` the model when asked. On CPU it measured slower than eager for B0 and took a
    minute per architecture to compile (bench/RESULTS.md), so it is for long CUDA trainings."""
    if not enabled:
        return model
    compiled = torch.compile(model)
    assert isinstance(compiled, nn.Module)  # an OptimizedModule around `model`; torch types it as any callable
    return compiled
