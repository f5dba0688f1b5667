"""The one study runner: what the architecture search and the coefficient grid (and anything else
that runs trials) share.

A `StudyJob` says what a study is for: its settings fingerprint, its directions, sampler and pruner,
what to queue before workers start, the objective, when to stop and how far along it is. The runner
does the rest, the same way for every job:

- opens the study in its storage (a journal file in the run directory, or any URL), refusing one
  created with other settings: the fingerprint covers every setting that changes a score;
- seeds each worker's sampler from the study seed and the number of the worker's first trial
  (`SeededPerWorker`): trial numbers are unique in a study, so no two workers on any machines share
  a random stream, and a fresh one-worker study is reproducible from its seed;
- recovers trials whose worker is gone and queues them again (`effnet.nas.study.recovery`);
- runs one worker in this process or several spawned ones (one GPU each on CUDA), each recording
  who it is and, on the journal, a heartbeat on the trial in hand;
- stops cleanly on SIGINT or SIGTERM: a training stops at once, the trial is marked and queued again,
  every worker records what it has (`effnet.nas.signals`);
- ends with one clear error when the storage fails mid-run (`effnet.nas.study.storage_failures`), and
  a worker's unexpected error leaves its traceback in the run directory;
- ends with one clear error (`InputError`) when every trial of the run that reached its work failed the
  same way: after `REPEATED_FAILURES` such trials while it runs (no spinning to the time limit on a broken
  cache or supernet), and at its end whatever the count (no "rerun to continue" for a rerun that fails
  alike); each failed trial records why in `FAIL_REASON_ATTR`;
- chooses CPU threads per worker once, from the cores other work leaves free (`effnet.nas.cpus`), unless
  they are set;
- leaves process-wide state as it found it: signal handlers, Optuna's log level, torch's threads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence

import optuna
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from effnet.nas import checks
from effnet.nas.cpus import ThreadChoice, choose_threads, cpu_state, given_threads
from effnet.nas.errors import InputError, SettingError
from effnet.nas.files import write_error_log
from effnet.nas.memory import available_memory, check_loader_workers, gib
from effnet.nas.redact import redact, url_secrets
from effnet.nas.progress import DetailCallback, Progress, ProgressCallback
from effnet.nas.study.recovery import (HEARTBEAT_ATTR, INTERRUPTED_ATTR, STALE_ATTR, WORKER_ATTR,
                                       recover_stale_trials, requeue_interrupted, worker_identity)
from effnet.nas.signals import Interrupted, request_stop, stop_requested, stop_signals, training
from effnet.nas.study.storage import (JOURNAL_PREFIX, describe_storage, heartbeat_settings, journal_path,
                                      open_storage)
from effnet.nas.study.storage_failures import storage_failures
from effnet.nas.study.workers import become_worker, spawn_workers, watch_workers
from effnet.nas.training.runtime import cpu_threads

if TYPE_CHECKING:
    from effnet.nas.proxies.config import ProxyRuntime

DEVICES = ("auto", "cpu", "cuda")
MAX_WORKERS = 256
WORKER_MEMORY = 450 * 2**20
"""What one worker process holds on a CPU: torch, the data, a candidate in training (about 450 MB measured)."""
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
FAIL_REASON_ATTR = "fail_reason"
"""Why a trial failed, one line: its error, recorded by the runner (or why recovery failed it)."""
WORK_SECONDS_ATTR = "proxy_seconds"
"""Set by a job on every trial whose work (a proxy's scoring) ran, however it ended: a completed trial without
it did no work (a candidate outside the FLOPs band, a surplus grid trial) and shows nothing works."""
REPEATED_FAILURES = 3
"""Failed trials, all with one error and no trial's work succeeding, after which a run stops with that error."""


@dataclass(frozen=True)
class StudyConfig:
    """Where a study lives and how its trials run; none of it changes a score but `seed`.

    `seed` seeds everything random in the study (samplers, data splits, proxy trainings) and is part
    of the settings fingerprint. `device` is `auto` (CUDA when available), `cpu` or `cuda` (several
    workers take the visible GPUs one each); `threads` are CPU threads per worker (None: the free cores
    divided among the workers, see `thread_choice`); `loader_workers` are each worker's DataLoader processes (None: from
    the cores); `cache_dir` holds the decoded proxy caches (None: the default, shared by all runs);
    `force` lets the run directory hold files effnet did not write (see `effnet.nas.outputs`).
    """

    run_dir: Path
    name: str
    storage: str | None = None
    workers: int = 1
    seed: int = 0
    timeout_s: float | None = None
    device: str = "auto"
    threads: int | None = None
    loader_workers: int | None = None
    cache_dir: Path | None = None
    force: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir))
        checks.whole("workers", self.workers, low=1, high=MAX_WORKERS)
        checks.seed("seed", self.seed)
        if self.timeout_s is not None:
            checks.number("timeout", self.timeout_s, low=0, low_open=True)
        if isinstance(self.device, str) and self.device.lower().startswith("cuda:"):
            raise SettingError("device", f"{self.device!r}: workers take the visible GPUs one each; use cuda and "
                                         "choose the GPUs with CUDA_VISIBLE_DEVICES")
        checks.choice("device", self.device, DEVICES)
        if self.threads is not None:
            checks.whole("threads", self.threads, low=1, high=4096)
        if self.loader_workers is not None:
            checks.whole("loader_workers", self.loader_workers, low=0, high=256)
        if not isinstance(self.name, str) or not STUDY_NAME.fullmatch(self.name):
            raise SettingError("study", f"must be a plain name of letters, digits, '.', '_' and '-' (at most 100, "
                                        f"not a path: the run directory is named after it), got {self.name!r}")

    @property
    def storage_label(self) -> str:
        """The storage as it may be shown: the URL with its password redacted, or the journal path."""
        return describe_storage(self.storage, self.run_dir)

    def journal_in_run_dir(self) -> tuple[str, ...]:
        """The run directory's journal, named when the file begins as an Optuna journal does: effnet's own even
        without a run-directory manifest (a run from before manifests, cut short before its run.yaml)."""
        path = journal_path(self.storage, self.run_dir)
        if path.parent != self.run_dir:
            return ()
        try:
            with open(path, "rb") as handle:
                return (path.name,) if handle.read(11) == b'{"op_code":' else ()
        except OSError:
            return ()

    def thread_choice(self) -> ThreadChoice:
        """CPU threads per worker and why: `threads` as set, or the cores free of other work now (a short
        sample) shared among the workers: on busy cores fewer threads train faster than torch's one per CPU."""
        if self.threads:
            return given_threads(self.threads)
        return choose_threads(cpu_state(), self.workers)

    def proxy_runtime(self, device: str | None = None, threads: int | None = None) -> "ProxyRuntime":
        """How a proxy computes in one of this study's workers."""
        from effnet.nas.proxies.config import ProxyRuntime

        return ProxyRuntime(device=device or self.device, seed=self.seed, threads=threads,
                            loader_workers=self.loader_workers, cache_dir=self.cache_dir)

    def check_workers(self) -> None:
        """Refuse more workers, or loader workers, than this machine's free memory holds (where that is known)."""
        available = available_memory()
        if self.workers > 1 and available is not None and self.workers * WORKER_MEMORY > available:
            raise SettingError("workers", f"{self.workers} need about {gib(self.workers * WORKER_MEMORY)} (about "
                                          f"{WORKER_MEMORY // 2**20} MiB each) and {gib(available)} is free; use at "
                                          f"most {max(1, available // WORKER_MEMORY)}")
        check_loader_workers(self.loader_workers, self.workers, WORKER_MEMORY)

    def worker_device(self) -> str:
        """`cpu` or `cuda`, as the workers run; `auto` picks CUDA where it is available; `cuda` without
        a CUDA device is a `SettingError`."""
        from effnet.nas.training.runtime import resolve_device

        return resolve_device(self.device).type


class StudyJob(Protocol):
    """What a kind of study supplies to the runner. Jobs are frozen dataclasses: they travel to
    spawned worker processes by pickling."""

    kind: str
    """Names the study's settings fingerprint among its user attributes ("search", "grid")."""

    def fingerprint(self) -> dict[str, Any]: ...

    def directions(self) -> list[str]: ...

    def make_sampler(self, seed: int) -> BaseSampler: ...

    def make_pruner(self) -> optuna.pruners.BasePruner: ...

    def prepare(self, study: optuna.Study) -> None:
        """Before any worker starts (after recovery): queue what must be queued."""

    def objective(self, study: optuna.Study, deadline: float | None, threads: int | None, device: str,
                  on_detail: DetailCallback | None) -> Callable[[optuna.Trial], Any]:
        """The trial objective; it tells `on_detail` (where given) what the trial in hand is doing."""

    def stop_reason(self, study: optuna.Study) -> str | None:
        """Why workers should stop now (the budget is met, nothing is left), or None."""

    def progress(self, study: optuna.Study) -> Progress: ...


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


# -- seeds ----------------------------------------------------------------------------------------

_MASK32 = 0xFFFFFFFF


def _mix32(value: int) -> int:
    """MurmurHash3's 32-bit finaliser: a bijection of [0, 2^32) that scatters neighbouring numbers."""
    value &= _MASK32
    value ^= value >> 16
    value = (value * 0x85EBCA6B) & _MASK32
    value ^= value >> 13
    value = (value * 0xC2B2AE35) & _MASK32
    return value ^ (value >> 16)


def worker_seed(study_seed: int, first_trial: int) -> int:
    """A worker's sampler seed (what Optuna's samplers take: [0, 2^32)), from the study seed and the number of
    its first trial. Built from bijections, it is one-to-one in the trial number for a given study seed: no
    two workers of a study get the same seed (a hash into 32 bits would collide among ~10^5 workers)."""
    return _mix32(study_seed + _mix32(first_trial))


class SeededPerWorker(BaseSampler):
    """A sampler created on the worker's first trial, seeded by `worker_seed(study_seed, that trial's
    number)`; every call is passed on to it."""

    def __init__(self, make: Callable[[int], BaseSampler], study_seed: int):
        self._make = make
        self._study_seed = study_seed
        self._sampler: BaseSampler | None = None
        self.seed: int | None = None

    def _for(self, trial: FrozenTrial) -> BaseSampler:
        if self._sampler is None:
            self.seed = worker_seed(self._study_seed, trial.number)
            self._sampler = self._make(self.seed)
        return self._sampler

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._for(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        if self._sampler is not None:
            self._sampler.reseed_rng()


# -- process-wide state, restored ----------------------------------------------------------------

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


# -- the study ------------------------------------------------------------------------------------

def open_study(job: StudyJob, config: StudyConfig,
               notes: list[str] | None = None) -> tuple[optuna.Study, BaseStorage]:
    """Create or load the job's study; one created with other settings is refused. Returns the study and
    the storage object behind it; a repair of its storage is told in `notes` (see `open_storage`)."""
    storage = open_storage(config.storage, config.run_dir, notes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            storage=storage, study_name=config.name, directions=job.directions(),
            sampler=SeededPerWorker(job.make_sampler, config.seed), pruner=job.make_pruner(), load_if_exists=True)
    stored = study.user_attrs.get(job.kind)
    if stored is None:
        study.set_user_attr(job.kind, job.fingerprint())
    else:
        _refuse_other_settings(job, config, stored)
    return study, storage


def check_settings(job: StudyJob, config: StudyConfig, notes: list[str] | None = None) -> None:
    """Refuse to resume a study created with other settings before any work is done for it (decoding the data,
    say). It creates no study (`run_study` does) and, where no journal exists yet, no file."""
    journal = config.storage is None or config.storage.startswith(JOURNAL_PREFIX)
    if journal and not journal_path(config.storage, config.run_dir).exists():
        return
    storage = open_storage(config.storage, config.run_dir, notes)
    try:
        study_id = storage.get_study_id_from_name(config.name)
    except KeyError:
        return
    stored = storage.get_study_user_attrs(study_id).get(job.kind)
    if stored is not None:
        _refuse_other_settings(job, config, stored)


_UNSET = object()


def _refuse_other_settings(job: StudyJob, config: StudyConfig, stored: dict[str, Any]) -> None:
    """An `InputError` naming each setting that differs from the stored fingerprint, as `name: old -> new`."""
    old, new = _flattened(stored), _flattened(job.fingerprint())
    changed = [name for name in sorted(set(old) | set(new)) if old.get(name, _UNSET) != new.get(name, _UNSET)]
    if changed:
        differences = "; ".join(f"{name}: {_shown(old.get(name, _UNSET))} -> {_shown(new.get(name, _UNSET))}"
                                for name in changed)
        raise InputError(f"study {config.name!r} in {config.storage_label} was created with other settings "
                         f"({differences}); rerun with those, or use another study name or run directory")


def _flattened(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as one level of dotted names: {"proxy": {"epochs": 2}} -> {"proxy.epochs": 2}."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flattened(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _shown(value: Any) -> str:
    return "(not set)" if value is _UNSET else repr(value) if isinstance(value, str) else str(value)


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


def _recorded(objective: Callable[[optuna.Trial], Any], journal: bool,
              interval_s: float) -> Callable[[optuna.Trial], Any]:
    """The job's objective, with the worker named on the trial first, a heartbeat on the journal, and a
    trial cut short by a stop signal marked for re-queueing."""

    def run(trial: optuna.Trial) -> Any:
        with training(active=False):
            trial.set_user_attr(WORKER_ATTR, worker_identity())
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
        if trial.state == TrialState.FAIL and FAIL_REASON_ATTR in attrs and not (
                attrs.get(INTERRUPTED_ATTR) or attrs.get(STALE_ATTR)):
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


def _work(job: StudyJob, study: optuna.Study, storage: BaseStorage, config: StudyConfig, deadline: float | None,
          threads: int, report: DetailCallback | None, since: float | None = None) -> str:
    """One worker: run trials until the job says stop, the deadline passes, a stop signal comes or the trials
    since `since` (default: now) fail alike (`repeated_failure`); returns why it stopped ("interrupt" for a
    signal, "failing" for failures). `report(detail)` is told the progress: after every trial (no detail) and
    from inside one."""
    reason: list[str] = []
    since = time.time() if since is None else since

    def check(study: optuna.Study, trial: FrozenTrial | None = None) -> None:
        why = ("interrupt" if stop_requested() is not None
               else "failing" if trial is not None and repeated_failure(study, since) else job.stop_reason(study)
               or ("timeout" if deadline is not None and time.time() >= deadline else None))
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
    objective = _recorded(job.objective(study, deadline, threads, config.worker_device(), report),
                          journal, interval)
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
        return _work(job, study, storage, config, deadline, config.thread_choice().threads, None)


def _worker_process(job: StudyJob, config: StudyConfig, deadline: float | None, since: float, threads: int,
                    index: int,
                    gpu: str | None, parent_pid: int) -> None:
    """A spawned worker. It exits 0 when its work is done or stopped, and 1 on an error, which it writes
    to `worker-N-error.log` in the run directory (the parent names that file)."""
    become_worker(gpu, parent_pid)
    try:
        with optuna_quiet(), cpu_threads(threads), storage_failures(config):
            study, storage = open_study(job, config)
            _work(job, study, storage, config, deadline, threads, None, since)
    except KeyboardInterrupt:
        pass
    except Exception:
        write_error_log(config.run_dir / worker_log_name(index),
                        redact(traceback.format_exc(), url_secrets(config.storage or "")))
        raise SystemExit(1) from None


def worker_log_name(index: int) -> str:
    return f"worker-{index}-error.log"


def _worker_note(config: StudyConfig, exitcode: int | None, index: int) -> str:
    log = config.run_dir / worker_log_name(index)
    return (f"worker {index} failed; its traceback is in {log}" if log.exists()
            else f"worker {index} ended with exit code {exitcode}")


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
        failed: list[str] = []
        threads = config.thread_choice()
        try:
            if config.workers == 1:
                with cpu_threads(threads.threads):
                    reason = _work(job, study, storage, config, deadline, threads.threads, report, started)
            else:
                processes = spawn_workers(_worker_process, (job, config, deadline, started, threads.threads),
                                          config.workers,
                                          config.worker_device(), f"effnet-{job.kind}-worker")
                failed = watch_workers(processes, report)
                notes += [_worker_note(config, processes[index].exitcode, index) for index in failed]
                reason = ("interrupt" if stop_requested() is not None else job.stop_reason(study)
                          or ("timeout" if deadline is not None and time.time() >= deadline else "workers ended"))
        except Interrupted as stop:
            request_stop(stop.signum)
            reason = "interrupt"
        signum = stop_requested()
        requeue_interrupted(study)
        report()
    failing = None if reason == "interrupt" else repeated_failure(study, started, at_least=1)
    if failing is not None:
        raise repeated_failure_error(*failing)
    return StudyRun(study=study, stop_reason=reason, elapsed_s=time.time() - started, signal=signum,
                    failed_workers=failed, recovered=recovered, notes=notes, threads=threads)
