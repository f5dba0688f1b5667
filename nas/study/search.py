"""The architecture search: an Optuna study over a search space, one or many workers, resumable.

Each trial samples a spec, counts its FLOPs analytically and sets the FLOPs band as an Optuna
constraint before any training; a candidate outside the band is recorded (so the sampler learns
where the band is) but never trained. Candidates inside it are scored by the accuracy proxy,
reporting per epoch to the pruner. The budget (`trials`) counts trained candidates only. The study
itself (storage, workers, seeds, signals, dead workers) is the study runner's
(`effnet.nas.study.runner`); `search` runs it and writes the run directory.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from effnet.nas import checks
from effnet.nas.net.flops import analytic_cost
from effnet.nas.units import format_size
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.data.facts import data_facts
from effnet.nas.data.sources import DataSplits, data_record
from effnet.nas.errors import SettingError
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.data import load_proxy_data
from effnet.nas.outputs import claim_run_dir, holding_run_dirs
from effnet.nas.record import write_run_record
from effnet.nas.study.chance import ChanceLevel, chance_level
from effnet.nas.space.fit import MAX_CLASSES, DataFit, fit_space
from effnet.nas.study.objective import OBJECTIVES, FlopsBand, reward_for
from effnet.nas.study.pruning import ChanceGate
from effnet.nas.progress import DetailCallback, Progress, ProgressCallback
from effnet.nas.space.reach import check_band
from effnet.nas.study.recovery import STALE_ATTR
from effnet.nas.study.runner import StudyConfig, check_settings, run_study
from effnet.nas.study.search_supernet import supernet_setup, train_before_study
from effnet.nas.signals import training
from effnet.nas.space.choices import SearchSpace
from effnet.nas.space.load import load_space

if TYPE_CHECKING:
    from effnet.nas.proxies.supernet_training import SupernetSetup

SAMPLERS = ("tpe", "random", "nsga2")
ACCURACY_PROXIES = ("train", "supernet")
"""Proxies whose score is a validation accuracy, which a chance level applies to."""
PRUNERS = ("hyperband", "median", "none")
OUT_OF_BAND_FACTOR = 200
"""At most this many out-of-band samples per trained trial before a search gives up on the band."""
MAX_RESOLUTION = 4096
"""The largest `--resolution` (as for `--proxy-resolution`)."""


@dataclass(frozen=True)
class SearchConfig:
    """A search: target and band, objective, space, budget, sampler and pruner, the accuracy proxy and
    where the study lives (`study`: run directory, storage, workers, seed, time limit, device)."""

    target_flops: int = 400_000_000
    flops_tolerance: float = 0.1
    objective: str = "reward"
    space: str | None = None
    """A shipped space (`efficientnet`, the default, or `mnasnet`) or a space file's path."""
    trials: int = 30
    sampler: str = "tpe"
    pruner: str = "hyperband"
    proxy: ProxyConfig = ProxyConfig()
    study: StudyConfig = StudyConfig(run_dir=Path("runs/search"), name="search")
    classes: int | None = None
    """The networks' class count (None: the data's)."""
    resolution: int | None = None
    """The base network's resolution, where the FLOPs target is counted (None: derived from the space and the
    data, `effnet.nas.data.facts.RESOLUTION_RULE`). The proxy trains at `proxy.resolution` whatever it is."""

    def __post_init__(self) -> None:
        checks.whole("target_flops", self.target_flops, low=1)
        checks.number("flops_tolerance", self.flops_tolerance, low=0, high=1, low_open=True, high_open=True)
        checks.choice("objective", self.objective, OBJECTIVES)
        checks.choice("sampler", self.sampler, SAMPLERS)
        checks.choice("pruner", self.pruner, PRUNERS)
        checks.whole("trials", self.trials, low=1, high=10_000_000)
        if self.classes is not None:
            checks.whole("classes", self.classes, low=2, high=MAX_CLASSES)
        if self.resolution is not None:
            checks.whole("resolution", self.resolution, low=8, high=MAX_RESOLUTION)

    @property
    def band(self) -> FlopsBand:
        return FlopsBand(self.target_flops, self.flops_tolerance, hard=self.objective == "hard")

    @property
    def multi_objective(self) -> bool:
        return self.objective == "pareto"

    def settings(self) -> dict[str, Any]:
        """Every setting as plain data, for the run record."""
        data = dataclasses.asdict(self)
        data["study"] = {**data["study"], "run_dir": str(self.study.run_dir), "storage": self.study.storage_label}
        return data


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
                 deadline: float | None = None, on_detail: DetailCallback | None = None):
        self.config = config
        self.deadline = deadline  # past it, a training candidate stops (pruned) at its next epoch
        self.on_detail = on_detail
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
        epochs = config.proxy.epochs if config.proxy.name == "train" else None

        def tell(what: str) -> None:
            if self.on_detail is not None:
                with training(active=False):
                    self.on_detail(f"trial {trial.number} ({format_size(cost.flops)} FLOPs): {what}")
        trained = 0  # epochs trained, for the seconds per FLOP and epoch that mark a slow candidate

        def report(epoch: int, accuracy: float) -> None:
            nonlocal reporting, trained
            begun = time.perf_counter()
            trained = epoch
            if epochs is not None and epoch < epochs:
                tell(f"epoch {epoch}/{epochs} accuracy {accuracy:.4f}, training epoch {epoch + 1}")
            prune = False
            with training(active=False):
                if not config.multi_objective:  # Optuna prunes single-objective studies only
                    trial.report(reward_for(config.objective, accuracy, cost.flops, config.target_flops), epoch)
                    prune = trial.should_prune()
                late = self.deadline is not None and time.time() >= self.deadline
                if prune or late:
                    trial.set_user_attr("accuracy", accuracy)
            reporting += time.perf_counter() - begun
            if prune:
                raise optuna.TrialPruned(f"pruned after epoch {epoch} at accuracy {accuracy:.4f}")
            if late:
                raise optuna.TrialPruned(f"stopped by the time limit after epoch {epoch}")

        proxy = self.proxy  # the first in-band candidate of a worker loads the data here, before the clock
        tell(f"training epoch 1/{epochs}" if epochs is not None else "scoring")
        started = time.perf_counter()
        try:
            with training():
                accuracy = float(proxy.score(spec, report))
            if not math.isfinite(accuracy):
                raise FloatingPointError(f"the proxy returned {accuracy}")
        except (optuna.TrialPruned, KeyboardInterrupt):
            raise
        except Exception as err:
            trial.set_user_attr("error", f"{type(err).__name__}: {' '.join(str(err).split())}"[:500])
            _release_accelerator_memory()
            raise
        finally:
            trial.set_user_attr("proxy_seconds", round(time.perf_counter() - started - reporting, 3))
            trial.set_user_attr("report_seconds", round(reporting, 3))
            trial.set_user_attr("epochs_trained", trained)
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


def reported_accuracy(objective: str, target_flops: int, trial: FrozenTrial, value: float) -> float | None:
    """The accuracy behind a reward a candidate reported: the reward over its FLOPs factor (None without FLOPs)."""
    flops = trial.user_attrs.get("flops")
    if not flops:
        return None
    return value / reward_for(objective, 1.0, flops, target_flops)


def proxy_factory(proxy: ProxyConfig, runtime: ProxyRuntime,
                  supernet: "SupernetSetup | None" = None) -> Callable[[], Any]:
    """Data and proxy are built lazily, once per worker, on the first in-band candidate (the supernet proxy
    loads the supernet trained before the study started)."""

    def factory() -> Any:
        from effnet.nas.proxies.factory import make_proxy

        return make_proxy(proxy, load_proxy_data(proxy, runtime), runtime, supernet)

    return factory


# -- the study job ----------------------------------------------------------------------------------

def trained_count(study: optuna.Study) -> int:
    return sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))


@dataclass(frozen=True)
class StudySummary:
    trained: int
    completed: int
    pruned: int
    failed: int
    outside_band: int
    running: int


def summarize(study: optuna.Study) -> StudySummary:
    trials = study.get_trials(deepcopy=False)
    in_band = [t for t in trials if is_in_band(t)]
    return StudySummary(
        trained=sum(counts_toward_budget(t) for t in trials),
        completed=sum(t.state == TrialState.COMPLETE for t in in_band),
        pruned=sum(t.state == TrialState.PRUNED for t in in_band),
        failed=sum(t.state == TrialState.FAIL for t in trials),
        outside_band=sum(t.state == TrialState.COMPLETE and not is_in_band(t) for t in trials),
        running=sum(t.state == TrialState.RUNNING for t in trials),
    )


@dataclass(frozen=True)
class SearchJob:
    """The search as a `StudyJob` for the study runner."""

    config: SearchConfig
    space: SearchSpace
    """The space with its base fitted to the data (`effnet.nas.space.fit`)."""
    chance: ChanceLevel | None = None
    """The proxy's chance level on its validation split; with it, pruning waits for the proxy to separate
    candidates from chance (`effnet.nas.study.pruning`)."""
    kind: str = "search"

    def fingerprint(self) -> dict[str, Any]:
        c = self.config
        return {"target_flops": c.target_flops, "flops_tolerance": c.flops_tolerance, "objective": c.objective,
                "space": self.space.name, "space_digest": self.space.digest(),
                "classes": self.space.base.num_classes, "resolution": self.space.base.resolution,
                "proxy": c.proxy.fingerprint(), "seed": c.study.seed}

    def directions(self) -> list[str]:
        return ["maximize", "minimize"] if self.config.multi_objective else ["maximize"]

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        c = self.config
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if c.sampler == "random":
                return optuna.samplers.RandomSampler(seed=seed)
            if c.sampler == "nsga2" or c.multi_objective:
                return optuna.samplers.NSGAIISampler(seed=seed)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                              n_startup_trials=10)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        c = self.config
        if c.multi_objective or c.pruner == "none" or c.proxy.name != "train" or c.proxy.epochs == 1:
            return optuna.pruners.NopPruner()  # (one epoch: the only report is the final score)
        if c.pruner == "median":
            pruner: optuna.pruners.BasePruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
        else:
            pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=c.proxy.epochs, reduction_factor=3)
        if self.chance is None:
            return pruner
        return ChanceGate(pruner, self.chance, functools.partial(reported_accuracy, c.objective, c.target_flops))

    def prepare(self, study: optuna.Study) -> None:
        pass

    def objective(self, study: optuna.Study, deadline: float | None, threads: int | None, device: str,
                  on_detail: DetailCallback | None = None) -> Callable[[optuna.Trial], Any]:
        runtime = self.config.study.proxy_runtime(device, threads)
        supernet = supernet_setup(self.config, self.space)
        return TrialObjective(self.config, self.space, proxy_factory(self.config.proxy, runtime, supernet), deadline,
                              on_detail)

    def stop_reason(self, study: optuna.Study) -> str | None:
        """The budget is met once the study holds `trials` trained candidates and no retry waits: a retry
        (of a candidate a dead worker or a stop signal cut short) still runs after the budget is met."""
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if sum(counts_toward_budget(t) for t in trials) >= self.config.trials and not waiting:
            return "budget"
        outside = sum(1 for t in trials if t.state == TrialState.COMPLETE and not is_in_band(t))
        if outside >= max(1000, OUT_OF_BAND_FACTOR * self.config.trials):
            return "band"
        return None

    def progress(self, study: optuna.Study) -> Progress:
        from effnet.nas.study.report import best_trial

        summary = summarize(study)
        best = best_trial(study, self.config)
        status = f"outside band {summary.outside_band} · pruned {summary.pruned} · failed {summary.failed}"
        if best is not None:
            status += (f" · best reward {best.user_attrs.get('reward', 0):.4f}"
                       f" at {format_size(best.user_attrs['flops'])} FLOPs")
        return Progress(done=min(summary.trained, self.config.trials), total=self.config.trials, status=status)


# -- the search -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """One trained candidate as the result lists it."""

    trial: int
    reward: float | None
    accuracy: float | None
    flops: int
    params: int
    architecture: str


@dataclass(frozen=True)
class SearchResult:
    """What `search` found and wrote: the certified best spec (None if no candidate in the band finished
    training yet), the best candidates, the trial counts and the files of the run directory."""

    config: SearchConfig
    best_spec: NetworkSpec | None
    best_flops: int | None
    """The best spec's FLOPs by fvcore (the certification), None without a best spec."""
    top: list[Candidate]
    summary: StudySummary
    stop_reason: str
    """budget, band (too many samples outside it), timeout, interrupt, or workers ended."""
    signal: int | None
    elapsed_s: float
    files: dict[str, Path] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    """What the proxy trained on: split sizes, and the files left out because they do not decode."""
    notes: list[str] = field(default_factory=list)
    """What the user should know about the run (`StudyRun.notes`): a repaired journal, a failed worker."""
    supernet: dict[str, Any] | None = None
    """The supernet proxy's training: its checkpoint, steps done of all, seconds in all and in this run."""
    fit: DataFit | None = None
    """The class count and resolution the networks were fitted to, and where each came from."""
    chance: ChanceLevel | None = None
    """The proxy's chance level on its validation split (None for the zero-cost scores, which are no accuracy)."""

    threads: dict[str, Any] | None = None
    """CPU threads per worker and why (`ThreadChoice.record`); None when the run trained nothing."""

    @property
    def warnings(self) -> list[str]:
        """What speaks against the result: the best candidate's accuracy within the margin of chance."""
        best = self.top[0].accuracy if self.top else None
        if self.chance is None or best is None:
            return []
        return [self.chance.warning(best)] if self.chance.near(best) else []

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain data (the command's `--json`)."""
        c, s = self.config, self.summary
        data: dict[str, Any] = {
            "run_dir": str(c.study.run_dir), "study": c.study.name, "storage": c.study.storage_label,
            "stop_reason": self.stop_reason, "elapsed_s": round(self.elapsed_s, 1),
            "target_flops": c.target_flops, "band": [c.band.low, c.band.high],
            "trials_completed": s.completed, "trials_pruned": s.pruned, "trials_failed": s.failed,
            "trials_outside_band": s.outside_band, "trials_csv": str(self.files["trials_csv"]),
            "plots": [str(self.files["history_plot"]), str(self.files["accuracy_plot"])],
            "report": str(self.files["report"]), "best_spec": None,
            "data": self.data, "notes": self.notes, "supernet": self.supernet,
            "classes": self.fit.classes if self.fit else None, "resolution": self.fit.resolution if self.fit else None,
            "fit": self.fit.record() if self.fit else None, "chance": self.chance.record() if self.chance else None,
            "warnings": self.warnings, "threads": self.threads,
        }
        if self.best_spec is not None:
            best = self.top[0]
            data.update({"best_spec": str(self.files["best_spec"]), "trial": best.trial, "flops": self.best_flops,
                         "params": best.params, "accuracy": best.accuracy, "reward": best.reward,
                         "architecture": self.best_spec.summary})
        return data


def fitted_space(config: SearchConfig) -> tuple[SearchSpace, DataFit]:
    """The search's space with its base fitted to the data (class count, resolution), checked: the FLOPs band
    reachable and the largest network within the cost limits at that resolution."""
    space = load_space(config.space)
    facts = data_facts(config.proxy.data, config.study.seed)
    if config.classes is not None and config.classes < facts.classes:
        raise SettingError("classes", f"is {config.classes}, but the data {facts.source} has {facts.classes} "
                                      f"classes; give at least {facts.classes} or leave it out")
    space, fit = fit_space(space, facts, config.classes, config.resolution)
    reach = check_band(space, config.band.low, config.band.high)
    problem = reach.largest.problem()
    if problem is not None:
        raise SettingError("resolution", f"{fit.resolution} px makes the {space.name} space's largest network "
                                         f"{problem}; use a lower resolution")
    return space, fit


def check_search(config: SearchConfig, on_progress: ProgressCallback | None = None,
                 notes: list[str] | None = None) -> tuple[SearchSpace, DataFit, DataSplits]:
    """Everything that can be refused before the study starts (the space fitted to the data, a resumed study's
    settings, the run directory), and the proxy's data, its caches built here once for every worker. A repair
    of the study's storage is told in `notes`."""
    space, fit = fitted_space(config)
    config.study.worker_device()
    config.study.check_workers()
    claim_run_dir(config.study.run_dir, "search", config.study.force, own=config.study.journal_in_run_dir())
    check_settings(SearchJob(config, space), config.study, notes)
    return space, fit, load_proxy_data(config.proxy, config.study.proxy_runtime(), on_progress)


@holding_run_dirs()  # the run directory check_search claims is held to the end
def search(config: SearchConfig, on_progress: ProgressCallback | None = None) -> SearchResult:
    """Run (or resume) the search and write its run directory: `b0.yaml` (the best candidate, its FLOPs
    certified by fvcore), `trials.csv`, plots, `report.html` and `run.yaml` (and for the supernet proxy its
    checkpoint, trained first). Progress reaches `on_progress`; a stop signal ends the run early with what
    completed written (`stop_reason` "interrupt")."""
    from effnet.nas.study.report import write_search_files

    notes: list[str] = []
    space, fit, data = check_search(config, on_progress, notes)
    accuracy = config.proxy.name in ACCURACY_PROXIES  # a chance level means nothing to a zero-cost score
    chance = chance_level(data.val.labels, data.num_classes) if accuracy else None
    job, started = SearchJob(config, space, chance), time.time()
    supernet = train_before_study(job, data, on_progress)  # None but for the supernet proxy
    if supernet is not None and supernet.stopped is not None:
        run = supernet.stopped
    else:
        run = run_study(job, config.study if supernet is None else supernet.study, on_progress)
    run.elapsed_s = time.time() - started  # the supernet's training included
    run.notes[:0] = notes
    result = dataclasses.replace(write_search_files(run, config, space, fit, chance), data=data_record(data),
                                 supernet=supernet.record() if supernet is not None else None)
    write_run_record(config.study.run_dir, "search", {**config.settings(), "data": result.data}, result.as_dict())
    return result
