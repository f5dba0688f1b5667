"""A search's settings: target and band, objective, space, budget, sampler and pruner, the accuracy proxy and the
study it runs in."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effnet.nas import checks
from effnet.nas.choices import OBJECTIVES, PRUNERS, SAMPLERS
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.search.reward import FlopsBand
from effnet.nas.space.fit import MAX_CLASSES
from effnet.nas.study.proxy_runtime import proxy_runtime
from effnet.nas.study.study_config import StudyConfig

ACCURACY_PROXIES = ("train", "supernet")
"""Proxies whose score is a validation accuracy, which a chance level applies to."""
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

    def proxy_runtime(self, device: str | None = None, threads: int | None = None) -> ProxyRuntime:
        """How the proxy computes in one of this search's workers (`effnet.nas.study.proxy_runtime`)."""
        return proxy_runtime(self.study, device, threads)
