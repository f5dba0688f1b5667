"""`--rescore-top K`: the supernet screens, the train proxy decides.

Once the supernet's study has its trained candidates, the top K in the band by reward are trained again by the
train proxy (the search's `epochs`, no pruning) in a second study beside the first, named `<study>-rescore`, in
the same storage: its trials are queued with the screening's parameters (Optuna's `enqueue_trial`), so a
resumed run, or more workers, go on with those left and never sample others. b0 is the best of them by the
train proxy's reward.

Under a time limit the screening leaves the rescoring the time its K trainings are expected to take: one
candidate's train-proxy cost is estimated from the supernet's own training, whose steps run the same data and
batch through one path (`uniform`) or the sandwich's paths, each about a stand-alone network's step.
"""

from __future__ import annotations

import dataclasses
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
"""The least share of the time left after the supernet's training that the screening keeps."""


def paths_per_step(config: SearchConfig) -> int:
    """The paths one supernet training step runs forward and backward: the sandwich's largest, smallest and
    random ones, or one."""
    return 2 + RANDOM_PATHS if config.proxy.supernet_recipe == "sandwich" else 1


def rescore_reserve_s(training: SupernetTraining, config: SearchConfig) -> float:
    """The seconds `config.rescore_top` train-proxy candidates are expected to take, from the supernet's
    training: seconds per path-step × steps per epoch × the train proxy's epochs, per candidate."""
    if training.steps == 0:
        return 0.0
    per_path_step = training.seconds / training.steps / paths_per_step(config)
    steps_per_epoch = training.total_steps / config.proxy.supernet_epochs
    return config.rescore_top * per_path_step * steps_per_epoch * config.proxy.epochs


def screening_timeout(left_s: float | None, reserve_s: float) -> float | None:
    """The screening's time limit: what is left after the supernet's training, less the rescoring's reserve,
    but at least `SCREENING_SHARE_MIN` of it (None: no limit)."""
    if left_s is None:
        return None
    return max(left_s - reserve_s, SCREENING_SHARE_MIN * left_s)


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
    """The seconds its trainings were expected to take, from the supernet's training steps (the screening
    left it that much under a time limit); None where not estimated."""
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
