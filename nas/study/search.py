"""The architecture search: an Optuna study over a search space, one or many workers, resumable.

Each trial samples a spec, counts its FLOPs analytically and sets the FLOPs band as an Optuna
constraint before any training; a candidate outside the band is recorded (so the sampler learns
where the band is) but never trained. Candidates inside it are scored by the accuracy proxy,
reporting per epoch to the pruner. The budget (`trials`) counts trained candidates only.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState

from effnet.nas.errors import InputError
from effnet.nas.net.flops import analytic_cost
from effnet.nas.study.objective import OBJECTIVES, FlopsBand, reward_for
from effnet.nas.study.space import SearchSpace, load_space
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.study.storage import STALE_ATTR, WORKER_ATTR, open_storage, recover_stale_trials, worker_identity
from effnet.nas.study.workers import spawn_workers, take_gpu

SAMPLERS = ("tpe", "random", "nsga2")
PRUNERS = ("hyperband", "median", "none")
OUT_OF_BAND_FACTOR = 200
"""At most this many out-of-band samples per trained trial before a search gives up on the band."""


@dataclass(frozen=True)
class SearchConfig:
    target_flops: int
    run_dir: Path
    flops_tolerance: float = 0.1
    objective: str = "reward"
    space: str | None = None
    proxy: str = "train"
    data: str = "digits"
    proxy_epochs: int = 3
    proxy_resolution: int = 32
    batch_size: int = 64
    trials: int = 40
    timeout_s: float | None = None
    workers: int = 1
    storage: str | None = None
    study_name: str = "search"
    seed: int = 0
    sampler: str = "tpe"
    pruner: str = "hyperband"
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise InputError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.sampler not in SAMPLERS:
            raise InputError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.pruner not in PRUNERS:
            raise InputError(f"--pruner must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")
        for name in ("trials", "workers", "proxy_epochs", "proxy_resolution", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise InputError(f"--timeout must be positive seconds, got {self.timeout_s}")
        self.band  # validates target and tolerance

    @property
    def band(self) -> FlopsBand:
        return FlopsBand(self.target_flops, self.flops_tolerance, hard=self.objective == "hard")

    @property
    def multi_objective(self) -> bool:
        return self.objective == "pareto"

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed study must agree on: otherwise its trials are not comparable."""
        return {"target_flops": self.target_flops, "flops_tolerance": self.flops_tolerance,
                "objective": self.objective, "space": str(self.space or "efficientnet"), "proxy": self.proxy,
                "data": self.data, "proxy_epochs": self.proxy_epochs, "proxy_resolution": self.proxy_resolution}


# -- study ------------------------------------------------------------------------------------------

def make_sampler(config: SearchConfig, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    seed = config.seed + worker_index
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if config.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if config.sampler == "nsga2" or (config.multi_objective and config.sampler == "tpe"):
            return optuna.samplers.NSGAIISampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=10)


def make_pruner(config: SearchConfig) -> optuna.pruners.BasePruner:
    if config.multi_objective or config.pruner == "none" or config.proxy != "train":
        return optuna.pruners.NopPruner()
    if config.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.proxy_epochs, reduction_factor=3)


def open_study(config: SearchConfig, worker_index: int = 0) -> optuna.Study:
    """Create or load the study; a resumed study must have been created with the same settings."""
    storage = open_storage(config.storage, config.run_dir)
    directions = ["maximize", "minimize"] if config.multi_objective else ["maximize"]
    study = optuna.create_study(storage=storage, study_name=config.study_name, directions=directions,
                                sampler=make_sampler(config, worker_index), pruner=make_pruner(config),
                                load_if_exists=True)
    stored = study.user_attrs.get("config")
    if stored is None:
        study.set_user_attr("config", config.fingerprint())
    elif stored != config.fingerprint():
        changed = sorted(k for k in config.fingerprint() if stored.get(k) != config.fingerprint()[k])
        raise InputError(f"study {config.study_name!r} in this storage was created with different settings "
                         f"({', '.join(f'{k}={stored.get(k)}' for k in changed)}); rerun with those, or use "
                         f"a new --study or --run-dir")
    return study


# -- Ctrl-C ---------------------------------------------------------------------------------------

INTERRUPTED = threading.Event()
"""Set by Ctrl-C. A KeyboardInterrupt raised in the middle of a storage write breaks Optuna (its journal
file lock, cut short while it waits, releases a lock it does not hold and raises RuntimeError, which the
search would catch as a failed trial and go on; a tell cut short raises UnboundLocalError), so Ctrl-C
raises at once only while a candidate trains, and elsewhere stops the worker after the trial in progress."""
_TRAINING = threading.Event()


def interrupt(signum: int, frame: Any) -> None:
    """SIGINT handler: stop a training now, anything else at the next safe point; a second Ctrl-C at once."""
    repeated = INTERRUPTED.is_set()
    INTERRUPTED.set()
    if repeated or _TRAINING.is_set():
        raise KeyboardInterrupt


def interrupt_once(signum: int, frame: Any) -> None:
    """A worker's SIGINT handler: the first Ctrl-C stops it; later ones (a terminal's and the parent's both
    arrive) are ignored, so they cannot cut short recording its trial as failed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    interrupt(signum, frame)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """In the main thread, Python's own SIGINT handler replaced by `interrupt` (workers have theirs)."""
    if threading.current_thread() is not threading.main_thread() or (
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    INTERRUPTED.clear()
    signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextmanager
def training(active: bool = True) -> Iterator[None]:
    """Mark where Ctrl-C may raise at once (active) or not (a storage write inside a training)."""
    if active and INTERRUPTED.is_set():
        raise KeyboardInterrupt
    was = _TRAINING.is_set()
    _set_training(active)
    try:
        yield
    finally:
        _set_training(was)
    if was and INTERRUPTED.is_set():  # back in a training after a deferred Ctrl-C
        raise KeyboardInterrupt


def _set_training(active: bool) -> None:
    if active:
        _TRAINING.set()
    else:
        _TRAINING.clear()


# -- one trial --------------------------------------------------------------------------------------

def is_in_band(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get("in_band"))


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Trained candidates: completed, pruned, or failed by their own error (not by a dead worker)."""
    if not is_in_band(trial):
        return False
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "error" in trial.user_attrs and not trial.user_attrs.get(STALE_ATTR)


class TrialObjective:
    """Sample, count, constrain, and (inside the band only) score one candidate."""

    def __init__(self, config: SearchConfig, space: SearchSpace, proxy_factory: Callable[[], Any],
                 deadline: float | None = None):
        self.config = config
        self.deadline = deadline  # past it, a training candidate stops (pruned) at its next epoch
        self.space = space
        self.band = config.band
        self._proxy_factory = proxy_factory
        self._proxy = None

    @property
    def proxy(self) -> Any:
        if self._proxy is None:
            self._proxy = self._proxy_factory()
        return self._proxy

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        config = self.config
        trial.set_user_attr(WORKER_ATTR, worker_identity())
        spec = self.space.suggest(trial)
        cost = analytic_cost(spec)
        in_band = self.band.contains(cost.flops)
        trial.set_user_attr("flops", cost.flops)
        trial.set_user_attr("params", cost.params)
        trial.set_user_attr("in_band", in_band)
        trial.set_constraint("flops_band", self.band.violation(cost.flops))
        if not in_band:
            return (0.0, float(cost.flops)) if config.multi_objective else 0.0

        reporting = 0.0  # seconds spent in `report` (storage writes, pruning checks), not training

        def report(epoch: int, accuracy: float) -> None:
            nonlocal reporting
            if config.multi_objective:
                return
            begun = time.perf_counter()
            with training(active=False):
                trial.report(reward_for(config.objective, accuracy, cost.flops, config.target_flops), epoch)
                prune = trial.should_prune()
                if prune:
                    trial.set_user_attr("accuracy", accuracy)
            reporting += time.perf_counter() - begun
            if prune:
                raise optuna.TrialPruned(f"pruned after epoch {epoch} at accuracy {accuracy:.4f}")
            if self.deadline is not None and time.time() >= self.deadline:
                with training(active=False):
                    trial.set_user_attr("accuracy", accuracy)
                raise optuna.TrialPruned(f"stopped by the time limit after epoch {epoch}")

        proxy = self.proxy  # the first in-band candidate of a worker loads the data here, before the clock
        started = time.perf_counter()
        try:
            with training():
                accuracy = float(proxy.score(spec, report))
            if not math.isfinite(accuracy):
                raise FloatingPointError(f"the proxy returned {accuracy}")
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C); re-queued for the next run")
            raise
        except Exception as err:
            trial.set_user_attr("error", f"{type(err).__name__}: {' '.join(str(err).split())}"[:500])
            _release_accelerator_memory()
            raise
        finally:
            trial.set_user_attr("proxy_seconds", round(time.perf_counter() - started - reporting, 3))
            trial.set_user_attr("report_seconds", round(reporting, 3))
        reward = reward_for(config.objective, accuracy, cost.flops, config.target_flops)
        trial.set_user_attr("accuracy", accuracy)
        trial.set_user_attr("reward", reward)
        if config.multi_objective:
            return accuracy, float(cost.flops)
        return reward


def _release_accelerator_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def make_proxy_factory(config: SearchConfig, threads: int | None) -> Callable[[], Any]:
    """Data and proxy are built lazily, once per worker, on the first in-band candidate."""

    def factory() -> Any:
        from effnet.nas.data.sources import load_data
        from effnet.nas.proxies import ProxySettings, make_proxy

        data = load_data(config.data, config.proxy_resolution, seed=config.seed)
        settings = ProxySettings(epochs=config.proxy_epochs, resolution=config.proxy_resolution,
                                 batch_size=config.batch_size, device=config.device, seed=config.seed,
                                 threads=threads)
        return make_proxy(config.proxy, data, settings)

    return factory


# -- workers ----------------------------------------------------------------------------------------

@dataclass
class Budget:
    """Stops a worker when the study has trained `trials` candidates or the deadline passes."""

    trials: int
    deadline: float | None
    out_of_band_limit: int
    on_trial: Callable[[optuna.Study], None] | None = None
    stop_reason: str | None = field(default=None)

    def __call__(self, study: optuna.Study, _trial: FrozenTrial) -> None:
        if self.check(study):
            study.stop()

    def check(self, study: optuna.Study) -> str | None:
        """Why the worker should stop now, or None."""
        trials = study.get_trials(deepcopy=False)
        trained = sum(counts_toward_budget(t) for t in trials)
        outside = sum(1 for t in trials if t.state == TrialState.COMPLETE and not is_in_band(t))
        if INTERRUPTED.is_set():
            self.stop_reason = "interrupt"
        elif trained >= self.trials:
            self.stop_reason = "budget"
        elif outside >= self.out_of_band_limit:
            self.stop_reason = "band"
        elif self.deadline is not None and time.time() >= self.deadline:
            self.stop_reason = "timeout"
        if self.on_trial is not None:
            self.on_trial(study)
        return self.stop_reason


def trained_count(study: optuna.Study) -> int:
    return sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))


def run_worker(config: SearchConfig, worker_index: int, deadline: float | None,
               on_trial: Callable[[optuna.Study], None] | None = None, threads: int | None = None) -> str | None:
    """Run trials on the shared study until the budget, the band limit or the deadline stops it, or
    Ctrl-C does (KeyboardInterrupt, once the trial in progress is recorded)."""
    with interrupts_deferred():
        reason = _run_trials(config, worker_index, deadline, on_trial, threads)
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt
    return reason


def _run_trials(config: SearchConfig, worker_index: int, deadline: float | None,
                on_trial: Callable[[optuna.Study], None] | None, threads: int | None) -> str | None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if threads:
        import torch

        torch.set_num_threads(threads)
    study = open_study(config, worker_index)
    space = load_space(config.space)
    recover_stale_trials(study)
    budget = Budget(trials=config.trials, deadline=deadline,
                    out_of_band_limit=max(1000, OUT_OF_BAND_FACTOR * config.trials), on_trial=on_trial)
    if budget.check(study):  # a resumed study may already be done
        return budget.stop_reason
    objective = TrialObjective(config, space, make_proxy_factory(config, threads), deadline)
    timeout = None if deadline is None else max(0.0, deadline - time.time())
    study.optimize(objective, timeout=timeout, callbacks=[budget], catch=(Exception,), gc_after_trial=False)
    return budget.stop_reason or "timeout"


def _worker_process(config: SearchConfig, deadline: float | None, threads: int | None, worker_index: int,
                    gpu: str | None) -> None:
    signal.signal(signal.SIGINT, interrupt_once)
    take_gpu(gpu)
    try:
        run_worker(config, worker_index, deadline, threads=threads)
    except KeyboardInterrupt:
        pass


def worker_threads(config: SearchConfig) -> int | None:
    """Split the CPU cores evenly between local workers unless --threads says otherwise."""
    if config.threads:
        return config.threads
    if config.device == "cuda":
        return max(1, (os.cpu_count() or 1) // config.workers)
    return max(1, (os.cpu_count() or 1) // config.workers) if config.workers > 1 else None


def start_workers(config: SearchConfig, deadline: float | None) -> list[multiprocessing.Process]:
    """Start `config.workers` worker processes on the shared study."""
    return spawn_workers(_worker_process, (config, deadline, worker_threads(config)), config.workers,
                         config.device, "effnet-worker")


def config_dict(config: SearchConfig) -> dict[str, Any]:
    data = asdict(config)
    data["run_dir"] = str(config.run_dir)
    return data


def spec_of_trial(space: SearchSpace, trial: FrozenTrial) -> NetworkSpec:
    return space.spec_from_params(trial.params)
