"""One trial of a search: sample a candidate, count its FLOPs, set the band as an Optuna constraint, and (inside the
band only) score it with the accuracy proxy, reporting per epoch to the pruner; the proxy, with its data (and the
supernet trained before the study), built once per worker on its first candidate in the band."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from effnet.nas.latency.table import LatencyTable
from effnet.nas.net.flops import analytic_cost
from effnet.nas.progress import DetailCallback
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.data import load_proxy_data
from effnet.nas.proxies.factory import make_proxy
from effnet.nas.proxies.supernet_training import SupernetSetup
from effnet.nas.search.config import SearchConfig
from effnet.nas.search.reward import reward_for
from effnet.nas.signals import training
from effnet.nas.space.choices import SearchSpace
from effnet.nas.space.reach import space_reach
from effnet.nas.study.trial_attrs import (
    ACCURACY_ATTR,
    EPOCHS_TRAINED_ATTR,
    ERROR_ATTR,
    FAIL_REASON_ATTR,
    FLOPS_ATTR,
    IN_BAND_ATTR,
    INTERRUPTED_ATTR,
    LATENCY_ATTR,
    PARAMS_ATTR,
    REPORT_SECONDS_ATTR,
    REWARD_ATTR,
    WORK_SECONDS_ATTR,
)
from effnet.nas.units import format_size

LATE = "stopped by the time limit; queued again for the next run"


class TimeLimitReached(Exception):
    """A candidate's training cut short by the run's time limit: the trial fails as one a stop signal cut short
    (marked `INTERRUPTED_ATTR`), so it counts toward no budget and the next run trains it again. Recorded as pruned,
    it filled the budget with a candidate never trained to the end, and a rerun of a search whose only candidate
    ended so had nothing left to do and no b0 to write."""


class TrialObjective:
    """Sample, count, constrain, and (inside the band only) score one candidate."""

    def __init__(
        self,
        config: SearchConfig,
        space: SearchSpace,
        proxy_factory: Callable[[], Any],
        deadline: float | None = None,
        on_detail: DetailCallback | None = None,
        table: LatencyTable | None = None,
    ):
        self.config = config
        self.table = table
        """Predicts the candidates' latency (a search with a latency target)."""
        self.deadline = deadline  # past it, a training candidate stops (pruned) at its next epoch
        self.on_detail = on_detail
        self.space = space
        self.band = config.band
        self.latency_band = config.latency_band
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
        in_band = self.band is None or self.band.contains(cost.flops)
        trial.set_user_attr(FLOPS_ATTR, cost.flops)
        trial.set_user_attr(PARAMS_ATTR, cost.params)
        if self.band is not None:
            trial.set_constraint("flops_band", self.band.violation(cost.flops))
        weighed: float = cost.flops  # what the objective weighs accuracy against
        if self.latency_band is not None:
            assert self.table is not None, "a search with a latency target predicts from a latency table"
            weighed = self.table.predict(spec)
            trial.set_user_attr(LATENCY_ATTR, weighed)
            trial.set_constraint("latency_band", self.latency_band.violation(weighed))
            in_band = in_band and self.latency_band.contains(weighed)
        trial.set_user_attr(IN_BAND_ATTR, in_band)
        if not in_band:
            return (0.0, float(weighed)) if config.multi_objective else 0.0

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
                    trial.report(reward_for(config.objective, accuracy, weighed, config.cost_target), epoch)
                    prune = trial.should_prune()
                late = self.deadline is not None and time.time() >= self.deadline and (epochs is None or epoch < epochs)
                if prune:
                    trial.set_user_attr(ACCURACY_ATTR, accuracy)
                elif late:
                    trial.set_user_attr(INTERRUPTED_ATTR, True)
                    trial.set_user_attr(FAIL_REASON_ATTR, LATE)
            reporting += time.perf_counter() - begun
            if prune:
                raise optuna.TrialPruned(f"pruned after epoch {epoch} at accuracy {accuracy:.4f}")
            if late:
                raise TimeLimitReached(f"{LATE} (after epoch {epoch})")

        proxy = self.proxy  # the first in-band candidate of a worker loads the data here, before the clock
        tell(f"training epoch 1/{epochs}" if epochs is not None else "scoring")
        started = time.perf_counter()
        try:
            with training():
                accuracy = float(proxy.score(spec, report))
            if not math.isfinite(accuracy):
                raise FloatingPointError(f"the proxy returned {accuracy}")
        except (optuna.TrialPruned, TimeLimitReached, KeyboardInterrupt):
            raise
        except Exception as err:
            trial.set_user_attr(ERROR_ATTR, f"{type(err).__name__}: {' '.join(str(err).split())}"[:500])
            _release_accelerator_memory()
            raise
        finally:
            trial.set_user_attr(WORK_SECONDS_ATTR, round(time.perf_counter() - started - reporting, 3))
            trial.set_user_attr(REPORT_SECONDS_ATTR, round(reporting, 3))
            trial.set_user_attr(EPOCHS_TRAINED_ATTR, trained)
        reward = reward_for(config.objective, accuracy, weighed, config.cost_target)
        trial.set_user_attr(ACCURACY_ATTR, accuracy)
        trial.set_user_attr(REWARD_ATTR, reward)
        if config.multi_objective:
            return accuracy, float(weighed)
        return reward


def _release_accelerator_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def reported_accuracy(objective: str, cost_attr: str, target: float, trial: FrozenTrial, value: float) -> float | None:
    """The accuracy behind a reward a candidate reported: the reward over the factor of its cost (FLOPs or
    predicted latency, `cost_attr`, against `target`); None where the trial has no such cost."""
    cost = trial.user_attrs.get(cost_attr)
    if not cost:
        return None
    return value / reward_for(objective, 1.0, cost, target)


def proxy_factory(
    proxy: ProxyConfig, runtime: ProxyRuntime, supernet: SupernetSetup | None = None
) -> Callable[[], Any]:
    """Data and proxy are built lazily, once per worker, on the first in-band candidate (the supernet proxy
    loads the supernet trained before the study started)."""

    def factory() -> Any:
        return make_proxy(proxy, load_proxy_data(proxy, runtime), runtime, supernet)

    return factory


def supernet_setup(config: SearchConfig, space: SearchSpace) -> SupernetSetup | None:
    """The search's supernet (its paths drawn from the search's FLOPs band, or without one from every FLOP count
    of the space), None for the other proxies."""
    if config.proxy.name != "supernet":
        return None
    band = config.band
    if band is None:
        reach = space_reach(space)
        return SupernetSetup(space, reach.min_flops, reach.max_flops, config.study.run_dir)
    return SupernetSetup(space, band.low, band.high, config.study.run_dir)
