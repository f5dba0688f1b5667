"""Trials whose worker is gone: found, failed with the reason, and their parameters queued again.

A worker can die mid-trial (killed, out of memory, the machine lost); its trial stays RUNNING. Three
rules find such trials, on any storage:

- the trial names its worker (host:pid, recorded first thing) and that process is gone from this host: on the
  journal file by host name alone, on an RDB storage (where machines may share a host name) only where the
  trial also names this process's boot and PID namespace (`WORKER_NAMESPACE_ATTR`), so that its PID means the
  same process here (a trial cut off by a database outage is found on the next run, not a grace period later);
- the trial's last heartbeat is older than the grace period: RDB storages keep Optuna's heartbeats
  (and fail such trials themselves), and on the journal file, which has none, each worker records
  one on its trial as a user attribute (`HEARTBEAT_ATTR`) while it runs, so a trial left by a
  worker on another host or in a container that is gone is found too;
- the trial names no worker and started longer ago than the grace period: its worker died between
  taking the trial and naming itself.

Trials cut short by a stop signal are failed by their own worker and marked `INTERRUPTED_ATTR`;
`requeue_interrupted` queues them again. Each queued copy carries `RETRY_OF_ATTR` (the failed trial's
number), `RETRIES_ATTR`, and the user attributes whose names start with `QUEUED_PREFIX` (what a job gave a
trial when it queued it); a trial is retried at most `MAX_RETRY` times. The attributes' names are in
`effnet.nas.study.trial_attrs`.

Only public storage methods are used: the study's storage object as `open_storage` made it, and
trial ids looked up from trial numbers.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from effnet.nas.study.trial_attrs import (
    FAIL_REASON_ATTR,
    FAILED_TRIAL_SYSTEM_ATTR,
    FIXED_PARAMS_SYSTEM_ATTR,
    HEARTBEAT_ATTR,
    INTERRUPTED_ATTR,
    QUEUED_PREFIX,
    RETRIES_ATTR,
    RETRY_OF_ATTR,
    STALE_ATTR,
    WORKER_ATTR,
    WORKER_NAMESPACE_ATTR,
)

MAX_RETRY = 3


def worker_identity() -> str:
    """host:pid of this process, recorded on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_namespace() -> str | None:
    """This process's boot and PID namespace (`boot_id/inode`): two processes that share it see each other's PIDs.
    None where the system does not say (not Linux)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}/{namespace}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_reason(
    trial: FrozenTrial, grace_s: float, now: float, host: str, journal: bool, namespace: str | None = None
) -> str | None:
    """Why a RUNNING trial's worker is taken for gone, or None while it may still be working. On RDB
    storages (`journal` False) a dead worker is told by its PID only in this process's `namespace`, and an
    unnamed trial by its age: Optuna's heartbeats do the rest, and machines there may share a host name."""
    owner = trial.user_attrs.get(WORKER_ATTR)
    started = trial.datetime_start.timestamp() if trial.datetime_start else now
    if not owner:
        if now - started > grace_s:
            return "its worker died right after taking it"
        return None
    owner_host, _, owner_pid = str(owner).rpartition(":")
    here = journal or (namespace is not None and trial.user_attrs.get(WORKER_NAMESPACE_ATTR) == namespace)
    if here and owner_host == host and owner_pid.isdigit() and not _process_alive(int(owner_pid)):
        return f"worker {owner} died mid-trial"
    if not journal:
        return None
    beat = trial.user_attrs.get(HEARTBEAT_ATTR)
    last = float(beat) if isinstance(beat, (int, float)) and not isinstance(beat, bool) else started
    if now - last > grace_s:
        return f"worker {owner} sent no heartbeat for {now - last:.0f} s"
    return None


def fail_trial(storage: BaseStorage, study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    """Fail another process's RUNNING trial with `reason`; False if it finished meanwhile."""
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial.number
    )
    try:
        storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason)
        storage.set_trial_user_attr(trial_id, STALE_ATTR, True)
        return bool(storage.set_trial_state_values(trial_id, TrialState.FAIL))
    except UpdateFinishedTrialError:
        return False


def _queued_retries(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of failed trials that already have a copy queued (by this module or by Optuna's callback)."""
    queued = set()
    for t in trials:
        for origin in (t.user_attrs.get(RETRY_OF_ATTR), t.system_attrs.get(FAILED_TRIAL_SYSTEM_ATTR)):
            if isinstance(origin, int):
                queued.add(origin)
    return queued


def _requeue(study: optuna.Study, trial: FrozenTrial) -> bool:
    retries = int(trial.user_attrs.get(RETRIES_ATTR, 0))
    if retries >= MAX_RETRY or not (trial.params or trial.system_attrs.get(FIXED_PARAMS_SYSTEM_ATTR)):
        return False
    params = trial.params or trial.system_attrs[FIXED_PARAMS_SYSTEM_ATTR]
    carried = {k: v for k, v in trial.user_attrs.items() if k.startswith(QUEUED_PREFIX)}
    study.enqueue_trial(params, user_attrs={**carried, RETRY_OF_ATTR: trial.number, RETRIES_ATTR: retries + 1})
    return True


def recover_stale_trials(storage: BaseStorage, study: optuna.Study, grace_s: float) -> list[int]:
    """Fail the RUNNING trials whose worker is gone (see the module notes) and queue them again;
    returns the numbers of the trials failed here."""
    journal = getattr(storage, "get_heartbeat_interval", lambda: None)() is None
    if not journal:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # RDB heartbeats; Optuna's callback re-queues
    host, now, namespace = socket.gethostname(), time.time(), process_namespace()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = stale_reason(trial, grace_s, now, host, journal, namespace)
        if reason is not None and fail_trial(storage, study, trial, reason):
            failed.append(trial.number)
    if failed:
        queued = _queued_retries(study.get_trials(deepcopy=False))
        for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if trial.number in failed and trial.number not in queued:
                _requeue(study, trial)
    return failed


def requeue_interrupted(study: optuna.Study) -> int:
    """Queue again the trials a stop signal cut short (unless a copy is queued already); returns how many."""
    trials = study.get_trials(deepcopy=False)
    queued = _queued_retries(trials)
    count = 0
    for trial in trials:
        if (
            trial.state == TrialState.FAIL
            and trial.user_attrs.get(INTERRUPTED_ATTR)
            and trial.number not in queued
            and _requeue(study, trial)
        ):
            count += 1
    return count
