"""`--rescore-top K`: the supernet screens, the train proxy decides.

Once the supernet's study has its trained candidates, the top K in the band by reward are trained again by the
train proxy (the search's `epochs`, no pruning) in a second study beside the first, named `<study>-rescore`, in
the same storage: its trials are queued with the screening's parameters (Optuna's `enqueue_trial`), so a
resumed run, or more workers, go on with those left and never sample others. b0 is the best of them by the
train proxy's reward.

Under a time limit the screening stops once what is left would no longer hold the rescoring's K trainings
(`ScreeningJob`), each expected to take its training steps, timed by the supernet's own training (whose steps
run the same data and batch through one path, `uniform`, or the sandwich's paths, each about a stand-alone
network's step), plus one evaluation per epoch, timed as the median in-band screening trial (a path built,
its BatchNorm recomputed, the validation split scored), and once the set-up of a worker (its data and proxy),
timed as what the screening's first trial took beyond that median. The screening keeps at least a quarter of the time
the supernet's training left it.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from effnet.nas.progress import ProgressCallback
from effnet.nas.proxies.supernet_recipes import RANDOM_PATHS
from effnet.nas.proxies.supernet_training import SupernetTraining
from effnet.nas.search.config import SearchConfig
from effnet.nas.search.job import SearchJob
from effnet.nas.search.trials import best_trial, is_in_band
from effnet.nas.study.runner import run_study
from effnet.nas.study.trial_attrs import ACCURACY_ATTR, REWARD_ATTR, STALE_ATTR

SCREENED_TRIAL_ATTR = "screened_trial"
"""A re-scored trial's number in the screening study."""
SCREENED_ACCURACY_ATTR = "screened_accuracy"
"""Its accuracy with the supernet's weights."""
RESCORE_SUFFIX = "-rescore"
SCREENING_SHARE_MIN = 0.25
"""The least share of the time the supernet's training left that the screening keeps."""


def paths_per_step(config: SearchConfig) -> int:
    """The paths one supernet training step runs forward and backward: the sandwich's largest, smallest and
    random ones, or one."""
    return 2 + RANDOM_PATHS if config.proxy.supernet_recipe == "sandwich" else 1


def candidate_training_s(training: SupernetTraining, config: SearchConfig) -> float:
    """One train-proxy candidate's training steps in seconds, from the supernet's training: seconds per
    path-step x steps per epoch x the train proxy's epochs."""
    if training.steps == 0:
        return 0.0
    per_path_step = training.seconds / training.steps / paths_per_step(config)
    steps_per_epoch = training.total_steps / config.proxy.supernet_epochs
    return per_path_step * steps_per_epoch * config.proxy.epochs


def scoring_seconds(study: optuna.Study) -> tuple[float, float]:
    """From the screening's completed in-band trials: the median seconds of one, and how much longer the first
    took (a worker's set-up: its data and proxy, which the rescoring's worker pays again); (0, 0) before any."""
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.duration is not None and is_in_band(t)
    ]
    if not trials:
        return 0.0, 0.0
    seconds = [t.duration.total_seconds() for t in trials if t.duration is not None]
    median = statistics.median(seconds)
    return median, max(0.0, seconds[0] - median)


@dataclass(frozen=True)
class ScreeningJob(SearchJob):
    """The supernet's study under a time limit with a rescoring to follow: it also stops ("timeout") once
    the time left is what the rescoring's trainings are expected to take (`reserve_s`), but not before
    `screens_until`."""

    ends_by: float = 0.0
    """The run's deadline (`time.time()`)."""
    screens_until: float = 0.0
    training_s: float = 0.0
    """One candidate's training steps (`candidate_training_s`)."""

    def reserve_s(self, study: optuna.Study) -> float:
        """The rescoring's expected seconds: a worker's set-up, then per candidate its training steps and an
        evaluation per epoch."""
        evaluation, setup = scoring_seconds(study)
        return setup + self.config.rescore_top * (self.training_s + self.config.proxy.epochs * evaluation)

    def stop_reason(self, study: optuna.Study) -> str | None:
        reason = super().stop_reason(study)
        if reason is not None:
            return reason
        now = time.time()
        if now >= self.screens_until and now + self.reserve_s(study) >= self.ends_by:
            return "timeout"
        return None


def screening_job(job: SearchJob, training: SupernetTraining, left_s: float | None) -> SearchJob:
    """The job the supernet's study runs: `job` itself without a time limit, else a `ScreeningJob` that
    leaves the rescoring its time, from now."""
    if left_s is None:
        return job
    now = time.time()
    return ScreeningJob(
        job.config,
        job.space,
        job.chance,
        table=job.table,
        ends_by=now + left_s,
        screens_until=now + SCREENING_SHARE_MIN * left_s,
        training_s=candidate_training_s(training, job.config),
    )


def rescore_config(config: SearchConfig) -> SearchConfig:
    """The settings of the rescoring study: the train proxy, K trials, no pruning, the study `<name>-rescore`."""
    return dataclasses.replace(
        config,
        proxy=dataclasses.replace(config.proxy, name="train"),
        trials=config.rescore_top,
        pruner="none",
        sampler="random",
        rescore_top=0,
        study=dataclasses.replace(config.study, name=config.study.name + RESCORE_SUFFIX),
    )


def top_candidates(study: optuna.Study, config: SearchConfig) -> list[FrozenTrial]:
    """The screening's top `config.rescore_top` trained candidates in the band, best reward first."""
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if is_in_band(t) and not t.user_attrs.get(STALE_ATTR) and t.value is not None
    ]
    trials.sort(key=lambda t: (-(t.value or 0.0), t.number))
    return trials[: config.rescore_top]


@dataclass(frozen=True)
class RescoreJob(SearchJob):
    """The rescoring study: the queued candidates, each trained once by the train proxy."""

    queue: tuple[FrozenTrial, ...] = ()

    def prepare(self, study: optuna.Study) -> None:
        """Queue each candidate not yet in the study (a resumed run queues only those it lacks)."""
        queued = {t.user_attrs.get(SCREENED_TRIAL_ATTR) for t in study.get_trials(deepcopy=False)}
        for trial in self.queue:
            if trial.number not in queued:
                study.enqueue_trial(
                    trial.params,
                    user_attrs={
                        SCREENED_TRIAL_ATTR: trial.number,
                        SCREENED_ACCURACY_ATTR: trial.user_attrs.get(ACCURACY_ATTR),
                    },
                )

    def stop_reason(self, study: optuna.Study) -> str | None:
        """Done once no queued candidate waits: the study never samples one of its own."""
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return "budget"
        return None


@dataclass(frozen=True)
class Rescoring:
    """What the rescoring did: the candidates it was given, those it trained, and its best."""

    screened: list[int]
    """The screening's trial numbers, best reward first."""
    study: optuna.Study
    config: SearchConfig
    stop_reason: str
    reserved_s: float | None
    """The seconds its trainings were expected to take when the screening stopped (`ScreeningJob.reserve_s`);
    None without a time limit."""
    elapsed_s: float

    @property
    def best(self) -> FrozenTrial | None:
        return best_trial(self.study, self.config)

    def record(self) -> dict[str, Any]:
        trials = self.study.get_trials(deepcopy=False)
        best = self.best
        return {
            "top": len(self.screened),
            "study": self.config.study.name,
            "screened_trials": self.screened,
            "completed": sum(t.state == TrialState.COMPLETE for t in trials),
            "stop_reason": self.stop_reason,
            "best_screened_trial": best.user_attrs.get(SCREENED_TRIAL_ATTR) if best is not None else None,
            "best_accuracy": best.user_attrs.get(ACCURACY_ATTR) if best is not None else None,
            "best_reward": best.user_attrs.get(REWARD_ATTR) if best is not None else None,
            "reserved_s": None if self.reserved_s is None else round(self.reserved_s, 1),
            "elapsed_s": round(self.elapsed_s, 1),
        }


def rescore_top(
    job: SearchJob,
    screening: optuna.Study,
    timeout_s: float | None,
    reserved_s: float | None,
    on_progress: ProgressCallback | None,
) -> Rescoring:
    """Train the screening's top candidates again with the train proxy, within `timeout_s` (None: no limit);
    `reserved_s`, the time the screening left it by estimate, is recorded beside the time it took."""
    config = rescore_config(job.config)
    top = top_candidates(screening, job.config)
    rescoring_job = RescoreJob(config, job.space, job.chance, table=job.table, queue=tuple(top))
    run = run_study(rescoring_job, dataclasses.replace(config.study, timeout_s=timeout_s), on_progress)
    return Rescoring([t.number for t in top], run.study, config, run.stop_reason, reserved_s, run.elapsed_s)
