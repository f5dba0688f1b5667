"""Latency table against measurement: random networks near 400M FLOPs, predicted from the table and timed end to end.

Builds this machine's latency table for the default space (efficientnet) in `--runtime`, batch 1, one thread (or
reuses the one in the cache: `--rebuild` times it again), then draws random networks of the space, one per seed
from `--first-seed` on (none the calibration's: those are drawn from seed 0), keeps those whose analytic FLOPs lie
within 10 % of 400M, and measures each end to end (`measure_latency`: 10 untimed, 50 timed runs, batch 1, one
thread). Prints each network's predicted and measured latency and the relative error, then the median error, how
many are within 20 %, the table's build time (and whether it was reused), its calibration factor and noise, and
the machine's load average before and after (the timings are only as quiet as the machine).

    python bench/bench_latency.py [--runtime folded|onnxruntime|torch] [--networks 30] [--cache-dir DIR]
                                  [--rebuild] [--first-seed 1000] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from pathlib import Path

import torch
from bench_proxy import print_table  # run as a script, bench/ is on the path

from effnet.nas.choices import LATENCY_RUNTIMES
from effnet.nas.latency.measure import measure_latency
from effnet.nas.latency.table import TableBuild, TableSettings, build_table
from effnet.nas.latency.timing import calibration_networks
from effnet.nas.net.flops import analytic_cost
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.progress import Progress
from effnet.nas.space.choices import SearchSpace
from effnet.nas.space.load import load_space
from effnet.nas.training.allocator import configure_allocator

TARGET_FLOPS = 400e6
BAND = 0.10
WITHIN = 0.20
"""A prediction counts as good within this relative error of the measurement."""
MAX_SEEDS = 100_000


def band_networks(space: SearchSpace, count: int, first_seed: int) -> list[tuple[int, NetworkSpec, float]]:
    """(seed, spec, FLOPs) of `count` distinct random networks of `space` within `BAND` of `TARGET_FLOPS`, one
    drawn per seed from `first_seed` on, none of them a calibration network."""
    calibrated = {spec.stages for spec in calibration_networks(space)}
    found: dict[tuple, tuple[int, NetworkSpec, float]] = {}
    for seed in range(first_seed, first_seed + MAX_SEEDS):
        spec = space.random_spec(random.Random(seed))
        flops = analytic_cost(spec).flops
        if abs(flops - TARGET_FLOPS) <= BAND * TARGET_FLOPS and spec.stages not in calibrated:
            found.setdefault(spec.stages, (seed, spec, flops))
            if len(found) == count:
                return list(found.values())
    raise SystemExit(f"only {len(found)} networks within the band in {MAX_SEEDS} seeds")


def built_table(space: SearchSpace, runtime: str, device: str, cache_dir: Path | None, rebuild: bool) -> TableBuild:
    """This machine's table for `space`, printing how far the build is every 500 parts."""
    last = [-1]

    def report(progress: Progress) -> None:
        if progress.total and (progress.done == progress.total or progress.done // 500 > last[0] // 500):
            print(f"  {progress.status}: {progress.done}/{progress.total}", flush=True)
            last[0] = progress.done

    return build_table(space, TableSettings(runtime, device, 1, 1), cache_dir, report, rebuild)


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="folded", choices=LATENCY_RUNTIMES)
    parser.add_argument("--networks", type=int, default=30)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (CUDA runs timed by events)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where the table is (default: effnet's cache)")
    parser.add_argument("--rebuild", action="store_true", help="time the table again instead of reusing it")
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    allocator = configure_allocator()
    loads = [load()]
    space = load_space(None)
    networks = band_networks(space, args.networks, args.first_seed)
    print(f"table: {space.name}, {args.runtime}, batch 1, 1 thread (load average {loads[0]})", flush=True)
    build = built_table(space, args.runtime, args.device, args.cache_dir, args.rebuild)
    table = build.table
    print(
        f"table {'reused' if not build.measured else 'built'}: {build.measured:,} parts timed, {build.reused:,} "
        f"found timed, {build.seconds:.1f} s",
        flush=True,
    )
    loads.append(load())
    rows = []
    errors = []
    started = time.perf_counter()
    for seed, spec, flops in networks:
        predicted = table.predict(spec)
        measured = measure_latency(spec, runtime=args.runtime, device=args.device, threads=1)
        error = (predicted - measured.median_s) / measured.median_s
        errors.append(abs(error))
        rows.append(
            [
                str(seed),
                f"{flops / 1e6:.0f}M",
                f"{1000 * predicted:.2f}",
                f"{1000 * measured.median_s:.2f}",
                f"{error:+.1%}",
                f"{measured.cv:.2f}",
            ]
        )
        print(f"seed {seed}: predicted {rows[-1][2]} ms, measured {rows[-1][3]} ms", flush=True)
    measuring = time.perf_counter() - started
    loads.append(load())
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"allocator: {allocator}; {space.name} space, {args.runtime}, batch 1, 1 thread; "
        f"{len(networks)} networks within {BAND:.0%} of {TARGET_FLOPS / 1e6:.0f}M FLOPs (seeds from {args.first_seed})"
    )
    print_table(["seed", "FLOPs", "predicted ms", "measured ms", "error", "measured cv"], rows, args.markdown)
    within = sum(error <= WITHIN for error in errors)
    print(
        f"\nmedian |error| {statistics.median(errors):.1%}, worst {max(errors):.1%}, within {WITHIN:.0%}: "
        f"{within}/{len(errors)}\n"
        f"table: {len(table.parts):,} parts, {'reused from the cache' if not build.measured else 'built'} in "
        f"{build.seconds:.1f} s ({build.measured:,} parts timed now), factor {table.factor:.3f} (worst "
        f"{table.calibration_error:.1%} on its {table.calibration_networks} calibration networks), noise (median cv) "
        f"{table.noise_cv:.3f}; {measuring:.0f} s measuring the networks\n"
        f"load average (1, 5, 15 min): {loads[0]} before the table, {loads[1]} after it, {loads[2]} at the end"
    )


if __name__ == "__main__":
    main()
