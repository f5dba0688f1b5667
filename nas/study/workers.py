"""Local worker processes on one study: spawned (safe with CUDA), one visible GPU each, Ctrl-C passed on.

Shared by the search and the grid: each passes its own worker entry point, which installs its own
SIGINT handler once it is ready and runs until the study says it is done.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

POLL_S = 1.0
"""How often the parent refreshes its progress while workers run."""


def visible_gpus() -> list[str]:
    """The GPUs this process may use, one per worker in turn (CUDA_VISIBLE_DEVICES is respected)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [g.strip() for g in listed.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Start processes with SIGINT ignored, which they inherit: a Ctrl-C while a spawned worker still
    imports would print its traceback. Each worker installs its own handler when ready."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def spawn_workers(target: Callable[..., None], args: tuple[Any, ...], count: int, device: str,
                  name: str) -> list[multiprocessing.Process]:
    """Start `count` processes running `target(*args, index, gpu)`; on CUDA `gpu` is the
    CUDA_VISIBLE_DEVICES entry the worker takes (the visible GPUs in turn), otherwise None."""
    context = multiprocessing.get_context("spawn")
    gpus = visible_gpus() if device == "cuda" else []
    processes = []
    with sigint_ignored():
        for index in range(count):
            gpu = gpus[index % len(gpus)] if gpus else None
            process = context.Process(target=target, args=(*args, index, gpu), name=f"{name}-{index}")
            process.start()
            processes.append(process)
    return processes


def take_gpu(gpu: str | None) -> None:
    """In a fresh worker, before CUDA initialises: see only the one GPU this worker was given."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu


def raise_once(signum: int, frame: Any) -> None:
    """A worker's SIGINT handler: the first Ctrl-C raises KeyboardInterrupt; later ones (the terminal's and
    the parent's both arrive) are ignored, so they cannot cut short recording the work in progress."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def stop_workers(processes: list[multiprocessing.Process], timeout_s: float = 60.0) -> None:
    """After Ctrl-C: pass SIGINT on to the workers (`kill -INT` reaches only the parent; a worker still
    starting up ignores it, so it is repeated) and wait for each to record its work; then terminate."""
    end = time.time() + timeout_s
    while time.time() < end and any(p.is_alive() for p in processes):
        for p in processes:
            if p.is_alive() and p.pid is not None:
                try:
                    os.kill(p.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        for p in processes:
            p.join(timeout=0.5)
    for p in processes:
        if p.is_alive():
            p.terminate()
            p.join()


def watch_workers(processes: list[multiprocessing.Process], tick: Callable[[], None]) -> list[str]:
    """Call `tick` every second until all workers exit (on Ctrl-C: stop them and re-raise); return the
    names of those that exited with an error."""
    try:
        while any(p.is_alive() for p in processes):
            tick()
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        stop_workers(processes)
        raise
    for p in processes:
        p.join()
    return [p.name for p in processes if p.exitcode not in (0, None)]
