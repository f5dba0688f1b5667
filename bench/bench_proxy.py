"""Accuracy proxies on the embedded digits: seconds per candidate and the score, for B0 and variants.

For the reference EfficientNet-B0 and three compound variants of it (narrow, shallow, wide+deep),
one process runs the `train` proxy (default ProxyConfig: 3 epochs, 32 px, batch 64, AdamW
one-cycle) and the two zero-cost scores, and prints a table: seconds per candidate, the score,
and each variant's training time relative to B0's (the baseline, measured in the same process).

    python bench/bench_proxy.py [--epochs 3] [--threads N] [--lr 0.01] [--markdown]
    python bench/bench_proxy.py --sweep [--markdown]   # batch size x threads for the train proxy

`--sweep` trains B0 and its shallow variant at batch 32, 64 and 128 on 1 and 2 threads (interleaved,
in one process) and prints seconds and final accuracy per setting: what the defaults rest on.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time

import torch

from effnet.nas.data.sources import proxy_data
from effnet.nas.net.flops import analytic_cost
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.factory import make_proxy
from effnet.nas.proxies.train import proxy_network
from effnet.nas.training.allocator import configure_allocator
from effnet.scaling.compound import scale
from effnet.scaling.presets import reference_b0


def candidates():
    b0 = reference_b0()
    return [
        ("B0", b0),
        ("B0 width 0.5", scale(b0, depth=1.0, width=0.5, resolution=224, name="w0.5")),
        ("B0 depth 0.5", scale(b0, depth=0.5, width=1.0, resolution=224, name="d0.5")),
        ("B0 width 1.2 depth 1.4", scale(b0, depth=1.4, width=1.2, resolution=224, name="w1.2d1.4")),
    ]


SWEEP_BATCHES = (32, 64, 128)
SWEEP_THREADS = (1, 2)


def sweep(markdown: bool) -> None:
    """Seconds and final accuracy of the train proxy per batch size and thread count."""
    allocator = configure_allocator()
    data = proxy_data("digits", ProxyConfig.resolution, seed=0)
    header = ["candidate", "batch", "threads", "train s", "img/s", "val acc (3rd epoch)"]
    rows = []
    for label, spec in [c for c in candidates() if c[0] in ("B0", "B0 depth 0.5")]:
        for batch in SWEEP_BATCHES:
            for threads in SWEEP_THREADS:
                settings = ProxyConfig(batch_size=batch)
                proxy = make_proxy(settings, data, ProxyRuntime(threads=threads))
                started = time.perf_counter()
                accuracy = proxy.score(spec)
                seconds = time.perf_counter() - started
                images = settings.epochs * proxy.steps_per_epoch() * batch
                rows.append(
                    [label, str(batch), str(threads), f"{seconds:.1f}", f"{images / seconds:.0f}", f"{accuracy:.3f}"]
                )
                print(f"{label} batch {batch} threads {threads}: {seconds:.1f} s, accuracy {accuracy:.3f}", flush=True)
    print(
        f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, allocator: {allocator}; "
        f"digits {ProxyConfig.resolution} px, {ProxyConfig.epochs} epochs, lr {ProxyConfig.lr}"
    )
    print_table(header, rows, markdown)


def print_table(header: list[str], rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        table = [header, *rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        for row in table:
            print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=ProxyConfig.epochs)
    parser.add_argument("--lr", type=float, default=ProxyConfig.lr)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--sweep", action="store_true", help="batch size x threads for the train proxy")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.sweep:
        sweep(args.markdown)
        return
    allocator = configure_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = ProxyConfig(epochs=args.epochs, lr=args.lr)
    data = proxy_data("digits", settings.resolution, seed=0)
    train = make_proxy(settings, data)
    zero_cost = [
        (name, make_proxy(dataclasses.replace(settings, name=name), data)) for name in ("zero-cost", "synflow")
    ]
    rows = []
    for label, spec in candidates():
        params = analytic_cost(proxy_network(spec, data)).params
        accuracies: list[float] = []
        started = time.perf_counter()
        train.score(spec, lambda _epoch, accuracy, into=accuracies: into.append(accuracy))
        seconds = time.perf_counter() - started
        scores = []
        for _name, proxy in zero_cost:
            started = time.perf_counter()
            value = proxy.score(spec)
            scores.append((value, time.perf_counter() - started))
        rows.append((label, params, seconds, accuracies, scores))
        print(f"{label}: {seconds:.1f} s, accuracy per epoch {[round(a, 3) for a in accuracies]}", flush=True)
    baseline = rows[0][2]
    header = [
        "candidate",
        "params",
        "train s",
        "× B0",
        "val acc per epoch",
        "naswot",
        "naswot s",
        "synflow",
        "synflow s",
    ]
    print(
        f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, allocator: {allocator}; digits {settings.resolution} px, "
        f"{settings.epochs} epochs, batch {settings.batch_size}, AdamW one-cycle lr {settings.lr}, "
        f"weight decay {settings.weight_decay}"
    )
    print_table(
        header,
        [
            [
                label,
                f"{params:,}",
                f"{seconds:.1f}",
                f"{seconds / baseline:.2f}",
                " / ".join(f"{a:.3f}" for a in accuracies),
                f"{scores[0][0]:.1f}",
                f"{scores[0][1]:.2f}",
                f"{scores[1][0]:.1f}",
                f"{scores[1][1]:.2f}",
            ]
            for label, params, seconds, accuracies, scores in rows
        ],
        args.markdown,
    )


if __name__ == "__main__":
    main()
