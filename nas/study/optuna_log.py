"""Optuna's logging, quieted while effnet runs a study or draws a report, and given back as it was."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import optuna


@contextlib.contextmanager
def optuna_quiet() -> Iterator[None]:
    """Optuna's log level at ERROR while the block runs (it logs every trial, and a traceback for every
    failed one, which the run records anyway), then what it was."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)
