"""A storage that fails mid-run: a database outage, a full disk under the journal.

Optuna lets such an error out of its trial loop, sometimes behind one of its own raised while it
handled it (an UnboundLocalError), and its heartbeat thread dies of it with a traceback. A study run
turns it into one `InputError` naming the storage: what was recorded before the failure stays, and
the same command resumes once the storage is back.
"""

from __future__ import annotations

import contextlib
import errno
import threading
from collections.abc import Callable, Iterator
from typing import Any

import optuna

from effnet.nas.errors import InputError
from effnet.nas.redact import redact, url_secrets
from effnet.nas.study.study_config import StudyConfig

STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)
"""Write errors that mean the journal file (or the disk under it) failed, not effnet."""


def storage_failure(err: BaseException) -> BaseException | None:
    """The storage error behind `err`, if one is in its chain: the database went away (SQLAlchemy's
    errors, Optuna's StorageInternalError) or the journal's disk failed. Optuna may hide it behind an
    error of its own raised while it handled it (an UnboundLocalError in its trial loop)."""
    from sqlalchemy.exc import SQLAlchemyError

    seen: list[BaseException] = []
    chain: list[BaseException | None] = [err]
    while chain:
        cause = chain.pop()
        if cause is None or any(cause is s for s in seen):
            continue
        seen.append(cause)
        chain += [cause.__cause__, None if cause.__suppress_context__ else cause.__context__]
    kinds = (SQLAlchemyError, optuna.exceptions.StorageInternalError)  # the database's own words first
    found: list[BaseException] = [c for kind in kinds for c in seen if isinstance(c, kind)]
    found += [c for c in seen if isinstance(c, OSError) and c.errno in STORAGE_ERRNOS]
    return found[0] if found else None


@contextlib.contextmanager
def storage_failures(config: StudyConfig) -> Iterator[None]:
    """A storage that fails mid-run (a database outage, a full disk) as an `InputError` naming it: what
    was recorded before stays, and the same command resumes once the storage is back. Meanwhile a
    thread that dies of it (Optuna's heartbeat thread has no handler) prints no traceback: the worker's
    own thread meets the same failure and ends the run with that one line."""
    _quiet_threads(+1)
    try:
        yield
    except InputError:
        raise
    except Exception as err:
        cause = storage_failure(err)
        if cause is None:
            raise
        detail = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise InputError(
            f"the storage {config.storage_label} failed mid-run ({type(cause).__name__}: "
            f"{redact(detail, url_secrets(config.storage or ''))}); what it recorded is kept: rerun "
            "the same command to resume once it is back"
        ) from None
    finally:
        _quiet_threads(-1)


_hook_lock = threading.Lock()
_hook_users = 0
_hook_previous: Callable[[Any], Any] = threading.excepthook


def _quiet(args: Any) -> None:
    if storage_failure(args.exc_value) is None:
        _hook_previous(args)


def _quiet_threads(change: int) -> None:
    """Counted: the hook goes in with the first of several overlapping runs (threads of one process) and the
    previous one comes back with the last."""
    global _hook_users, _hook_previous
    with _hook_lock:
        if change > 0 and _hook_users == 0:
            _hook_previous, threading.excepthook = threading.excepthook, _quiet
        _hook_users += change
        if change < 0 and _hook_users == 0:
            threading.excepthook = _hook_previous
