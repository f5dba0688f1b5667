"""The one study runner: what the architecture search and the coefficient grid (and anything else
that runs trials) share.

A `StudyJob` says what a study is for: its settings fingerprint, its directions, sampler and pruner,
what to queue before workers start, the objective, when to stop and how far along it is. The runner
does the rest, the same way for every job:

- opens the study in its storage (a journal file in the run directory, or any URL), refusing one
  created with other settings: the fingerprint covers every setting that changes a score
  (`effnet.nas.study.opening`; the settings are a `StudyConfig`, `effnet.nas.study.study_config`);
- seeds each worker's sampler from the study seed and the number of the worker's first trial
  (`effnet.nas.study.worker_seeds`): trial numbers are unique in a study, so no two workers on any machines share
  a random stream, and a fresh one-worker study is reproducible from its seed;
- recovers trials whose worker is gone and queues them again (`effnet.nas.study.recovery`);
- runs one worker in this process or several spawned ones (one GPU each on CUDA; `effnet.nas.study.worker_loop`,
  `effnet.nas.study.workers`), each recording who it is and, on the journal, a heartbeat on the trial in hand
  (`effnet.nas.study.trial_records`);
- stops cleanly on SIGINT or SIGTERM: a training stops at once, the trial is marked and queued again,
  every worker records what it has (`effnet.nas.signals`);
- ends with one clear error when the storage fails mid-run (`effnet.nas.study.storage_failures`), and
  a worker's unexpected error leaves its traceback in the run directory;
- ends with one clear error (`InputError`) when every trial of the run that reached its work failed the
  same way: after `REPEATED_FAILURES` such trials while it runs (no spinning to the time limit on a broken
  cache or supernet), and at its end whatever the count (no "rerun to continue" for a rerun that fails
  alike); each failed trial records why in `FAIL_REASON_ATTR` (`effnet.nas.study.trial_attrs`);
- chooses CPU threads per worker once, from the cores other work leaves free (`effnet.nas.cpus`), unless
  they are set;
- leaves process-wide state as it found it: signal handlers, Optuna's log level, torch's threads.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from effnet.nas.cpus import ThreadChoice
from effnet.nas.outputs import claim_run_dir
from effnet.nas.progress import ProgressCallback
from effnet.nas.record import RUN_RECORD
from effnet.nas.signals import Interrupted, request_stop, stop_requested, stop_signals
from effnet.nas.study.html_report import PLOTLY_JS_NAME, REPORT_NAME
from effnet.nas.study.opening import open_study
from effnet.nas.study.optuna_log import optuna_quiet
from effnet.nas.study.recovery import recover_stale_trials, requeue_interrupted
from effnet.nas.study.storage import JOURNAL_NAME, heartbeat_settings
from effnet.nas.study.storage_failures import storage_failures
from effnet.nas.study.study_config import StudyConfig
from effnet.nas.study.study_job import StudyJob
from effnet.nas.study.trial_records import repeated_failure, repeated_failure_error
from effnet.nas.study.worker_loop import WORKER_LOGS, stop_reason_now, work, worker_note, worker_process
from effnet.nas.study.workers import spawn_workers, watch_workers
from effnet.nas.training.runtime import cpu_threads

STUDY_FILES = (RUN_RECORD, f"{JOURNAL_NAME}*", REPORT_NAME, PLOTLY_JS_NAME, WORKER_LOGS)
"""What a study's command writes in its run directory besides its own files (glob patterns): the run record, the
journal (and its repairs' fragments), the HTML report and a failed worker's log."""


def claim_study_dir(config: StudyConfig, command: str, writes: tuple[str, ...]) -> Path:
    """Claim the study's run directory for `command` (`claim_run_dir`): its journal there is effnet's own, the
    directory is the study's, and `writes` (with `STUDY_FILES`) are the names the command writes in it."""
    return claim_run_dir(
        config.run_dir,
        command,
        config.force,
        own=config.journal_in_run_dir(),
        study=config.name,
        writes=(*STUDY_FILES, *writes),
    )


@dataclass
class StudyRun:
    """What a run did: the study, why it stopped, and the signal that stopped it, if one did."""

    study: optuna.Study
    stop_reason: str
    elapsed_s: float
    signal: int | None = None
    failed_workers: list[int] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the user should know about the run: a torn journal repaired, a worker that failed."""
    threads: ThreadChoice | None = None
    """The CPU threads each worker ran with, and why (None where no worker ran: the supernet's training took
    the run's time)."""


def run_study(job: StudyJob, config: StudyConfig, on_progress: ProgressCallback | None = None) -> StudyRun:
    """Run the job's study until it is done, out of time or stopped by a signal; see the module notes."""
    started = time.time()
    deadline = None if config.timeout_s is None else started + config.timeout_s
    _, grace = heartbeat_settings()
    notes: list[str] = []
    with optuna_quiet(), stop_signals(), storage_failures(config):
        study, storage = open_study(job, config, notes)
        recovered = recover_stale_trials(storage, study, grace)
        requeue_interrupted(study)
        job.prepare(study)

        def report(detail: str = "") -> None:
            if on_progress is not None:
                on_progress(dataclasses.replace(job.progress(study), detail=detail))

        report()
        failed: list[int] = []
        threads = config.thread_choice()
        try:
            if config.workers == 1:
                with cpu_threads(threads.threads):
                    reason = work(job, study, storage, config, deadline, threads.threads, report, started)
            else:
                processes = spawn_workers(
                    worker_process,
                    (job, config, deadline, started, threads.threads),
                    config.workers,
                    config.worker_device(),
                    f"effnet-{job.kind}-worker",
                )
                failed = watch_workers(processes, report)
                notes += [worker_note(config, processes[index].exitcode, index) for index in failed]
                if failed:  # a worker that died left its trial running: failed and queued again now, not next run
                    recover_stale_trials(storage, study, grace)
                reason = stop_reason_now(job, study, deadline) or "workers ended"
        except Interrupted as stop:
            request_stop(stop.signum)
            reason = "interrupt"
        signum = stop_requested()
        requeue_interrupted(study)
        report()
    failing = None if reason == "interrupt" else repeated_failure(study, started, at_least=1)
    if failing is not None:
        raise repeated_failure_error(*failing)
    return StudyRun(
        study=study,
        stop_reason=reason,
        elapsed_s=time.time() - started,
        signal=signum,
        failed_workers=failed,
        recovered=recovered,
        notes=notes,
        threads=threads,
    )
