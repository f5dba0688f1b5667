"""Timing a latency table's parts, and the whole networks its calibration factor is fitted to.

Parts are timed in chunks of `CHUNK_PARTS`: each chunk's parts are built (seeded weights), put in the runtime,
run `TABLE_WARMUP` times untimed and then `TABLE_ROUNDS` times each in turn (`time_interleaved`), so a part runs
after others, with their data in the caches, as it runs inside a network, and a slow spell of the machine falls
on a whole chunk alike. A chunk holds a bounded number of built parts, so memory does not grow with the space.
In onnxruntime a part is exported by the fast exporter (`effnet.nas.latency.part_graph`); the calibration's whole
networks by the deployed graph's (`onnx_graph`), which the factor is fitted to.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence

import torch

from effnet.nas.latency.measure import measure_module, time_interleaved
from effnet.nas.latency.parts import Part
from effnet.nas.latency.runtimes import prepare
from effnet.nas.latency.settings import (
    CALIBRATION_NETWORKS,
    CALIBRATION_ROUNDS,
    CALIBRATION_SEED,
    CHUNK_PARTS,
    TABLE_ROUNDS,
    TABLE_WARMUP,
    WARMUP,
)
from effnet.nas.latency.table_file import CalibrationSample, PartTime
from effnet.nas.net.model import build_model
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.progress import Progress, ProgressCallback
from effnet.nas.space.choices import SearchSpace

MODEL_SEED = 0


def time_parts(
    parts: Sequence[Part], runtime: str, device: torch.device, batch: int, threads: int, report: ProgressCallback
) -> dict[str, PartTime]:
    """Each part's median time and coefficient of variation, by key (torch's threads are the caller's to set)."""
    times: dict[str, PartTime] = {}
    if parts:
        report(Progress(0, len(parts), "timing the parts"))
    for start in range(0, len(parts), CHUNK_PARTS):
        chunk = parts[start : start + CHUNK_PARTS]
        for part, taken in zip(chunk, _time_chunk(chunk, runtime, device, batch, threads), strict=True):
            times[part.key] = PartTime(statistics.median(taken), statistics.stdev(taken) / statistics.fmean(taken))
        report(Progress(start + len(chunk), len(parts), "timing the parts"))
    return times


def _time_chunk(
    chunk: Sequence[Part], runtime: str, device: torch.device, batch: int, threads: int
) -> list[list[float]]:
    """The timed runs of each of `chunk`'s parts, built and put in the runtime together and let go on return (an
    onnxruntime session each: memory holds one chunk's)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(MODEL_SEED)
        ready = [prepare(part.build(), part.input_shape, runtime, device, batch, threads, part=True) for part in chunk]
    return time_interleaved(ready, TABLE_WARMUP, TABLE_ROUNDS)


def calibration_networks(space: SearchSpace) -> list[NetworkSpec]:
    """The networks a new table's factor is fitted to: `CALIBRATION_NETWORKS` random ones of the space, the same
    for every build (seeded), each once."""
    rng = random.Random(CALIBRATION_SEED)
    found: dict[tuple, NetworkSpec] = {}
    for _ in range(100 * CALIBRATION_NETWORKS):
        spec = space.random_spec(rng)
        found.setdefault(spec.stages, spec)
        if len(found) == CALIBRATION_NETWORKS:
            break
    return list(found.values())


def time_networks(
    networks: Sequence[NetworkSpec],
    runtime: str,
    device: torch.device,
    batch: int,
    threads: int,
    report: ProgressCallback,
) -> list[float]:
    """Each network's median seconds per batch, measured as `measure_latency` measures one (run after run, after
    untimed runs), so that the factor fitted to them turns a parts' sum into what that measurement gives."""
    what = "timing whole networks for the calibration"
    report(Progress(0, len(networks), what))
    measured = []
    for done, spec in enumerate(networks, start=1):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(MODEL_SEED)
            model = build_model(spec)
        shape = (spec.in_channels, spec.resolution, spec.resolution)
        latency = measure_module(model, shape, runtime, str(device), batch, threads, WARMUP, CALIBRATION_ROUNDS)
        measured.append(latency.median_s)
        report(Progress(done, len(networks), what))
    return measured


def fit_factor(samples: Sequence[CalibrationSample], parts: Mapping[str, PartTime]) -> tuple[float, float]:
    """The median of measured / parts' sum over `samples`, and the largest relative error that factor leaves."""
    pairs = [(sample.measured_s, sum(parts[key].median_s for key in sample.keys)) for sample in samples]
    factor = statistics.median(measured / total for measured, total in pairs)
    return factor, max(abs(factor * total - measured) / measured for measured, total in pairs)
