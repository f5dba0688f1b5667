"""What the study runner records on every trial, whatever the job: its worker first, a heartbeat on the journal
storage, and why it failed (an error, or a stop signal that cut it short and queued it again); and what the failures
recorded say of a run: every trial of it failing the same way (`repeated_failure`) ends it with that error."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import TrialState

from effnet.nas.errors import InputError
from effnet.nas.signals import training
from effnet.nas.study.recovery import process_namespace, worker_identity
from effnet.nas.study.trial_attrs import (
    FAIL_REASON_ATTR,
    HEARTBEAT_ATTR,
    INTERRUPTED_ATTR,
    STALE_ATTR,
    WORK_SECONDS_ATTR,
    WORKER_ATTR,
    WORKER_NAMESPACE_ATTR,
)

REPEATED_FAILURES = 3
"""Failed trials, all with one error and no trial's work succeeding, after which a run stops with that error."""


@contextlib.contextmanager
def _journal_heartbeat(trial: optuna.Trial, interval_s: float) -> Iterator[None]:
    """Record a heartbeat on the trial every `interval_s` while the block runs (journal storages)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval_s):
            with contextlib.suppress(Exception):  # a missed beat only makes the trial look older
                trial.set_user_attr(HEARTBEAT_ATTR, time.time())

    trial.set_user_attr(HEARTBEAT_ATTR, time.time())
    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def recorded(
    objective: Callable[[optuna.Trial], Any], journal: bool, interval_s: float
) -> Callable[[optuna.Trial], Any]:
    """The job's objective, with the worker named on the trial first, a heartbeat on the journal, and a
    trial cut short by a stop signal marked for re-queueing."""

    def run(trial: optuna.Trial) -> Any:
        with training(active=False):
            trial.set_user_attr(WORKER_ATTR, worker_identity())
            trial.set_user_attr(WORKER_NAMESPACE_ATTR, process_namespace())
        heartbeat = _journal_heartbeat(trial, interval_s) if journal else contextlib.nullcontext()
        try:
            with heartbeat:
                return objective(trial)
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):
                trial.set_user_attr(INTERRUPTED_ATTR, True)
                trial.set_user_attr(FAIL_REASON_ATTR, "stopped by a signal; queued again for the next run")
            raise
        except optuna.TrialPruned:
            raise
        except Exception as err:
            with contextlib.suppress(Exception), training(active=False):
                if FAIL_REASON_ATTR not in trial.user_attrs:  # a reason the job gave (a time limit) stands
                    trial.set_user_attr(FAIL_REASON_ATTR, failure_text(err))
            raise

    return run


def failure_text(err: BaseException) -> str:
    """An error as one line of at most 500 characters: the message of the library's `InputError`, else the
    exception's type and message."""
    message = " ".join(str(err).split())
    if not message:
        return f"{type(err).__name__} (no message)"
    return (message if isinstance(err, InputError) else f"{type(err).__name__}: {message}")[:500]


def repeated_failure(study: optuna.Study, since: float, at_least: int = REPEATED_FAILURES) -> tuple[int, str] | None:
    """(count, error) when the trials started at or after `since` (a `time.time()`) include `at_least` failed
    ones, all with one `FAIL_REASON_ATTR`, and none whose work succeeded; else None. Trials a stop signal cut
    short or recovery failed (their worker gone) say nothing of the work and are left out."""
    start = datetime.fromtimestamp(since)  # Optuna's datetimes are naive local times
    errors, succeeded = set(), False
    count = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.datetime_start is None or trial.datetime_start < start or not trial.state.is_finished():
            continue
        attrs = trial.user_attrs
        if (
            trial.state == TrialState.FAIL
            and FAIL_REASON_ATTR in attrs
            and not (attrs.get(INTERRUPTED_ATTR) or attrs.get(STALE_ATTR))
        ):
            errors.add(attrs[FAIL_REASON_ATTR])
            count += 1
        elif trial.state != TrialState.FAIL and WORK_SECONDS_ATTR in attrs:
            succeeded = True
    if succeeded or count < at_least or len(errors) != 1:
        return None
    return count, errors.pop()


def repeated_failure_error(count: int, error: str) -> InputError:
    trials = "the only trial" if count == 1 else f"all {count} trials"
    return InputError(f"{trials} of this run failed the same way and none succeeded: {error}")
