"""Our EfficientNet-B0 against torchvision's and timm's, same process, same torch, same threads, same batch.

Each allocator setting runs in its own worker processes (the allocator is a process setting): `tuned`
is what effnet applies (`configure_allocator`), `system` is glibc's default (`EFFNET_ALLOCATOR=system`);
the workers alternate (tuned, system, tuned, system, ...) and their timed steps are pooled. Inside a
worker the variants (ours / torchvision ("tv") / timm x default layout / channels_last ("CL"), as
`--models` and `--layouts` select) run interleaved, rotating the order each repetition. A figure is the
median of the timed steps, with the best step in brackets (on a shared machine the best is the steadier
estimate of the unloaded speed). `--clock cpu` times steps by the process's CPU time: with `--threads 1` on
a machine that other work shares, it leaves out the time the process waited for a core.

Needs torchvision (a dependency of effnet) and, for the timm rows, timm (the test extra):
    python bench/bench_model.py [--models ours,timm --layouts channels_last] [--profile] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GOAL = 1.2
"""Ours, as effnet runs it, over the reference's default configuration; and ours CL over timm CL in training."""
MODELS = ("ours", "tv", "timm")
REFERENCE_PARAMS = 5_288_548
CASES = {"train224": ("train", 224), "train64": ("train", 64), "infer224": ("infer", 224)}
LAYOUTS = ("default", "channels_last")
MATMUL_SIZE = 2048


@dataclass
class Variant:
    label: str
    model_name: str
    layout: str
    model: Any


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def matmul_ceiling(clock: Callable[[], float], repeats: int = 10) -> float:
    """Multiply-adds per second of a float32 2048x2048 matrix product on this process's threads, by `clock`."""
    import torch

    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        start = clock()
        a @ b
        times.append(clock() - start)
    return MATMUL_SIZE**3 / statistics.median(times)


def make_step(variant: Variant, mode: str, batch: int, resolution: int) -> Callable[[], None]:
    import torch
    from torch import nn

    layout = torch.channels_last if variant.layout == "channels_last" else torch.contiguous_format
    images = torch.randn(batch, 3, resolution, resolution).contiguous(memory_format=layout)
    labels = torch.randint(0, 1000, (batch,))
    model = variant.model
    if mode == "infer":
        model.eval()

        def infer() -> None:
            with torch.inference_mode():
                model(images)

        return infer
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    return train


def measure_case(variants: list[Variant], mode: str, resolution: int, args: argparse.Namespace) -> dict:
    steps = {v.label: make_step(v, mode, args.batch, resolution) for v in variants}
    first_step_s = {}
    for label, step in steps.items():
        start = time.perf_counter()
        step()
        first_step_s[label] = time.perf_counter() - start
        for _ in range(args.warmup - 1):
            step()
    times: dict[str, list[float]] = {label: [] for label in steps}
    faults: dict[str, list[int]] = {label: [] for label in steps}
    labels = list(steps)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for rep in range(args.repeats):
        for label in labels[rep % len(labels) :] + labels[: rep % len(labels)]:
            before = minor_faults()
            start = clock()
            steps[label]()
            times[label].append(clock() - start)
            faults[label].append(minor_faults() - before)
        print(f"  {mode} {resolution}px: repetition {rep + 1}/{args.repeats}", file=sys.stderr, flush=True)
    return {
        label: {"step_s": times[label], "minor_faults": faults[label], "first_step_s": [first_step_s[label]]}
        for label in steps
    }


def profile_training_step(model: Any, batch: int, rows: int) -> list[dict]:
    """torch.profiler's top operators (self CPU time) for one 224 px training step of `model`."""
    from torch.profiler import ProfilerActivity, profile

    variant = Variant("profile", "ours", "channels_last", model)
    step = make_step(variant, "train", batch, 224)
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [
        {"op": e.key, "self_ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total, "calls": e.count}
        for e in events[:rows]
    ]


def worker(args: argparse.Namespace) -> dict:
    from effnet.nas.training.allocator import configure_allocator
    from effnet.nas.training.runtime import configure_threads

    allocator = configure_allocator()
    threads = configure_threads(args.threads)
    load_before = os.getloadavg()[0]

    import torch
    import torchvision

    from effnet.nas.net.flops import analytic_flops
    from effnet.nas.net.model import build_model, count_parameters
    from effnet.nas.net.spec_file import load_spec
    from effnet.nas.resources import reference_b0_path

    spec = load_spec(reference_b0_path())
    builders = {
        "ours": lambda: build_model(spec),
        "tv": lambda: torchvision.models.efficientnet_b0(weights=None),
        "timm": lambda: __import__("timm").create_model("efficientnet_b0", drop_path_rate=spec.drop_connect),
    }
    variants = []
    for layout in args.layouts:
        for name in args.models:
            build = builders[name]
            torch.manual_seed(0)
            model = build()
            if layout == "channels_last":
                model = model.to(memory_format=torch.channels_last)
            variants.append(Variant(f"{name} CL" if layout == "channels_last" else name, name, layout, model))
    if args.compile:
        torch.manual_seed(0)
        model = torch.compile(build_model(spec).to(memory_format=torch.channels_last))
        variants.append(Variant("ours CL+compile", "ours", "channels_last", model))
    params = {v.label: count_parameters(v.model) for v in variants}
    if set(params.values()) != {REFERENCE_PARAMS}:
        raise SystemExit(f"parameter counts differ: {params} (expected {REFERENCE_PARAMS:,} each)")

    cases = {}
    for case in args.cases:
        mode, resolution = CASES[case]
        cases[case] = measure_case(variants, mode, resolution, args)
    result = {
        "allocator": allocator,
        "threads": threads,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "clock": args.clock,
        "batch": args.batch,
        "repeats": args.repeats,
        "params": REFERENCE_PARAMS,
        "forward_flops": {res: analytic_flops(spec.replace(resolution=res)) for res in (224, 64)},
        "matmul_macs_per_s": matmul_ceiling(time.process_time if args.clock == "cpu" else time.perf_counter),
        "cases": cases,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_average": [load_before, os.getloadavg()[0]],
    }
    if args.profile:
        torch.manual_seed(0)
        model = build_model(spec).to(memory_format=torch.channels_last)
        result["profile"] = profile_training_step(model, args.batch, args.profile_rows)
    return result


def run_worker(allocator: str, args: argparse.Namespace, profile: bool) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GLIBC_TUNABLES", "EFFNET_ALLOCATOR") and not k.startswith("MALLOC_")
    }
    if allocator == "system":
        env["EFFNET_ALLOCATOR"] = "system"
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--batch",
        str(args.batch),
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
        "--cases",
        ",".join(args.cases),
        "--profile-rows",
        str(args.profile_rows),
        "--models",
        ",".join(args.models),
        "--layouts",
        ",".join(args.layouts),
        "--clock",
        args.clock,
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.compile:
        command.append("--compile")
    if profile:
        command.append("--profile")
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout)


def merge_rounds(rounds: list[dict], batch: int) -> dict:
    """One allocator's worker results over all rounds: step times pooled, then median and best."""
    merged = dict(rounds[0])
    merged["cases"] = {}
    for case in rounds[0]["cases"]:
        merged["cases"][case] = {}
        for label in rounds[0]["cases"][case]:
            pooled = {
                key: [x for r in rounds for x in r["cases"][case][label][key]]
                for key in ("step_s", "minor_faults", "first_step_s")
            }
            pooled["images_per_s"] = batch / statistics.median(pooled["step_s"])
            pooled["best_images_per_s"] = batch / min(pooled["step_s"])
            pooled["minor_faults_per_step"] = int(statistics.median(pooled["minor_faults"]))
            merged["cases"][case][label] = pooled
    merged["matmul_macs_per_s"] = statistics.median(r["matmul_macs_per_s"] for r in rounds)
    merged["peak_rss_mib"] = max(r["peak_rss_mib"] for r in rounds)
    merged["load_average"] = [x for r in rounds for x in r["load_average"]]
    merged["rounds"] = len(rounds)
    return merged


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def speed_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """Median images/s per variant (best step in brackets) and the ratios of the medians (of the bests)."""
    labels = list(next(iter(result["cases"].values())))
    pairs = [
        (a, b)
        for a, b in (("ours", "tv"), ("ours CL", "tv CL"), ("ours CL", "tv"), ("ours CL", "timm CL"))
        if a in labels and b in labels
    ]
    header = ["case", *labels, *(f"{a}/{b}" for a, b in pairs)]
    rows = []
    for case, figures in result["cases"].items():
        med = {label: f["images_per_s"] for label, f in figures.items()}
        best = {label: f["best_images_per_s"] for label, f in figures.items()}
        rows.append(
            [
                case,
                *(f"{med[label]:.1f} ({best[label]:.1f})" for label in labels),
                *(f"{ratio(med[a], med[b])} ({ratio(best[a], best[b])})" for a, b in pairs),
            ]
        )
    return header, rows


def allocator_rows(results: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    tuned, system = results["tuned"], results["system"]
    header = [
        "case",
        "variant",
        "img/s system",
        "img/s tuned",
        "tuned/system (best)",
        "faults/step system",
        "faults/step tuned",
    ]
    rows = []
    for case, figures in tuned["cases"].items():
        for label, fig in figures.items():
            base = system["cases"][case][label]
            rows.append(
                [
                    case,
                    label,
                    f"{base['images_per_s']:.1f}",
                    f"{fig['images_per_s']:.1f}",
                    f"{ratio(fig['images_per_s'], base['images_per_s'])} "
                    f"({ratio(fig['best_images_per_s'], base['best_images_per_s'])})",
                    f"{base['minor_faults_per_step']:,}",
                    f"{fig['minor_faults_per_step']:,}",
                ]
            )
    return header, rows


def goal_rows(results: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Ours as effnet runs it (channels_last, its allocator) over torchvision's default layout."""
    header = ["case", "ours CL img/s", "tv img/s", "tv allocator", "ratio (best)", f"goal >= {GOAL}x"]
    rows = []
    ours = results.get("tuned") or next(iter(results.values()))
    for name, base in results.items():
        for case, figures in ours["cases"].items():
            if "ours CL" not in figures or "tv" not in base["cases"][case]:
                continue
            a, b = figures["ours CL"], base["cases"][case]["tv"]
            rows.append(
                [
                    case,
                    f"{a['images_per_s']:.1f}",
                    f"{b['images_per_s']:.1f}",
                    name,
                    f"{ratio(a['images_per_s'], b['images_per_s'])} "
                    f"({ratio(a['best_images_per_s'], b['best_images_per_s'])})",
                    "met" if a["images_per_s"] / b["images_per_s"] >= GOAL else "NOT met",
                ]
            )
    return header, rows


def timm_rows(results: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Our training step over timm's, both channels_last, same allocator and threads, interleaved in one process."""
    header = ["allocator", "case", "ours CL img/s", "timm CL img/s", "ratio (best)", f"goal >= {GOAL}x"]
    rows = []
    for name, result in results.items():
        for case, figures in result["cases"].items():
            if CASES[case][0] != "train" or not {"ours CL", "timm CL"} <= set(figures):
                continue
            a, b = figures["ours CL"], figures["timm CL"]
            rows.append(
                [
                    name,
                    case,
                    f"{a['images_per_s']:.1f}",
                    f"{b['images_per_s']:.1f}",
                    f"{ratio(a['images_per_s'], b['images_per_s'])} "
                    f"({ratio(a['best_images_per_s'], b['best_images_per_s'])})",
                    "met" if a["images_per_s"] / b["images_per_s"] >= GOAL else "NOT met",
                ]
            )
    return header, rows


def utilisation_rows(results: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    header = ["allocator", "case", "variant", "achieved GMAC/s", "matmul ceiling GMAC/s", "utilisation"]
    rows = []
    for name, result in results.items():
        ceiling = result["matmul_macs_per_s"]
        for case, figures in result["cases"].items():
            mode, resolution = CASES[case]
            if mode != "train":
                continue
            for label in (x for x in ("ours CL", "tv", "timm CL") if x in figures):
                achieved = 3 * result["forward_flops"][str(resolution)] * figures[label]["images_per_s"]
                rows.append(
                    [name, case, label, f"{achieved / 1e9:.1f}", f"{ceiling / 1e9:.1f}", f"{achieved / ceiling:.0%}"]
                )
    return header, rows


def profile_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    header = ["op", "self ms", "share", "calls"]
    return header, [[p["op"], f"{p['self_ms']:.0f}", f"{p['share']:.0%}", str(p["calls"])] for p in result["profile"]]


def print_tables(tables: list[tuple[str, tuple[list[str], list[list[str]]]]], markdown: bool) -> None:
    if markdown:
        for title, (header, rows) in tables:
            print(f"\n{title}\n\n| {' | '.join(header)} |\n|{'---|' * len(header)}")
            for row in rows:
                print(f"| {' | '.join(row)} |")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    for title, (header, rows) in tables:
        table = Table(title=title)
        for i, column in enumerate(header):
            table.add_column(column, justify="left" if i < 2 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all CPUs)")
    parser.add_argument(
        "--cases", type=lambda s: s.split(","), default=list(CASES), help=f"comma-separated, from {','.join(CASES)}"
    )
    parser.add_argument(
        "--models", type=lambda s: s.split(","), default=list(MODELS), help=f"comma-separated, from {','.join(MODELS)}"
    )
    parser.add_argument(
        "--layouts",
        type=lambda s: s.split(","),
        default=list(LAYOUTS),
        help=f"comma-separated, from {','.join(LAYOUTS)}",
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time steps by the wall clock or by the process's CPU time (for --threads 1 on a shared machine)",
    )
    parser.add_argument(
        "--allocators",
        type=lambda s: s.split(","),
        default=["tuned", "system"],
        help="worker processes to run: tuned (effnet's default), system",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="worker processes per allocator, alternating (their steps are pooled)"
    )
    parser.add_argument("--compile", action="store_true", help="add torch.compile'd ours (minutes to compile)")
    parser.add_argument("--profile", action="store_true", help="top ops of one 224 px training step of ours")
    parser.add_argument("--profile-rows", type=int, default=12)
    parser.add_argument("--markdown", action="store_true", help="print markdown tables (for bench/RESULTS.md)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write all figures to this file")
    parser.add_argument("--load", default=None, help="print the tables of a file written by --json, measuring nothing")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    unknown = (
        set(args.cases) - set(CASES)
        or set(args.allocators) - {"tuned", "system"}
        or set(args.models) - set(MODELS)
        or set(args.layouts) - set(LAYOUTS)
    )
    if unknown:
        parser.error(f"unknown case or allocator: {', '.join(sorted(unknown))}")
    return args


def measure_all(args: argparse.Namespace) -> dict[str, dict]:
    rounds: dict[str, list[dict]] = {name: [] for name in args.allocators}
    for round_index in range(args.rounds):
        for name in args.allocators:
            print(
                f"round {round_index + 1}/{args.rounds}: worker with the {name} allocator", file=sys.stderr, flush=True
            )
            profile = args.profile and round_index == 0 and name == args.allocators[0]
            rounds[name].append(run_worker(name, args, profile))
    return {name: merge_rounds(runs, args.batch) for name, runs in rounds.items()}


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.load:
        with open(args.load) as handle:
            results = json.load(handle)
    else:
        results = measure_all(args)
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(results, handle, indent=2)
    first = next(iter(results.values()))
    steps = len(next(iter(next(iter(first["cases"].values())).values()))["step_s"])
    args.batch = first["batch"]
    tables = []
    for name, result in results.items():
        load = ", ".join(f"{x:.1f}" for x in result["load_average"])
        tables.append(
            (
                f"Images/s, batch {args.batch}, median of {steps} steps (best); allocator {name}: "
                f"{result['allocator']}; peak RSS {result['peak_rss_mib']:.0f} MiB; "
                f"load average {load}",
                speed_rows(result),
            )
        )
    tables.append(("Goal: ours as effnet runs it over torchvision's default configuration", goal_rows(results)))
    tables.append(("Training: ours over timm, both channels_last", timm_rows(results)))
    if {"tuned", "system"} <= set(results):
        tables.append(("Allocator: effnet's tuned glibc heap over the system default", allocator_rows(results)))
    tables.append(("Utilisation: 3 x forward MACs x images/s over a float32 2048^2 matmul", utilisation_rows(results)))
    if "profile" in first:
        tables.append(
            ("Top ops, one 224 px training step of ours (channels_last, tuned allocator)", profile_rows(first))
        )
    print(
        f"torch {first['torch']}, torchvision {first['torchvision']}, {first['threads']} threads, "
        f"{first.get('clock', 'wall')} clock, parameters {first['params']:,} (every model)"
    )
    print_tables([(title, (header, rows)) for title, (header, rows) in tables if rows], args.markdown)


if __name__ == "__main__":
    main()
