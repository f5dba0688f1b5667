"""Local worker processes on one study: spawned (safe with CUDA), one visible GPU each, stopped cleanly.

A worker dies with its parent: on Linux the kernel sends it SIGTERM when the parent exits (killed
included), elsewhere a watch thread notices; either way it stops as on any stop signal, recording
the trial in hand. A stop signal to the parent is passed on to every worker, which finish recording
their trials; stragglers are terminated after a grace period.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

from effnet.nas.cpus import openmp_env
from effnet.nas.signals import Interrupted, ignoring_stop_signals, install_worker_handlers, stop_requested

POLL_S = 1.0
"""How often the parent refreshes its progress while workers run."""
STOP_GRACE_S = 60.0
"""How long stopped workers get to record their trials before they are terminated."""
_PR_SET_PDEATHSIG = 1


def visible_gpus() -> list[str]:
    """The GPUs this process may use, one per worker in turn (CUDA_VISIBLE_DEVICES is respected)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [g.strip() for g in listed.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def spawn_workers(
    target: Callable[..., None], args: tuple[Any, ...], count: int, device: str, name: str
) -> list[BaseProcess]:
    """Start `count` processes running `target(*args, index, gpu, parent_pid)`; on CUDA `gpu` is the
    CUDA_VISIBLE_DEVICES entry the worker takes (the visible GPUs in turn), otherwise None. A target
    calls `become_worker(gpu, parent_pid)` first. They start with OpenMP's spin bounded (`openmp_env`): they
    load torch afresh."""
    context = multiprocessing.get_context("spawn")
    gpus = visible_gpus() if device == "cuda" else []
    processes: list[BaseProcess] = []
    with ignoring_stop_signals(), openmp_env():
        for index in range(count):
            gpu = gpus[index % len(gpus)] if gpus else None
            process = context.Process(target=target, args=(*args, index, gpu, os.getpid()), name=f"{name}-{index}")
            process.start()
            processes.append(process)
    return processes


def become_worker(gpu: str | None, parent_pid: int) -> None:
    """In a fresh worker: die with the parent, handle stop signals, see only the GPU it was given."""
    _die_with_parent(parent_pid)
    install_worker_handlers()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before CUDA initialises


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    else:

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(2.0)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        raise SystemExit(1)


def _signal_alive(processes: list[BaseProcess], signum: int) -> None:
    for p in processes:
        if p.is_alive() and p.pid is not None:
            try:
                os.kill(p.pid, signum)
            except ProcessLookupError:
                pass


def _end(processes: list[BaseProcess]) -> None:
    """Terminate what still runs (SIGTERM, which a worker takes as a stop), then kill it."""
    for p in processes:
        if p.is_alive():
            p.terminate()
    end = time.time() + 10.0
    for p in processes:
        p.join(timeout=max(0.0, end - time.time()))
        if p.is_alive():
            p.kill()
            p.join()


def watch_workers(processes: list[BaseProcess], tick: Callable[[], None], grace_s: float = STOP_GRACE_S) -> list[int]:
    """Call `tick` every second until all workers exit; return the indices of those that exited with an
    error (or were ended). Once this process is asked to stop, the signal is passed on (repeated, for a worker still
    starting up, which ignores it until ready) and the workers get `grace_s` to record their trials; a
    second stop signal ends them at once."""
    stopping_since: float | None = None
    try:
        while any(p.is_alive() for p in processes):
            signum = stop_requested()
            if signum is not None:
                stopping_since = stopping_since or time.time()
                if time.time() - stopping_since > grace_s:
                    break
                _signal_alive(processes, signum)
            tick()
            time.sleep(POLL_S if signum is None else 0.5)
    except Interrupted:
        pass
    finally:
        _end(processes)
    return [index for index, p in enumerate(processes) if p.exitcode not in (0, None)]
