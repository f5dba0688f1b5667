"""Pruning that waits for the proxy to separate candidates from chance.

Hyperband and the median rule compare a candidate's score after an epoch with other candidates' scores at that
epoch. When every one of those scores is still within the chance margin (`effnet.nas.study.chance`), the
comparison ranks noise: on a 5-class folder, candidates at 0.20-0.26 after one epoch are all guessing, and
pruning 6 of 8 of them keeps two by luck. `ChanceGate` wraps a pruner and lets it act on a candidate only when

- at least `warmup_trials` candidates have completed their training (the pruner has a reference), and
- at that epoch some other candidate's accuracy is beyond the chance margin (the proxy separates), and
- the candidate itself trails that best accuracy by more than the margin (it is told apart from the best).

Scores reach Optuna as rewards; the gate turns them back into accuracies with the candidate's own FLOPs
(the reward is the accuracy times a factor of the FLOPs alone), recorded before its training.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, TrialState

from effnet.nas.study.chance import ChanceLevel

WARMUP_TRIALS = 3
"""Completed candidates before any pruning."""

Accuracy = Callable[[FrozenTrial, float], float | None]
"""(trial, reported value) -> the accuracy behind it, None where it cannot be told."""


class ChanceGate(BasePruner):
    """`pruner`, held back until the proxy separates candidates from chance (module notes)."""

    def __init__(self, pruner: BasePruner, chance: ChanceLevel, accuracy: Accuracy, warmup_trials: int = WARMUP_TRIALS):
        self.pruner = pruner
        self.chance = chance
        self.accuracy = accuracy
        self.warmup_trials = warmup_trials

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """The wrapped pruner is always asked (Hyperband records each candidate's rung as it goes); its verdict
        to prune stands only where the gate is open."""
        if not self.pruner.prune(study, trial):
            return False
        step = trial.last_step
        assert step is not None  # Optuna's pruners prune only a trial that reported a step
        own = self.accuracy(trial, trial.intermediate_values[step])
        if own is None:
            return False
        others = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
        completed = sum(t.state == TrialState.COMPLETE and bool(t.intermediate_values) for t in others)
        if completed < self.warmup_trials:
            return False
        at_step = [
            self.accuracy(t, t.intermediate_values[step])
            for t in others
            if t.number != trial.number and step in t.intermediate_values
        ]
        best = max((a for a in at_step if a is not None), default=None)
        return best is not None and not self.chance.near(best) and best - own > self.chance.margin
