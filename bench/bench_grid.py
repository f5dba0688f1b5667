"""Twins shared on the default grid: the reference B0's 63 points scored as their 38 distinct networks, against
every point scored on its own (what the grid did before twins shared an evaluation).

Both run the whole default grid (alpha 1.0-1.4, beta and gamma 1.0-1.3, step 0.05, |alpha*beta^2*gamma^2 - 2| <=
0.1) through the study runner, one worker, in one process, each in a fresh study, with a cheap proxy (default:
the zero-cost NASWOT score on digits at 32 px). Data is loaded for every proxy resolution before either run, and
the order of the two runs alternates over `--rounds`, so neither is favoured by warm caches. Prints each run's
evaluations and seconds and the ratios.

    python bench/bench_grid.py [--proxy zero-cost|train] [--epochs 1] [--phi 1] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from optuna.trial import TrialState

from effnet.nas.proxies.config import ProxyConfig
from effnet.nas.proxies.data import load_proxy_data
from effnet.nas.study.proxy_runtime import proxy_runtime
from effnet.nas.study.runner import run_study
from effnet.nas.study.study_config import StudyConfig
from effnet.nas.training.allocator import configure_allocator
from effnet.scaling.grid_space import GridConfig, GridDefinition, GridPoint
from effnet.scaling.grid_study import GridJob
from effnet.scaling.presets import reference_b0


def each_point_alone(points: tuple[GridPoint, ...]) -> tuple[GridPoint, ...]:
    """Every point named as its own network: no twins, one evaluation per point."""
    return tuple(dataclasses.replace(p, network=p.label) for p in points)


def timed(config: GridConfig, points: tuple[GridPoint, ...], run_dir: Path) -> tuple[int, float]:
    """(evaluations, seconds) of one whole grid run in a fresh study."""
    study = dataclasses.replace(config.study, run_dir=run_dir)
    started = time.perf_counter()
    run = run_study(GridJob(dataclasses.replace(config, study=study), points), study)
    seconds = time.perf_counter() - started
    return len(run.study.get_trials(states=(TrialState.COMPLETE,))), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", default="zero-cost", choices=("zero-cost", "train"))
    parser.add_argument("--epochs", type=int, default=1, help="train proxy epochs per evaluation")
    parser.add_argument("--phi", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="each mode runs this many times, order alternating")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    configure_allocator()
    config = GridConfig(
        base=reference_b0(),
        grid=GridDefinition.from_ranges(phi=args.phi),
        proxy=ProxyConfig(name=args.proxy, data="digits", epochs=args.epochs),
        study=StudyConfig(run_dir=Path("unused"), name="grid", threads=args.threads),
    )
    shared = tuple(config.points())
    alone = each_point_alone(shared)
    for resolution in sorted({p.proxy_resolution for p in shared}):  # data ready before the clock starts
        load_proxy_data(dataclasses.replace(config.proxy, resolution=resolution), proxy_runtime(config.study))
    seconds: dict[str, list[float]] = {"each point alone": [], "twins shared": []}
    evaluations: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            modes = [("each point alone", alone), ("twins shared", shared)]
            for name, points in modes if round_ % 2 == 0 else modes[::-1]:
                count, took = timed(config, points, Path(scratch) / f"{name.replace(' ', '-')}-{round_}")
                evaluations[name] = count
                seconds[name].append(took)
                print(f"round {round_ + 1}: {name}: {count} evaluations in {took:.1f} s", flush=True)
    print(
        f"\ndefault grid on the reference B0 at phi = {args.phi}: {len(shared)} points, "
        f"{len({p.network for p in shared})} distinct networks; {args.proxy} proxy on digits at 32 px"
        + (f", {args.epochs} epoch(s)" if args.proxy == "train" else "")
        + f"; {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; median of {args.rounds} run(s) each\n"
    )
    print("| grid | evaluations | seconds | s / evaluation |\n|---|---:|---:|---:|")
    median = {name: statistics.median(values) for name, values in seconds.items()}
    for name in seconds:
        print(f"| {name} | {evaluations[name]} | {median[name]:.1f} | {median[name] / evaluations[name]:.2f} |")
    before, after = median["each point alone"], median["twins shared"]
    print(
        f"\nevaluations {evaluations['each point alone']} -> {evaluations['twins shared']} "
        f"({1 - evaluations['twins shared'] / evaluations['each point alone']:.0%} fewer); wall time "
        f"{before:.1f} s -> {after:.1f} s: ratio {before / after:.2f}x, {1 - after / before:.0%} saved"
    )


if __name__ == "__main__":
    main()
