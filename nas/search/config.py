"""A search's settings: target and band, objective, space, budget, sampler and pruner, the accuracy proxy and the
study it runs in."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from effnet.nas import checks
from effnet.nas.choices import OBJECTIVES, PRUNERS, SAMPLERS
from effnet.nas.errors import SettingError
from effnet.nas.latency.table import TableSettings
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.search.reward import FlopsBand, LatencyBand
from effnet.nas.space.fit import MAX_CLASSES
from effnet.nas.study.proxy_runtime import proxy_runtime
from effnet.nas.study.study_config import StudyConfig
from effnet.nas.study.trial_attrs import FLOPS_ATTR, LATENCY_ATTR

ACCURACY_PROXIES = ("train", "supernet")
"""Proxies whose score is a validation accuracy, which a chance level applies to."""
MAX_RESOLUTION = 4096
"""The largest `--resolution` (as for `--proxy-resolution`)."""
MAX_RESCORE = 1000
"""The most candidates `--rescore-top` trains again."""


@dataclass(frozen=True)
class CostAxis:
    """The cost a search weighs accuracy against, as its plots show it: the trial attribute, a name, the unit
    and its size (values are divided by `scale`), and the band (low, high, target, in that unit) if any."""

    attr: str
    name: str
    unit: str
    scale: float
    band: tuple[float, float, float] | None

    def of(self, trial: FrozenTrial) -> float | None:
        value = trial.user_attrs.get(self.attr)
        return None if value is None else value / self.scale


@dataclass(frozen=True)
class SearchConfig:
    """A search: target and band, objective, space, budget, sampler and pruner, the accuracy proxy and
    where the study lives (`study`: run directory, storage, workers, seed, time limit, device)."""

    target_flops: int | None = 400_000_000
    """The FLOPs target T and its band; None: no FLOPs band (a search against a latency target alone)."""
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
    target_latency_s: float | None = None
    """A latency target in seconds (MnasNet's objective): the reward weighs accuracy by the latency the table of
    this machine predicts (`effnet.nas.latency.table`), and only candidates in its band are trained."""
    latency_tolerance: float = 0.1
    latency: TableSettings = TableSettings()
    """Where the latency is measured: runtime, device, batch, threads (the table's and the final measurement's)."""
    rescore_top: int = 0
    """With the supernet proxy: train the screening's top this many again with the train proxy, and take b0 from
    them (`effnet.nas.search.rescore`); 0: b0 is the supernet's pick."""

    def __post_init__(self) -> None:
        if self.target_flops is None and self.target_latency_s is None:
            raise SettingError("target_flops", "is needed without a latency target; give one or both")
        if self.target_flops is not None:
            checks.whole("target_flops", self.target_flops, low=1)
        if self.target_latency_s is not None:
            checks.number("target_latency", self.target_latency_s, low=0, high=3600, low_open=True)
        checks.number("latency_tolerance", self.latency_tolerance, low=0, high=1, low_open=True, high_open=True)
        checks.instance("latency", self.latency, TableSettings, "a TableSettings (effnet.nas.latency.table)")
        checks.number("flops_tolerance", self.flops_tolerance, low=0, high=1, low_open=True, high_open=True)
        checks.choice("objective", self.objective, OBJECTIVES)
        checks.choice("sampler", self.sampler, SAMPLERS)
        checks.choice("pruner", self.pruner, PRUNERS)
        checks.whole("trials", self.trials, low=1, high=10_000_000)
        if self.classes is not None:
            checks.whole("classes", self.classes, low=2, high=MAX_CLASSES)
        if self.resolution is not None:
            checks.whole("resolution", self.resolution, low=8, high=MAX_RESOLUTION)
        checks.whole("rescore_top", self.rescore_top, low=0, high=MAX_RESCORE)
        if self.rescore_top and self.proxy.name != "supernet":
            raise SettingError(
                "rescore_top",
                f"re-scores the supernet's top candidates with the train proxy, but the proxy is "
                f"{self.proxy.name!r}; use it with --proxy supernet, or leave it out",
            )
        if self.rescore_top and self.objective == "pareto":
            raise SettingError("rescore_top", "needs one objective to rank by; use --objective reward or hard with it")

    @property
    def band(self) -> FlopsBand | None:
        """The FLOPs band; None without a FLOPs target."""
        if self.target_flops is None:
            return None
        return FlopsBand(self.target_flops, self.flops_tolerance, hard=self.objective == "hard" and not self.by_latency)

    @property
    def latency_band(self) -> LatencyBand | None:
        """The predicted-latency band; None without a latency target."""
        if self.target_latency_s is None:
            return None
        return LatencyBand(self.target_latency_s, self.latency_tolerance, hard=self.objective == "hard")

    @property
    def by_latency(self) -> bool:
        """The reward and the Pareto front weigh latency, not FLOPs."""
        return self.target_latency_s is not None

    @property
    def cost_attr(self) -> str:
        """The trial attribute the objective weighs accuracy against: predicted latency or FLOPs."""
        return LATENCY_ATTR if self.by_latency else FLOPS_ATTR

    @property
    def cost_axis(self) -> CostAxis:
        """The objective's cost as the plots show it: predicted latency in ms, or FLOPs in millions."""
        latency = self.latency_band
        if latency is not None:
            scale = 1e-3
            seconds = (latency.low / scale, latency.high / scale, latency.target / scale)
            return CostAxis(LATENCY_ATTR, "predicted latency", f"ms, {self.latency.runtime}", scale, seconds)
        flops = self.band
        assert flops is not None, "a search has a FLOPs target or a latency target"
        return CostAxis(
            FLOPS_ATTR,
            "FLOPs",
            "M, 1 multiply-add = 1 FLOP",
            1e6,
            (flops.low / 1e6, flops.high / 1e6, flops.target / 1e6),
        )

    @property
    def cost_target(self) -> float:
        """The target of the cost the objective weighs (seconds or FLOPs)."""
        target = self.target_latency_s if self.by_latency else self.target_flops
        assert target is not None, "a search has a FLOPs target or a latency target"
        return target

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
