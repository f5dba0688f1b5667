"""Each worker's sampler seeded from the study seed and the number of its first trial: trial numbers are unique in a
study, so no two workers on any machines share a random stream, and a fresh one-worker study is reproducible from
its seed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

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

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._for(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        if self._sampler is not None:
            self._sampler.reseed_rng()
