"""The grid as a study: one queued trial per evaluation, a distinct network and one of its K repeats.

Twin points (`effnet.scaling.twins`) build one network, so the grid queues one trial per distinct network and
repeat, with the parameters of the network's first point and the marks `queued_point` and `queued_repeat`.
Workers never sample: each takes a queued trial (the storage hands each to exactly one process), scores it,
and stops when none is left; the study runner (`effnet.nas.study.runner`) runs them, so the grid resumes,
shares its study between workers and machines, and recovers the trials of dead workers like the search does.
Every twin reads its network's scores from those trials (`effnet.scaling.grid_results`), so a twin is never
trained, in any worker or any later run. Optuna's `GridSampler` is not used: with several workers it
evaluates points twice and raises after the last point.

Evaluations enter the queue in two places, both idempotent and safe to race: the run that finds one without
a live or finished trial queues it (`queue_missing_evaluations`), and the recovery of a dead worker queues its
trial again. Should two runs queue the same evaluation at once, or a trial of a twin point come to stand for
it, the claim rule `earlier_twin` still lets only one trial train: a taken trial stands down when its
evaluation (network and repeat) already has an evaluated trial, or a waiting or running one with a lower
number. A worker that asks for a trial just as the queue runs dry gets a fresh one with no point; it stands
down too.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from effnet.nas.net.spec import NetworkSpec
from effnet.nas.progress import DetailCallback, Progress
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.data import load_proxy_data
from effnet.nas.study.proxy_runtime import proxy_runtime
from effnet.nas.study.study_job import Direction
from effnet.nas.study.trial_attrs import (
    DUPLICATE_OF_ATTR,
    ERROR_ATTR,
    FLOPS_ATTR,
    FLOPS_RATIO_ATTR,
    NETWORK_ATTR,
    PARAMS_ATTR,
    POINT_ATTR,
    PRODUCT_ATTR,
    PROXY_RESOLUTION_ATTR,
    REPEAT_ATTR,
    SEED_ATTR,
    SURPLUS_ATTR,
    WORK_SECONDS_ATTR,
)
from effnet.scaling.grid_results import (
    Evaluation,
    evaluations_done,
    is_evaluated,
    is_live,
    network_results,
    ranked,
    trial_evaluation,
)
from effnet.scaling.grid_space import COEFFICIENTS, GridConfig, GridPoint, point_spec
from effnet.scaling.twins import twin_groups

Scorer = Callable[[NetworkSpec, int, int], float]
"""scorer(spec, proxy resolution, seed) -> score."""


def queue_missing_evaluations(study: optuna.Study, points: tuple[GridPoint, ...], repeats: int) -> int:
    """Queue a trial for every evaluation without a waiting, running or evaluated trial, repeat by repeat (every
    network once before any twice); returns how many."""
    network_of = {p.key: p.network for p in points}
    covered = {
        trial_evaluation(t, network_of) for t in study.get_trials(deepcopy=False) if is_live(t) or is_evaluated(t)
    }
    groups = twin_groups(points)
    added = 0
    for repeat in range(repeats):
        for group in groups:
            if (group.network, repeat) in covered:
                continue
            study.enqueue_trial(group.points[0].params_dict(), user_attrs={POINT_ATTR: True, REPEAT_ATTR: repeat})
            added += 1
    return added


def earlier_twin(
    study: optuna.Study, number: int, evaluation: Evaluation, network_of: Mapping[tuple, str]
) -> int | None:
    """Another trial of the same evaluation that takes precedence over trial `number` (module notes)."""
    for other in study.get_trials(deepcopy=False):
        if other.number == number or trial_evaluation(other, network_of) != evaluation:
            continue
        if is_evaluated(other) or (is_live(other) and other.number < number):
            return other.number
    return None


def evaluations_taken(study: optuna.Study, network_of: Mapping[tuple, str]) -> int:
    """Evaluations done or under way: what `max_points` counts."""
    return len(
        {
            trial_evaluation(t, network_of)
            for t in study.get_trials(deepcopy=False)
            if is_evaluated(t) or t.state == TrialState.RUNNING
        }
        - {None}
    )


class PointScorer:
    """Scores networks with the chosen proxy: one proxy per resolution (its data split by the study's seed, its
    loader's processes serving every repeat), each repeat a training of its own seed."""

    def __init__(self, proxy: ProxyConfig, runtime: ProxyRuntime):
        self.config = proxy
        self.runtime = runtime
        self._proxies: dict[int, Any] = {}

    def proxy(self, resolution: int) -> Any:
        if resolution not in self._proxies:
            from effnet.nas.proxies.factory import make_proxy

            config = dataclasses.replace(self.config, resolution=resolution)
            self._proxies[resolution] = make_proxy(config, load_proxy_data(config, self.runtime), self.runtime)
        return self._proxies[resolution]

    def __call__(self, spec: NetworkSpec, resolution: int, seed: int) -> float:
        return float(self.proxy(resolution).score(spec, seed=seed))


class PointObjective:
    """Scores the evaluation of a taken trial, unless another trial takes precedence or it has none."""

    def __init__(
        self,
        config: GridConfig,
        study: optuna.Study,
        points: tuple[GridPoint, ...],
        scorer: Scorer,
        on_detail: DetailCallback | None = None,
    ):
        self.config = config
        self.on_detail = on_detail
        self.study = study
        self.scorer = scorer
        self.points = {p.key: p for p in points}
        self.network_of = {p.key: p.network for p in points}

    def __call__(self, trial: optuna.Trial) -> float:
        if not trial.user_attrs.get(POINT_ATTR):
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise optuna.TrialPruned("no grid point was left to take")
        distributions = self.config.distributions()
        alpha, beta, gamma = (
            trial.suggest_float(name, distributions[name].low, distributions[name].high) for name in COEFFICIENTS
        )
        point = self.points[(alpha, beta, gamma)]
        repeat = int(trial.user_attrs.get(REPEAT_ATTR, 0))
        trial.set_user_attr(NETWORK_ATTR, point.network)
        twin = earlier_twin(self.study, trial.number, (point.network, repeat), self.network_of)
        if twin is not None:
            trial.set_user_attr(DUPLICATE_OF_ATTR, twin)
            raise optuna.TrialPruned(f"trial {twin} evaluates this network")
        seed = self.config.seed(repeat)
        for name, value in (
            (PRODUCT_ATTR, point.product),
            (FLOPS_ATTR, point.flops),
            (PARAMS_ATTR, point.params),
            (FLOPS_RATIO_ATTR, point.flops_ratio),
            (PROXY_RESOLUTION_ATTR, point.proxy_resolution),
            (SEED_ATTR, seed),
        ):
            trial.set_user_attr(name, value)
        spec = point_spec(self.config.base, point.alpha, point.beta, point.gamma, self.config.grid.phi)
        from effnet.nas.signals import training

        if self.on_detail is not None:
            with training(active=False):
                self.on_detail(
                    f"trial {trial.number}: scoring α={point.alpha:g} β={point.beta:g} γ={point.gamma:g} "
                    f"(repeat {repeat + 1}/{self.config.repeats})"
                )
        started = time.perf_counter()
        try:
            with training():
                score = self.scorer(spec, point.proxy_resolution, seed)
        except KeyboardInterrupt:
            raise
        except Exception as err:
            trial.set_user_attr(ERROR_ATTR, f"{type(err).__name__}: {' '.join(str(err).split())}"[:500])
            raise
        finally:
            trial.set_user_attr(WORK_SECONDS_ATTR, round(time.perf_counter() - started, 3))
        return score


@dataclass(frozen=True)
class GridJob:
    """The grid as a `StudyJob` for the study runner; `limit` is the evaluations-taken count at which this
    run stops (None: none); `scorer(spec, resolution, seed)` replaces the proxy (None: `PointScorer`)."""

    config: GridConfig
    points: tuple[GridPoint, ...]
    limit: int | None = None
    scorer: Scorer | None = None
    kind: str = "grid"

    @property
    def network_of(self) -> dict[tuple, str]:
        return {p.key: p.network for p in self.points}

    def fingerprint(self) -> dict[str, Any]:
        return self.config.fingerprint()

    def directions(self) -> list[Direction]:
        return ["maximize"]

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=seed)  # queued points only; it never samples one

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.NopPruner()

    def prepare(self, study: optuna.Study) -> None:
        queue_missing_evaluations(study, self.points, self.config.repeats)

    def objective(
        self,
        study: optuna.Study,
        deadline: float | None,
        threads: int | None,
        device: str,
        on_detail: DetailCallback | None = None,
    ) -> Callable[[optuna.Trial], Any]:
        runtime = proxy_runtime(self.config.study, device, threads)
        return PointObjective(
            self.config, study, self.points, self.scorer or PointScorer(self.config.proxy, runtime), on_detail
        )

    def stop_reason(self, study: optuna.Study) -> str | None:
        if self.limit is not None and evaluations_taken(study, self.network_of) >= self.limit:
            return "max-points"
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return "done"
        return None

    def progress(self, study: optuna.Study) -> Progress:
        networks = network_results(study, self.config, self.points)
        order = ranked(networks)
        status = f"running {sum(n.state == 'running' for n in networks)}"
        if order:
            p = order[0].chosen
            status += f" · best {order[0].mean:.4f} at α={p.alpha:g} β={p.beta:g} γ={p.gamma:g}"
        return Progress(done=evaluations_done(networks), total=len(networks) * self.config.repeats, status=status)
