"""Supernet variants against the reference of a finished `effnet proxy-check`: recipe, kernel sharing, epochs,
calibration.

    effnet proxy-check --candidates 12 --run-dir runs/proxy-check          # the reference (8-epoch trainings), once
    python bench/bench_supernet.py runs/proxy-check/proxy_check.yaml --kernels shared separate --epochs 30 60
    python bench/bench_supernet.py runs/proxy-check/proxy_check.yaml --recipes uniform sandwich --epochs 80 20

Reads the candidates (their specs) and the reference accuracies from the proxy-check's `proxy_check.yaml`, trains
a supernet per variant on the same data, band and seed (checkpoints under `--run-dir`, reused by a rerun), scores
every candidate with each, and prints Kendall's tau and Spearman's rho against the reference with p-values,
seconds per candidate, the supernet's training seconds, and the cost ratio against the proxy-check's `train`
proxy after the training is spread over 1,000 candidates. Whether the supernet learns: the candidates' mean
inherited accuracy against their mean reference accuracy, and the band's largest path (the sandwich recipe's
teacher) scored alike: its inherited accuracy and its cross-entropy on the calibration images; and the band's
smallest path's inherited accuracy. `--epochs` pairs
with `--recipes` when both list as many values (a sandwich step trains four paths: equal seconds need about a
quarter of uniform's epochs), else every combination runs.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from rich.console import Console
from rich.table import Table

from effnet.nas.data.sources import DataSplits
from effnet.nas.net.spec_file import spec_from_dict
from effnet.nas.proxies.batches import ProxyBatches
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.data import load_proxy_data
from effnet.nas.proxies.supernet_proxy import SupernetProxy
from effnet.nas.proxies.supernet_recipes import band_extremes
from effnet.nas.proxies.supernet_training import SupernetSetup, draw_path, train_supernet
from effnet.nas.space.load import load_space
from effnet.nas.study.proxy_check import AMORTISED_OVER
from effnet.nas.study.rank import kendall, spearman
from effnet.nas.training.allocator import configure_allocator
from effnet.nas.training.precise_bn import recompute_batch_norm
from effnet.nas.training.runtime import place_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="proxy_check.yaml of a finished proxy-check")
    parser.add_argument("--space", default=None, help="the proxy-check's --space (default: the shipped one it names)")
    parser.add_argument("--recipes", nargs="+", default=["uniform"])
    parser.add_argument("--kernels", nargs="+", default=["shared", "separate"])
    parser.add_argument("--ops", nargs="+", default=["separate"], help="supernet op sharing: separate, nested")
    parser.add_argument("--epochs", nargs="+", type=int, default=[60])
    parser.add_argument("--calibration-batches", nargs="+", type=int, default=[8])
    parser.add_argument("--lr", type=float, default=ProxyConfig.lr, help="the supernet's peak learning rate (AdamW)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench-supernet"))
    args = parser.parse_args()
    configure_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    check = yaml.safe_load(args.reference.read_text())
    space = load_space(args.space or check["space"])
    specs = [spec_from_dict(r["spec"]) for r in check["results"]]
    reference = [r["scores"]["reference"] for r in check["results"]]
    train_seconds = check["correlations"].get("train", {}).get("seconds_per_candidate")
    low, high = (check["target_flops"] * (1 + sign * check["flops_tolerance"]) for sign in (-1, 1))
    console = Console(width=160)
    rows = []
    runs = (
        list(zip(args.recipes, args.epochs, strict=True))
        if len(args.recipes) == len(args.epochs) > 1
        else list(itertools.product(args.recipes, args.epochs))
    )
    for ops, kernels, (recipe, epochs) in itertools.product(args.ops, args.kernels, runs):
        config = ProxyConfig(
            name="supernet",
            data=check["data"],
            resolution=check["resolution"],
            supernet_epochs=epochs,
            supernet_kernels=kernels,
            supernet_recipe=recipe,
            supernet_ops=ops,
            lr=args.lr,
        )
        runtime = ProxyRuntime(seed=check["seed"], threads=args.threads)
        data = load_proxy_data(config, runtime)
        setup = SupernetSetup(space, low, high, args.run_dir)
        trained = train_supernet(
            setup,
            config,
            data,
            runtime,
            on_progress=lambda p: (
                print(f"{p.done}/{p.total} {p.status}", flush=True) if p.done % max(1, p.total // 10) == 0 else None
            ),
        )
        for batches in args.calibration_batches:
            proxy = SupernetProxy(data, config, runtime, setup, calibration_batches=batches)
            seconds, scores = [], []
            for spec in specs:
                started = time.perf_counter()
                scores.append(proxy.score(spec))
                seconds.append(time.perf_counter() - started)
            largest_accuracy, largest_loss, smallest_accuracy = score_extremes(
                proxy, batches, setup, config, data, runtime
            )
            tau, rho = kendall(scores, reference), spearman(scores, reference)
            per = statistics.mean(seconds)
            amortised = per + trained.seconds / AMORTISED_OVER
            rows.append(
                [
                    recipe,
                    ops,
                    kernels,
                    str(epochs),
                    f"{trained.steps:,}",
                    str(batches),
                    f"{trained.seconds:.0f}",
                    f"{statistics.mean(scores):.3f}",
                    f"{statistics.mean(reference):.3f}",
                    f"{statistics.mean(scores) / statistics.mean(reference):.0%}",
                    f"{largest_accuracy:.3f}",
                    f"{largest_loss:.3f}",
                    f"{smallest_accuracy:.3f}",
                    f"{per:.3f}",
                    f"{amortised:.3f}",
                    f"{train_seconds / amortised:.1f}x" if train_seconds else "",
                    f"{tau.statistic:+.3f}",
                    f"{tau.pvalue:.2g}",
                    f"{rho.statistic:+.3f}",
                    f"{rho.pvalue:.2g}",
                ]
            )
            console.print(" ".join(rows[-1]))
    table = Table(
        title=f"supernet variants against {len(specs)} candidates' {check['reference_epochs']}-epoch "
        f"reference ({check['data']}, {check['resolution']} px)"
    )
    for column in (
        "recipe",
        "ops",
        "kernels",
        "epochs",
        "steps",
        "BN batches",
        "training s",
        "inherited acc.",
        "reference acc.",
        "inherited / ref.",
        "largest: acc.",
        "largest: loss",
        "smallest: acc.",
        "s / cand.",
        f"amortised ({AMORTISED_OVER:,})",
        "train proxy / amortised",
        "Kendall τ",
        "p",
        "Spearman ρ",
        "p",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if "train" in check["correlations"]:
        row = check["correlations"]["train"]
        console.print(
            f"train proxy ({check['epochs']} epochs): τ {row['kendall_tau']:+.3f}, "
            f"ρ {row['spearman_rho']:+.3f}, {row['seconds_per_candidate']:.2f} s per candidate"
        )


def score_extremes(
    proxy: SupernetProxy,
    calibration_batches: int,
    setup: SupernetSetup,
    config: ProxyConfig,
    data: DataSplits,
    runtime: ProxyRuntime,
) -> tuple[float, float, float]:
    """The band's largest path (the sandwich recipe's teacher, `band_extremes`) with its inherited weights and
    BatchNorm recomputed as the proxy does: validation top-1, and mean cross-entropy on the calibration batches
    (training images, seen as the proxy sees them); and the band's smallest path's inherited accuracy."""
    draw = functools.partial(draw_path, setup.space, low=setup.low, high=setup.high)
    largest, smallest = band_extremes(setup.space, setup.low, setup.high, draw, runtime.seed)
    accuracy = proxy.score(largest)
    model = place_model(proxy.supernet.standalone(largest), proxy.device)
    recompute_batch_norm(model, (proxy.normalize(x) for x in proxy.calibration), proxy.device)
    batches = ProxyBatches(data, config, runtime)
    batches.sampler.set_epoch(0)  # the proxy's calibration batches, with their labels
    total, count = 0.0, 0
    with torch.no_grad():
        for _, batch in zip(range(calibration_batches), batches.train_loader, strict=False):
            logits = model(proxy.normalize(batch.images.to(proxy.device)))
            total += float(F.cross_entropy(logits, batch.labels.to(proxy.device), reduction="sum"))
            count += len(batch.labels)
    return accuracy, total / count, proxy.score(smallest)


if __name__ == "__main__":
    main()
