"""Stopping a study cleanly on Ctrl-C (SIGINT) or SIGTERM (schedulers, `docker stop`, `kill`).

A stop signal raised in the middle of a storage write breaks Optuna (its journal file lock, cut short
while it waits, releases a lock it does not hold; a `tell` cut short leaves the trial half-recorded).
So the first signal raises `Interrupted` at once only while a candidate trains (inside `training()`);
anywhere else it is recorded, and the worker stops at its next safe point, after the trial in hand is
recorded. In the main process a second signal raises at once; a worker process ignores later signals
(a terminal's Ctrl-C reaches both a worker and its parent, which passes it on), so nothing can cut
short the recording of its trial.

The handlers are installed for the duration of a study run (`stop_signals`) and the previous ones
restored afterwards; only the main thread can install them, elsewhere a run has no signal handling
of its own.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; `signum` says which (its exit code is 128 + signum)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_stop = threading.Event()
_training = threading.Event()
_received: list[int] = []


def stop_requested() -> int | None:
    """The signal that asked this process to stop, or None."""
    return _received[0] if _stop.is_set() and _received else None


def last_stop_signal() -> int | None:
    """The signal that stopped the last block run under `stop_signals` (or asks the current one to stop), or
    None: what a command's exit code reports (128 + the signal) after the block has ended."""
    return _received[0] if _received else None


def request_stop(signum: int) -> None:
    """Ask this process to stop as a signal would (also for callers that decide to stop themselves)."""
    if not _received:
        _received.append(signum)
    _stop.set()


def _clear() -> None:
    _stop.clear()
    _training.clear()
    _received.clear()


def _handle(signum: int, frame: Any) -> None:
    """Main process: stop a training now, anything else at the next safe point; a repeat at once."""
    repeated = _stop.is_set()
    request_stop(signum)
    if repeated or _training.is_set():
        raise Interrupted(signum)


def _handle_once(signum: int, frame: Any) -> None:
    """Worker process: the first signal stops it; later ones are ignored (see the module notes)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    request_stop(signum)
    if _training.is_set():
        raise Interrupted(signum)


@contextmanager
def stop_signals() -> Iterator[None]:
    """SIGINT and SIGTERM handled as described above while the block runs, then the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _clear()
    previous = {sig: signal.signal(sig, _handle) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # The block's caller has learned of a stop (an `Interrupted`, a run's stop reason): no stop request
        # outlives it to stop the next call of this process (`last_stop_signal` still names the signal).
        _stop.clear()
        _training.clear()


@contextmanager
def stops_deferred() -> Iterator[list[int]]:
    """While the block runs, a first stop signal is recorded in the list yielded instead of raised: the block
    writes what a finished run found (its spec, report and record), which a stop would leave half written though
    the work is done. A second signal raises `Interrupted` at once. The previous handlers are put back after."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def record(signum: int, frame: Any) -> None:
        if received:
            raise Interrupted(signum)
        received.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def install_worker_handlers() -> None:
    """In a worker process (which exits when its work is done): handle the first stop signal only."""
    _clear()
    for sig in STOP_SIGNALS:
        signal.signal(sig, _handle_once)


@contextmanager
def ignoring_stop_signals() -> Iterator[None]:
    """Start child processes with the stop signals ignored, which they inherit: a Ctrl-C while a spawned
    worker still imports would print its traceback. Each worker installs its own handlers when ready."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def training(active: bool = True) -> Iterator[None]:
    """Mark where a stop signal may raise at once (active) or not (a storage write inside a training)."""
    signum = stop_requested()
    if active and signum is not None:
        raise Interrupted(signum)
    was = _training.is_set()
    _set_training(active)
    try:
        yield
    finally:
        _set_training(was)
    signum = stop_requested()
    if was and signum is not None:  # back in a training after a deferred stop
        raise Interrupted(signum)


def _set_training(active: bool) -> None:
    if active:
        _training.set()
    else:
        _training.clear()
