"""FLOP and parameter counting: fvcore and model building against the analytic counter, B0-B7, in one process.

    python bench/bench_counting.py [--threads N] [--fvcore-repeats N] [--markdown]

FLOPs: fvcore's `FlopCountAnalysis` on an already built model (build time excluded, which favours
fvcore) against `analytic_cost(spec)` from the spec alone. Parameters: `build_model` + sum of
`numel` against the same analytic call. Each figure is the median of its repeats. The script checks
that every count agrees exactly (per operator, total, parameters) and exits 1 if any does not.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from effnet.nas.cpus import cpu_ids
from effnet.nas.net.counting import fvcore_count
from effnet.nas.net.flops import analytic_cost
from effnet.nas.net.model import build_model, count_parameters
from effnet.scaling.presets import OFFICIAL, official_preset


@dataclass(frozen=True)
class Row:
    model: str
    resolution: int
    flops: int
    params: int
    fvcore_s: float
    build_s: float
    analytic_s: float
    flops_agree: bool
    params_agree: bool

    @property
    def flops_ratio(self) -> float:
        return self.fvcore_s / self.analytic_s

    @property
    def params_ratio(self) -> float:
        return self.build_s / self.analytic_s


def median_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def median_seconds_per_call(fn: Callable[[], Any], batches: int = 7, batch_seconds: float = 0.05) -> float:
    """Median over `batches` of the mean time per call in a batch sized to last about `batch_seconds`."""
    start = time.perf_counter()
    fn()
    calls = max(1, int(batch_seconds / max(time.perf_counter() - start, 1e-7)))
    per_call = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        per_call.append((time.perf_counter() - start) / calls)
    return statistics.median(per_call)


def measure(name: str, fvcore_repeats: int) -> Row:
    spec = official_preset(name)
    build_s, model = median_seconds(lambda: build_model(spec), max(1, fvcore_repeats))
    built_params = count_parameters(model)
    build_s += median_seconds(lambda: count_parameters(model), 5)[0]
    fvcore_count(spec, model)  # warm-up: the first trace of a model is slower
    fvcore_s, counted = median_seconds(lambda: fvcore_count(spec, model), fvcore_repeats)
    analytic_s = median_seconds_per_call(lambda: analytic_cost(spec))
    report = analytic_cost(spec)
    return Row(
        model=name.upper(),
        resolution=spec.resolution,
        flops=report.flops,
        params=report.params,
        fvcore_s=fvcore_s,
        build_s=build_s,
        analytic_s=analytic_s,
        flops_agree=report.total.by_operator() == counted.by_operator and report.flops == counted.total,
        params_agree=report.params == built_params,
    )


def rich_table(rows: list[Row]) -> Table:
    table = Table(title="Counting B0-B7: fvcore / model building vs the analytic counter (medians)")
    for column in (
        "model",
        "px",
        "FLOPs",
        "params",
        "fvcore s",
        "analytic µs",
        "FLOPs ratio",
        "build+numel s",
        "params ratio",
        "agree?",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in rows:
        table.add_row(
            r.model,
            str(r.resolution),
            f"{r.flops:,}",
            f"{r.params:,}",
            f"{r.fvcore_s:.3f}",
            f"{r.analytic_s * 1e6:.0f}",
            f"{r.flops_ratio:,.0f}×",
            f"{r.build_s:.3f}",
            f"{r.params_ratio:,.0f}×",
            agreement(r),
        )
    return table


def agreement(r: Row) -> str:
    return (
        "yes"
        if r.flops_agree and r.params_agree
        else (f"NO (flops {'ok' if r.flops_agree else 'differ'}, params {'ok' if r.params_agree else 'differ'})")
    )


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| model | px | FLOPs (fvcore) | params | fvcore s | analytic µs | FLOPs ratio "
        "| build+numel s | params ratio | agree |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.resolution} | {r.flops:,} | {r.params:,} | {r.fvcore_s:.3f} "
            f"| {r.analytic_s * 1e6:.0f} | {r.flops_ratio:,.0f}× | {r.build_s:.3f} "
            f"| {r.params_ratio:,.0f}× | {agreement(r)} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch threads for fvcore's forward and model building (default: torch's)",
    )
    parser.add_argument(
        "--fvcore-repeats", type=int, default=3, help="fvcore counts per model after one warm-up (B4-B7 use at most 1)"
    )
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(stderr=False, width=160)
    console.print(
        f"{platform.processor() or platform.machine()}, {len(cpu_ids())} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch thread(s), load average {os.getloadavg()[0]:.2f} at start"
    )
    rows = []
    for name in OFFICIAL:
        repeats = args.fvcore_repeats if name in ("b0", "b1", "b2", "b3") else min(1, args.fvcore_repeats)
        rows.append(measure(name, repeats))
        console.print(
            f"  {name}: fvcore {rows[-1].fvcore_s:.3f} s, analytic {rows[-1].analytic_s * 1e6:.0f} µs", highlight=False
        )
    console.print(rich_table(rows))
    worst_flops = min(r.flops_ratio for r in rows)
    worst_params = min(r.params_ratio for r in rows)
    console.print(
        f"smallest speed-up: FLOPs {worst_flops:,.0f}×, parameters {worst_params:,.0f}×; "
        f"load average {os.getloadavg()[0]:.2f} at end"
    )
    if args.markdown:
        print(markdown_table(rows))
    if not all(r.flops_agree and r.params_agree for r in rows):
        console.print("[bold red]analytic and fvcore/built counts disagree[/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
