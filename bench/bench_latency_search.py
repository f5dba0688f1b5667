"""A latency target against a FLOPs target, on digits: does searching for latency find faster networks?

    python bench/bench_latency_search.py                          # 400M FLOPs search, then 0.9x its b0's latency
    python bench/bench_latency_search.py --trials 10 --fraction 0.8

1. `effnet search --target-flops 400M` (the default search on the embedded digits), as users run it: its b0.
2. That b0's latency L as this machine's latency table predicts it (folded, batch 1, one thread; built first if
   missing): a prediction, not a measurement, so that the target does not move with the machine's load.
3. `effnet search --target-latency F*L --target-flops 400M`: the same FLOPs band, and a latency target a
   fraction F of the FLOPs b0's latency.
4. Both b0s measured again side by side (interleaved rounds, `time_interleaved`), so that the machine's load
   falls on both alike: their measured latency, the ratio, and the latency b0's measured latency against its
   target. Proxy accuracies come from the searches (the same proxy, data and epochs for both).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from effnet.nas.latency.measure import time_interleaved
from effnet.nas.latency.runtimes import prepare
from effnet.nas.latency.table import LatencyTable
from effnet.nas.net.model import build_model
from effnet.nas.net.spec_file import load_spec
from effnet.nas.space.load import load_space
from effnet.nas.units import format_size


def run_search(args: list[str], run_dir: Path) -> dict:
    command = [sys.executable, "-m", "effnet.cli", "search", *args, "--run-dir", str(run_dir), "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    summary["wall_s"] = time.perf_counter() - started
    return summary


def side_by_side(specs: list, rounds: int) -> list[list[float]]:
    torch.manual_seed(0)
    ready = []
    for spec in specs:
        shape = (spec.in_channels, spec.resolution, spec.resolution)
        ready.append(prepare(build_model(spec), shape, "folded", torch.device("cpu"), 1, 1))
    torch.set_num_threads(1)
    return time_interleaved(ready, 10, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="trained candidates per search")
    parser.add_argument("--timeout", default="8m", help="each search's time limit")
    parser.add_argument("--fraction", type=float, default=0.9, help="latency target as a fraction of the FLOPs b0's")
    parser.add_argument("--rounds", type=int, default=100, help="timed runs of each b0 side by side")
    parser.add_argument("--root", type=Path, default=None, help="where the run directories go (default: a temp dir)")
    options = parser.parse_args()
    root = options.root or Path(tempfile.mkdtemp(prefix="bench-latency-search-"))
    common = ["--trials", str(options.trials), "--timeout", options.timeout, "--threads", "1"]
    console = Console(width=150)

    flops_run = run_search(["--target-flops", "400M", *common], root / "flops")
    flops_b0 = load_spec(flops_run["best_spec"])
    space = load_space(None)  # as the search fitted it to the data: its classes, its resolution
    space = dataclasses.replace(
        space, base=space.base.replace(num_classes=flops_b0.num_classes, resolution=flops_b0.resolution)
    )
    table = LatencyTable.build(space, threads=1)  # the table the latency search will use (built if missing)
    flops_predicted = table.predict(flops_b0)
    target = options.fraction * flops_predicted
    console.print(f"FLOPs b0: {1000 * flops_predicted:.2f} ms predicted; latency target {1000 * target:.2f} ms")
    latency_args = ["--target-flops", "400M", "--target-latency", f"{1000 * target:.3f}ms", *common]
    latency_run = run_search(latency_args, root / "latency")
    latency_b0 = load_spec(latency_run["best_spec"])

    times = side_by_side([flops_b0, latency_b0], options.rounds)
    medians = [statistics.median(t) for t in times]
    table = Table(title=f"b0 of a FLOPs target against b0 of a latency target (digits, {options.trials} trials each)")
    for column in ("search", "FLOPs", "params", "proxy accuracy", "predicted", "measured", "p90", "search s"):
        table.add_column(column, justify="left" if column == "search" else "right")
    for name, run, taken, median in (
        ("--target-flops 400M", flops_run, times[0], medians[0]),
        (f"+ --target-latency {1000 * target:.2f}ms", latency_run, times[1], medians[1]),
    ):
        predicted = (run.get("latency") or {}).get("predicted_s")
        table.add_row(
            name,
            format_size(run["flops"]),
            format_size(run["params"]),
            f"{run['accuracy']:.4f}",
            f"{1000 * predicted:.2f} ms" if predicted else "",
            f"{1000 * median:.2f} ms",
            f"{1000 * statistics.quantiles(taken, n=10)[-1]:.2f} ms",
            f"{run['wall_s']:.0f}",
        )
    console.print(table)
    console.print(
        f"latency b0 / FLOPs b0 measured: {medians[1] / medians[0]:.3f}; latency b0 against its target: "
        f"{medians[1] / target - 1:+.1%} (goal within ±10 %); run directories in {root}"
    )


if __name__ == "__main__":
    main()
