"""The latency of scaled networks (grid points, family members), measured on this machine beside their FLOPs.

A family runs to B7 at 600 px, a second or more per run on a CPU, so each network is timed with few runs
(`SCALING_WARMUP`, `SCALING_REPEATS`): enough to rank members a doubling of FLOPs apart, not to tell two close
networks apart; `effnet describe SPEC --latency` measures one network with more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from effnet.nas.latency.measure import Latency, check_batch_memory, check_settings, measure_latency
from effnet.nas.latency.settings import SCALING_REPEATS, SCALING_WARMUP
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.progress import Progress, ProgressCallback


@dataclass(frozen=True)
class LatencySettings:
    """How each network is timed: runtime (folded, torch, onnxruntime), device, images per run, CPU threads
    (None: torch's current setting), untimed and timed runs."""

    runtime: str = "folded"
    device: str = "cpu"
    batch: int = 1
    threads: int | None = None
    warmup: int = SCALING_WARMUP
    repeats: int = SCALING_REPEATS

    def __post_init__(self) -> None:
        check_settings(self.runtime, self.device, self.batch, self.threads, self.warmup, self.repeats)

    def record(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "device": self.device,
            "batch": self.batch,
            "threads": self.threads,
            "warmup": self.warmup,
            "repeats": self.repeats,
        }


def check_networks_fit(specs: Iterable[NetworkSpec], settings: LatencySettings) -> None:
    """Refuse, naming the first, a network whose timing at `settings.batch` this machine has not the free memory
    for: before any is timed, so the refusal is one line and no timing is thrown away."""
    for spec in specs:
        check_batch_memory(spec, settings.batch)


def measure_networks(
    specs: Mapping[str, NetworkSpec], settings: LatencySettings, on_progress: ProgressCallback | None = None
) -> dict[str, Latency]:
    """Each network's latency, by the name it is given under; `on_progress` hears one unit per network and,
    as its detail, how far its runs are."""
    report = on_progress or (lambda progress: None)
    check_networks_fit(specs.values(), settings)
    measured: dict[str, Latency] = {}
    total = len(specs)
    for done, (name, spec) in enumerate(specs.items()):
        status = f"latency of {name}"

        def runs(progress: Progress, done: int = done, status: str = status) -> None:
            detail = progress.status if progress.preparing else f"{progress.status} {progress.done}/{progress.total}"
            report(Progress(done, total, status, detail=detail))

        report(Progress(done, total, status))
        measured[name] = measure_latency(
            spec,
            settings.runtime,
            settings.device,
            settings.batch,
            settings.threads,
            settings.warmup,
            settings.repeats,
            on_progress=runs,
        )
    report(Progress(total, total, "latency measured"))
    return measured


LATENCY_COLUMNS = ("latency_ms", "latency_p90_ms", "latency_cv")
"""What a result row holds of a network's latency: median and 90th percentile in milliseconds, the spread."""


def latency_row(latency: Latency | None) -> dict[str, float | None]:
    """A result row's latency columns (`LATENCY_COLUMNS`), in milliseconds; None where not measured."""
    if latency is None:
        return dict.fromkeys(LATENCY_COLUMNS)
    return {"latency_ms": 1000 * latency.median_s, "latency_p90_ms": 1000 * latency.p90_s, "latency_cv": latency.cv}
