"""What a kind of study (the search, the grid) supplies to the study runner (`effnet.nas.study.runner`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

import optuna
from optuna.samplers import BaseSampler

from effnet.nas.progress import DetailCallback, Progress

Direction = Literal["maximize", "minimize"]
"""Which way an objective of the study improves (Optuna's words)."""


class StudyJob(Protocol):
    """What a kind of study supplies to the runner. Jobs are frozen dataclasses: they travel to
    spawned worker processes by pickling."""

    @property
    def kind(self) -> str:
        """Names the study's settings fingerprint among its user attributes ("search", "grid")."""

    def fingerprint(self) -> dict[str, Any]: ...

    def directions(self) -> list[Direction]: ...

    def make_sampler(self, seed: int) -> BaseSampler: ...

    def make_pruner(self) -> optuna.pruners.BasePruner: ...

    def prepare(self, study: optuna.Study) -> None:
        """Before any worker starts (after recovery): queue what must be queued."""

    def objective(
        self,
        study: optuna.Study,
        deadline: float | None,
        threads: int | None,
        device: str,
        on_detail: DetailCallback | None,
    ) -> Callable[[optuna.Trial], Any]:
        """The trial objective; it tells `on_detail` (where given) what the trial in hand is doing."""

    def stop_reason(self, study: optuna.Study) -> str | None:
        """Why workers should stop now (the budget is met, nothing is left), or None."""

    def progress(self, study: optuna.Study) -> Progress: ...
