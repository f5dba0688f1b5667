"""One worker's loop on a study: trials until the job says stop, the deadline passes, a stop signal comes or the
run's trials fail alike; in the calling process (`run_worker`, and the runner's one worker) or in a spawned one
(`worker_process`), which leaves its traceback in the run directory when it fails."""

from __future__ import annotations

import time
import traceback

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from effnet.nas.files import write_error_log
from effnet.nas.progress import DetailCallback
from effnet.nas.redact import redact, url_secrets
from effnet.nas.signals import stop_requested
from effnet.nas.study.opening import open_study
from effnet.nas.study.optuna_log import optuna_quiet
from effnet.nas.study.storage import heartbeat_settings
from effnet.nas.study.storage_failures import storage_failures
from effnet.nas.study.study_config import StudyConfig
from effnet.nas.study.study_job import StudyJob
from effnet.nas.study.trial_records import recorded, repeated_failure
from effnet.nas.study.workers import become_worker
from effnet.nas.training.runtime import cpu_threads


def stop_reason_now(
    job: StudyJob, study: optuna.Study, deadline: float | None, failing_since: float | None = None
) -> str | None:
    """Why a run stops now, or None while it goes on: a stop signal ("interrupt"), the trials started since
    `failing_since` (where given) failing alike ("failing", see `repeated_failure`), the job's own reason (its
    budget met, nothing left) or the deadline passed ("timeout")."""
    if stop_requested() is not None:
        return "interrupt"
    if failing_since is not None and repeated_failure(study, failing_since):
        return "failing"
    return job.stop_reason(study) or ("timeout" if deadline is not None and time.time() >= deadline else None)


def work(
    job: StudyJob,
    study: optuna.Study,
    storage: BaseStorage,
    config: StudyConfig,
    deadline: float | None,
    threads: int,
    report: DetailCallback | None,
    since: float | None = None,
) -> str:
    """One worker: run trials until the job says stop, the deadline passes, a stop signal comes or the trials
    since `since` (default: now) fail alike (`repeated_failure`); returns why it stopped ("interrupt" for a
    signal, "failing" for failures). `report(detail)` is told the progress: after every trial (no detail) and
    from inside one."""
    reason: list[str] = []
    since = time.time() if since is None else since

    def check(study: optuna.Study, trial: FrozenTrial | None = None) -> None:
        why = stop_reason_now(job, study, deadline, since if trial is not None else None)
        if report is not None:
            report("")
        if why is not None:
            reason[:] = [why]
            if trial is not None:  # inside Optuna's loop, as a callback
                study.stop()

    check(study)
    if reason:
        return reason[0]
    journal = getattr(storage, "get_heartbeat_interval", lambda: None)() is None
    interval, _ = heartbeat_settings()
    objective = recorded(job.objective(study, deadline, threads, config.worker_device(), report), journal, interval)
    timeout = None if deadline is None else max(0.0, deadline - time.time())
    study.optimize(objective, timeout=timeout, callbacks=[check], catch=(Exception,), gc_after_trial=False)
    if stop_requested() is not None:
        return "interrupt"
    return reason[0] if reason else "timeout"


def run_worker(job: StudyJob, config: StudyConfig, deadline: float | None = None) -> str:
    """One worker in the calling thread, without signal handling or recovery of its own: for callers that
    run their own workers (threads, say); `run_study` is the whole run."""
    with optuna_quiet(), storage_failures(config):
        study, storage = open_study(job, config)
        return work(job, study, storage, config, deadline, config.thread_choice().threads, None)


def worker_process(
    job: StudyJob,
    config: StudyConfig,
    deadline: float | None,
    since: float,
    threads: int,
    index: int,
    gpu: str | None,
    parent_pid: int,
) -> None:
    """A spawned worker. It exits 0 when its work is done or stopped, and 1 on an error, which it writes
    to `worker-N-error.log` in the run directory (the parent names that file)."""
    become_worker(gpu, parent_pid)
    try:
        with optuna_quiet(), cpu_threads(threads), storage_failures(config):
            study, storage = open_study(job, config)
            work(job, study, storage, config, deadline, threads, None, since)
    except KeyboardInterrupt:
        pass
    except Exception:
        write_error_log(
            config.run_dir / worker_log_name(index), redact(traceback.format_exc(), url_secrets(config.storage or ""))
        )
        raise SystemExit(1) from None


WORKER_LOGS = "worker-*-error.log"


def worker_log_name(index: int) -> str:
    return f"worker-{index}-error.log"


def worker_note(config: StudyConfig, exitcode: int | None, index: int) -> str:
    log = config.run_dir / worker_log_name(index)
    return (
        f"worker {index} failed; its traceback is in {log}"
        if log.exists()
        else f"worker {index} ended with exit code {exitcode}"
    )
