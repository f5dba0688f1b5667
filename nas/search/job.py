"""The search as a `StudyJob` for the study runner: its settings fingerprint, sampler and pruner, the trial
objective, the budget (trained candidates only) and its progress."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from effnet.nas.latency.table import LatencyTable, machine_digest
from effnet.nas.progress import DetailCallback, Progress
from effnet.nas.search.config import SearchConfig
from effnet.nas.search.pruning import ChanceGate
from effnet.nas.search.trial import TrialObjective, proxy_factory, reported_accuracy, supernet_setup
from effnet.nas.search.trials import best_trial, counts_toward_budget, is_in_band, summarize
from effnet.nas.space.choices import SearchSpace
from effnet.nas.study.chance import ChanceLevel
from effnet.nas.study.study_job import Direction
from effnet.nas.study.trial_attrs import FLOPS_ATTR, LATENCY_ATTR, REWARD_ATTR
from effnet.nas.units import format_size

OUT_OF_BAND_FACTOR = 200
"""At most this many out-of-band samples per trained trial before a search gives up on the band."""


@dataclass(frozen=True)
class SearchJob:
    """The search as a `StudyJob` for the study runner."""

    config: SearchConfig
    space: SearchSpace
    """The space with its base fitted to the data (`effnet.nas.space.fit`)."""
    chance: ChanceLevel | None = None
    """The proxy's chance level on its validation split; with it, pruning waits for the proxy to separate
    candidates from chance (`effnet.nas.search.pruning`)."""
    kind: str = "search"
    table: LatencyTable | None = None
    """The latency table of this machine for the fitted space (a search with a latency target)."""

    def fingerprint(self) -> dict[str, Any]:
        c = self.config
        return {
            "target_flops": c.target_flops,
            "flops_tolerance": c.flops_tolerance,
            "objective": c.objective,
            "space": self.space.name,
            "space_digest": self.space.digest(),
            "classes": self.space.base.num_classes,
            "resolution": self.space.base.resolution,
            "proxy": c.proxy.fingerprint(),
            "seed": c.study.seed,
            **self._latency_fingerprint(),
        }

    def _latency_fingerprint(self) -> dict[str, Any]:
        """A latency target's settings, which a resumed study and every worker must share, the machine among
        them (a worker on other hardware would predict other latencies, and the rewards would not compare);
        none without one: a FLOPs search's fingerprint is what it always was."""
        c = self.config
        if c.target_latency_s is None:
            return {}
        return {
            "target_latency_s": c.target_latency_s,
            "latency_tolerance": c.latency_tolerance,
            "latency": dataclasses.asdict(c.latency),
            "latency_machine": machine_digest(c.latency),
        }

    def directions(self) -> list[Direction]:
        return ["maximize", "minimize"] if self.config.multi_objective else ["maximize"]

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        c = self.config
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if c.sampler == "random":
                return optuna.samplers.RandomSampler(seed=seed)
            if c.sampler == "nsga2" or c.multi_objective:
                return optuna.samplers.NSGAIISampler(seed=seed)
            return optuna.samplers.TPESampler(
                seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=10
            )

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
        accuracy = functools.partial(reported_accuracy, c.objective, c.cost_attr, c.cost_target)
        return ChanceGate(pruner, self.chance, accuracy)

    def prepare(self, study: optuna.Study) -> None:
        pass

    def objective(
        self,
        study: optuna.Study,
        deadline: float | None,
        threads: int | None,
        device: str,
        on_detail: DetailCallback | None = None,
    ) -> Callable[[optuna.Trial], Any]:
        runtime = self.config.proxy_runtime(device, threads)
        supernet = supernet_setup(self.config, self.space)
        return TrialObjective(
            self.config,
            self.space,
            proxy_factory(self.config.proxy, runtime, supernet),
            deadline,
            on_detail,
            self.table,
        )

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
        summary = summarize(study)
        best = best_trial(study, self.config)
        status = f"outside band {summary.outside_band} · pruned {summary.pruned} · failed {summary.failed}"
        if best is not None:
            status += (
                f" · best reward {best.user_attrs.get(REWARD_ATTR, 0):.4f}"
                f" at {format_size(best.user_attrs[FLOPS_ATTR])} FLOPs"
            )
            if LATENCY_ATTR in best.user_attrs:
                status += f", {1000 * best.user_attrs[LATENCY_ATTR]:.2f} ms"
        return Progress(done=min(summary.trained, self.config.trials), total=self.config.trials, status=status)
