"""A network's latency, measured where it will run: the median and 90th percentile of timed runs of one batch, in a
chosen runtime (`effnet.nas.latency.runtimes`), device and number of CPU threads.

`WARMUP` untimed runs, then `REPEATS` timed ones (a count, not a time budget: `effnet.nas.latency.settings`). On
the CPU each run is timed by the wall clock (`time.perf_counter`); on CUDA by a pair of CUDA events recorded on the
device's stream around the run and read after the end event has completed, so the time is the GPU's, not how
long the launch took. torch's intra-op threads are set for the measurement and put back after. `measure_module`
measures any module on images of a given shape (one block of a network, for a per-block latency table);
`measure_latency` a whole network, from its spec or its model.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from effnet.nas import checks
from effnet.nas.choices import LATENCY_RUNTIMES
from effnet.nas.cpus import check_threads
from effnet.nas.errors import SettingError
from effnet.nas.latency.runtimes import Prepared, prepare
from effnet.nas.latency.settings import MAX_BATCH, MAX_REPEATS, NOISY_CV, REPEATS, WARMUP
from effnet.nas.memory import available_memory, gib
from effnet.nas.net.limits import BYTES_PER_VALUE, check_memory, spec_cost
from effnet.nas.net.model import Network, build_model
from effnet.nas.net.onnx_graph import require_onnx
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.progress import Progress, ProgressCallback
from effnet.nas.training.runtime import cpu_threads, resolve_device

MODEL_SEED = 0
"""The weights of a network built from a spec to be timed (their values do not change its time)."""


@dataclass(frozen=True)
class Latency:
    """A measured latency: seconds per batch of `batch` images at `resolution` px, the median and the 90th
    percentile of `repeats` timed runs, and their coefficient of variation (standard deviation / mean)."""

    median_s: float
    p90_s: float
    cv: float
    runtime: str
    device: str
    batch: int
    threads: int
    """torch's intra-op threads during the runs (onnxruntime's intra-op threads too)."""
    repeats: int
    resolution: int

    @property
    def noisy(self) -> bool:
        """The runs spread more than an idle machine's do (`NOISY_CV`): other work likely shared the cores."""
        return self.cv > NOISY_CV


def check_settings(runtime: str, device: str, batch: int, threads: int | None, warmup: int, repeats: int) -> None:
    """A `SettingError` naming the first setting a measurement cannot take (a device that is not here among them);
    an `InputError` naming the extra to install where the runtime is onnxruntime and it is not installed."""
    checks.choice("runtime", runtime, LATENCY_RUNTIMES)
    if runtime == "onnxruntime":
        require_onnx("the onnxruntime runtime")
    resolve_device(device)
    checks.whole("batch", batch, low=1, high=MAX_BATCH)
    if threads is not None:
        check_threads("threads", threads)
    checks.whole("warmup", warmup, low=0, high=MAX_REPEATS)
    checks.whole("repeats", repeats, low=2, high=MAX_REPEATS)  # a spread needs two runs


def measure_latency(
    spec_or_model: NetworkSpec | Network,
    runtime: str = "folded",
    device: str = "cpu",
    batch: int = 1,
    threads: int | None = None,
    warmup: int = WARMUP,
    repeats: int = REPEATS,
    on_progress: ProgressCallback | None = None,
) -> Latency:
    """The latency of a network (a spec, built with seeded weights, or a model `build_model` made, left as it is)
    on batches of `batch` random images at its resolution, in `runtime` (folded, torch, onnxruntime) on `device`
    (cpu, cuda, cuda:N, auto) with `threads` intra-op threads (None: torch's current setting, recorded)."""
    checks.instance(
        "spec_or_model",
        spec_or_model,
        (NetworkSpec, Network),
        "a NetworkSpec (effnet.load_spec) or the network effnet.build_model made of one",
    )
    check_settings(runtime, device, batch, threads, warmup, repeats)
    spec = spec_or_model if isinstance(spec_or_model, NetworkSpec) else spec_or_model.spec
    check_batch_memory(spec, batch)
    if isinstance(spec_or_model, Network):
        model = spec_or_model
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(MODEL_SEED)
            model = build_model(spec)
    shape = (spec.in_channels, spec.resolution, spec.resolution)
    return measure_module(model, shape, runtime, device, batch, threads, warmup, repeats, on_progress)


def measure_module(
    module: nn.Module,
    image_shape: tuple[int, int, int],
    runtime: str = "folded",
    device: str = "cpu",
    batch: int = 1,
    threads: int | None = None,
    warmup: int = WARMUP,
    repeats: int = REPEATS,
    on_progress: ProgressCallback | None = None,
) -> Latency:
    """The latency of `module` (left as it is) on batches of `batch` random inputs of `image_shape` (channels,
    height, width), as `measure_latency` measures a network."""
    check_settings(runtime, device, batch, threads, warmup, repeats)
    where = resolve_device(device)
    report = on_progress or (lambda progress: None)
    with cpu_threads(threads):
        used = torch.get_num_threads()
        report(Progress(0, None, f"preparing the {runtime} runtime", preparing=True))
        prepared = prepare(module, image_shape, runtime, where, batch, used)
        times = time_runs(prepared, warmup, repeats, report)
    return Latency(
        median_s=statistics.median(times),
        p90_s=statistics.quantiles(times, n=10, method="inclusive")[-1],
        cv=statistics.stdev(times) / statistics.fmean(times),
        runtime=runtime,
        device=str(where),
        batch=batch,
        threads=used,
        repeats=repeats,
        resolution=image_shape[1],
    )


def time_runs(prepared: Prepared, warmup: int, repeats: int, report: ProgressCallback) -> list[float]:
    """`warmup` untimed runs, then the seconds of each of `repeats` timed ones."""
    report(Progress(0, repeats, "warming up", preparing=True))
    for _ in range(warmup):
        prepared.run()
    if prepared.events_on is not None:
        torch.cuda.synchronize(prepared.events_on)
    times = []
    for done in range(1, repeats + 1):
        on = prepared.events_on
        times.append(_wall_run(prepared) if on is None else _cuda_run(prepared, on))
        report(Progress(done, repeats, "timing"))
    return times


def time_interleaved(prepared: Sequence[Prepared], warmup: int, rounds: int) -> list[list[float]]:
    """The seconds of `rounds` timed runs of each of `prepared`, taken in rounds that run each once in turn
    (after `warmup` untimed runs of each): a slow spell of the machine then falls on every one of them alike
    instead of on the few timed during it, and each runs after the others, with their data in the caches
    instead of its own, as a part of a network runs after the part before it."""
    for item in prepared:
        for _ in range(warmup):
            item.run()
        if item.events_on is not None:
            torch.cuda.synchronize(item.events_on)
    times: list[list[float]] = [[] for _ in prepared]
    for _ in range(rounds):
        for item, taken in zip(prepared, times, strict=True):
            on = item.events_on
            taken.append(_wall_run(item) if on is None else _cuda_run(item, on))
    return times


def _wall_run(prepared: Prepared) -> float:
    started = time.perf_counter()
    prepared.run()
    return time.perf_counter() - started


def _cuda_run(prepared: Prepared, device: torch.device) -> float:
    """One run between two events on the device's current stream; waits for the second, so runs do not overlap."""
    with torch.cuda.device(device):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        prepared.run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000  # milliseconds


def check_batch_memory(spec: NetworkSpec, batch: int) -> None:
    """Refuse a batch this machine has not the free memory for (where that is known): the weights twice (the model
    and its runtime's copy) and, for each image, the image and every feature map."""
    check_memory(spec, "measure its latency")
    available = available_memory()
    cost = spec_cost(spec)
    per_image = BYTES_PER_VALUE * (spec.in_channels * spec.resolution**2 + cost.activations)
    weights = 2 * BYTES_PER_VALUE * cost.params
    needed = weights + batch * per_image
    if available is not None and needed > available:
        fit = (available - weights) // per_image
        fix = f"use at most {fit}" if fit >= 1 else "not one image fits: use a smaller network or more memory"
        raise SettingError(
            "batch",
            f"{batch} needs about {gib(needed)} for {spec.name} (weights and every feature map) and "
            f"{gib(available)} is free; {fix}",
        )
