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
  every worker records what it has (`effnet.nas.study.signals`);
- ends with one clear error when the storage fails mid-run (`effnet.nas.study.storage_failures`), and
  a worker's unexpected error leaves its traceback in the run directory;
- leaves process-wide state as it found it: signal handlers, Optuna's log level, torch's threads.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence

import optuna
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from effnet.nas import checks
from effnet.nas.errors import InputError, SettingError
from effnet.nas.files import write_error_log
from effnet.nas.memory import available_memory, gib
from effnet.nas.redact import redact, url_secrets
from effnet.nas.study.recovery import (HEARTBEAT_ATTR, INTERRUPTED_ATTR, WORKER_ATTR, recover_stale_trials,
                                       requeue_interrupted, worker_identity)
from effnet.nas.study.signals import Interrupted, request_stop, stop_requested, stop_signals, training
from effnet.nas.study.storage import describe_storage, heartbeat_settings, journal_path, open_storage
from effnet.nas.study.storage_failures import storage_failures
from effnet.nas.study.workers import become_worker, spawn_workers, watch_workers
from effnet.nas.training.runtime import cpu_threads

if TYPE_CHECKING:
    from effnet.nas.proxies import ProxyRuntime

DEVICES = ("auto", "cpu", "cuda")
MAX_WORKERS = 256
WORKER_MEMORY = 450 * 2**20
"""What one worker process holds on a CPU: torch, the data, a candidate in training (about 450 MB measured)."""
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class StudyConfig:
    """Where a study lives and how its trials run; none of it changes a score but `seed`.

    `seed` seeds everything random in the study (samplers, data splits, proxy trainings) and is part
    of the settings fingerprint. `device` is `auto` (CUDA when available), `cpu` or `cuda` (several
    workers take the visible GPUs one each); `threads` are CPU threads per worker (None: the cores
    divided among the workers); `loader_workers` are each worker's DataLoader processes (None: from
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

    def worker_threads(self) -> int | None:
        """CPU threads per worker: `threads`, or the cores split evenly between several workers (or for
        a CUDA worker's data work); None leaves torch's own setting."""
        if self.threads:
            return self.threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if self.workers > 1 or self.device == "cuda":
            return max(1, cores // self.workers)
        return None

    def proxy_runtime(self, device: str | None = None, threads: int | None = None) -> "ProxyRuntime":
        """How a proxy computes in one of this study's workers."""
        from effnet.nas.proxies import ProxyRuntime

        return ProxyRuntime(device=device or self.device, seed=self.seed, threads=threads,
                            loader_workers=self.loader_workers, cache_dir=self.cache_dir)

    def check_workers(self) -> None:
        """Refuse more workers than this machine's free memory holds (where that is known)."""
        available = available_memory()
        if self.workers > 1 and available is not None and self.workers * WORKER_MEMORY > available:
            raise SettingError("workers", f"{self.workers} need about {gib(self.workers * WORKER_MEMORY)} (about "
                                          f"{WORKER_MEMORY // 2**20} MiB each) and {gib(available)} is free; use at "
                                          f"most {max(1, available // WORKER_MEMORY)}")

    def worker_device(self) -> str:
        """`cpu` or `cuda`, as the workers run; `auto` picks CUDA where it is available; `cuda` without
        a CUDA device is a `SettingError`."""
        from effnet.nas.training.runtime import resolve_device

        return resolve_device(self.device).type


@dataclass(frozen=True)
class StudyProgress:
    """How far a study is: `done` of `total` units (trained candidates, grid points) and a status line."""

    done: int
    total: int | None
    status: str = ""


ProgressCallback = Callable[[StudyProgress], None]


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

    def objective(self, study: optuna.Study, deadline: float | None, threads: int | None,
                  device: str) -> Callable[[optuna.Trial], Any]: ...

    def stop_reason(self, study: optuna.Study) -> str | None:
        """Why workers should stop now (the budget is met, nothing is left), or None."""

    def progress(self, study: optuna.Study) -> StudyProgress: ...


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
    fingerprint = job.fingerprint()
    stored = study.user_attrs.get(job.kind)
    if stored is None:
        study.set_user_attr(job.kind, fingerprint)
    elif stored != fingerprint:
        changed = sorted(k for k in set(fingerprint) | set(stored) if stored.get(k) != fingerprint.get(k))
        raise InputError(f"study {config.name!r} in {config.storage_label} was created with other settings "
                         f"({', '.join(f'{k}={stored.get(k)!r}, now {fingerprint.get(k)!r}' for k in changed)}); "
                         "rerun with those, or use another study name or run directory")
    return study, storage


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
                trial.set_user_attr("fail_reason", "stopped by a signal; queued again for the next run")
            raise

    return run


def _work(job: StudyJob, study: optuna.Study, storage: BaseStorage, config: StudyConfig, deadline: float | None,
          report: Callable[[], None] | None) -> str:
    """One worker: run trials until the job says stop, the deadline passes or a stop signal comes;
    returns why it stopped ("interrupt" for a signal)."""
    reason: list[str] = []

    def check(study: optuna.Study, trial: FrozenTrial | None = None) -> None:
        why = ("interrupt" if stop_requested() is not None else job.stop_reason(study)
               or ("timeout" if deadline is not None and time.time() >= deadline else None))
        if report is not None:
            report()
        if why is not None:
            reason[:] = [why]
            if trial is not None:  # inside Optuna's loop, as a callback
                study.stop()

    check(study)
    if reason:
        return reason[0]
    journal = getattr(storage, "get_heartbeat_interval", lambda: None)() is None
    interval, _ = heartbeat_settings()
    objective = _recorded(job.objective(study, deadline, config.worker_threads(), config.worker_device()),
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
        return _work(job, study, storage, config, deadline, None)


def _worker_process(job: StudyJob, config: StudyConfig, deadline: float | None, index: int, gpu: str | None,
                    parent_pid: int) -> None:
    """A spawned worker. It exits 0 when its work is done or stopped, and 1 on an error, which it writes
    to `worker-N-error.log` in the run directory (the parent names that file)."""
    become_worker(gpu, parent_pid)
    try:
        with optuna_quiet(), cpu_threads(config.worker_threads()), storage_failures(config):
            study, storage = open_study(job, config)
            _work(job, study, storage, config, deadline, None)
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

        def report() -> None:
            if on_progress is not None:
                on_progress(job.progress(study))

        report()
        failed: list[str] = []
        try:
            if config.workers == 1:
                with cpu_threads(config.worker_threads()):
                    reason = _work(job, study, storage, config, deadline, report)
            else:
                processes = spawn_workers(_worker_process, (job, config, deadline), config.workers,
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
    return StudyRun(study=study, stop_reason=reason, elapsed_s=time.time() - started, signal=signum,
                    failed_workers=failed, recovered=recovered, notes=notes)
