"""A search's trials read back: which lie in the FLOPs band and count toward the budget, the counts of each kind,
the best candidate and the Pareto front of the trained ones."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from effnet.nas.search.config import SearchConfig
from effnet.nas.search.reward import mnasnet_reward
from effnet.nas.study.trial_attrs import ACCURACY_ATTR, ERROR_ATTR, FLOPS_ATTR, IN_BAND_ATTR, RETRY_OF_ATTR, STALE_ATTR


def is_in_band(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(IN_BAND_ATTR))


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Trained candidates: completed, pruned, or failed by their own error (not by a dead worker)."""
    if not is_in_band(trial):
        return False
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and ERROR_ATTR in trial.user_attrs and not trial.user_attrs.get(STALE_ATTR)


@dataclass(frozen=True)
class StudySummary:
    trained: int
    completed: int
    pruned: int
    failed: int
    """Trials that failed and were not queued again: a trial a stop signal cut short or whose worker died is
    queued again (at most `MAX_RETRY` times) and says nothing of the candidate until its retries run out."""
    outside_band: int
    running: int
    in_band: int = 0
    """Trials sampled inside the band, in any state (waiting, running, or finished however)."""


def summarize(study: optuna.Study) -> StudySummary:
    trials = study.get_trials(deepcopy=False)
    in_band = [t for t in trials if is_in_band(t)]
    requeued = {t.user_attrs.get(RETRY_OF_ATTR) for t in trials}
    return StudySummary(
        trained=sum(counts_toward_budget(t) for t in trials),
        completed=sum(t.state == TrialState.COMPLETE for t in in_band),
        pruned=sum(t.state == TrialState.PRUNED for t in in_band),
        failed=sum(t.state == TrialState.FAIL and t.number not in requeued for t in trials),
        outside_band=sum(t.state == TrialState.COMPLETE and not is_in_band(t) for t in trials),
        running=sum(t.state == TrialState.RUNNING for t in trials),
        in_band=len(in_band),
    )


def best_trial(study: optuna.Study, config: SearchConfig) -> FrozenTrial | None:
    """The best feasible trained trial: the top reward, or for a Pareto search the front member with
    the best soft reward inside the band."""
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if is_in_band(t) and not t.user_attrs.get(STALE_ATTR)
    ]
    if not trials:
        return None
    if config.multi_objective:
        front = pareto_front(trials, config.cost_attr)
        return max(front, key=lambda t: mnasnet_reward(t.values[0], t.values[1], config.cost_target))
    return max(trials, key=_value)


def _value(trial: FrozenTrial) -> float:
    """A complete single-objective trial's objective value."""
    assert trial.value is not None  # Optuna completes a trial only with its values
    return trial.value


def pareto_front(trials: list[FrozenTrial], cost_attr: str = FLOPS_ATTR) -> list[FrozenTrial]:
    """Trained trials no other trial beats on both accuracy (higher) and cost (lower: FLOPs, or the predicted
    latency `cost_attr` names)."""
    points: list[tuple[float, float, FrozenTrial]] = [
        (t.user_attrs[ACCURACY_ATTR], t.user_attrs[cost_attr], t)
        for t in trials  # the cost comes before training
        if t.user_attrs.get(ACCURACY_ATTR) is not None
    ]
    return [t for a, f, t in points if not any((a2 >= a and f2 <= f) and (a2 > a or f2 < f) for a2, f2, _ in points)]
