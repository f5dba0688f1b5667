"""Which choices a supernet learns with: the efficientnet space with some choices held fixed, the rest free.

    python bench/bench_supernet_choices.py                       # every variant below, 5 epochs each
    python bench/bench_supernet_choices.py --only "expand 3|6" --epochs 20

Each variant is the efficientnet space with every stage's block, expand ratio, kernel, SE ratio and skip op
held at one option (mbconv, 6, 3, 0.25, identity) but those it frees, and widths and repeats free throughout.
A supernet of the variant's op and kernel sharing is trained by the product's code (`train_supernet`: each step
one random path of the 400M +- 10 % band, AdamW one-cycle at the proxy's learning rate, digits at 32 px, one
thread) for `--epochs`, then `--paths` random in-band paths are scored with their inherited weights
(`SupernetProxy`: BatchNorm recomputed, validation top-1). A stand-alone network of the band reaches 0.94-0.99
in 8 epochs; a supernet that does not learn leaves its paths near chance (0.10). Prints one row per variant:
the free choices, the sharing, the last epoch's training loss and the paths' mean inherited accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.data import load_proxy_data
from effnet.nas.proxies.supernet_proxy import SupernetProxy
from effnet.nas.proxies.supernet_training import SupernetSetup, draw_path, train_supernet
from effnet.nas.space.choices import SearchSpace
from effnet.nas.space.load import load_space
from effnet.nas.training.allocator import configure_allocator

HELD = {"block": ("mbconv",), "expand": (6,), "kernel": (3,), "se_ratio": (0.25,), "skip": (True,)}
"""Every stage's options where a variant does not free them (EfficientNet-B0's, kernel 3 throughout)."""
NESTING = {"expand": (3, 6), "kernel": (3, 5), "se_ratio": (0.0, 0.25)}
"""The choices that nest (with `nested` ops and `shared` kernels): the efficientnet-nested space's."""
EVERY = {**NESTING, "expand": (1, 3, 6), "skip": (True, False, "pool"), "block": ("mbconv", "dsconv", "conv")}
VARIANTS: list[tuple[str, dict[str, tuple[Any, ...]], str, str]] = [
    ("width, repeats", {}, "separate", "separate"),
    ("+ SE", {"se_ratio": (0.0, 0.25)}, "separate", "separate"),
    ("+ expand 3|6", {"expand": (3, 6)}, "separate", "separate"),
    ("+ expand 3|6", {"expand": (3, 6)}, "nested", "separate"),
    ("+ kernel 3|5", {"kernel": (3, 5)}, "nested", "separate"),
    ("+ kernel 3|5", {"kernel": (3, 5)}, "nested", "shared"),
    ("+ kernel 3|5", {"kernel": (3, 5)}, "nested", "transformed"),
    ("+ expand 3|6, kernel, SE", NESTING, "nested", "shared"),
    ("+ expand 3|6, kernel, SE", NESTING, "nested", "transformed"),
    ("+ expand 1|3|6, kernel, SE", {**NESTING, "expand": (1, 3, 6)}, "nested", "shared"),
    ("+ expand 3|6, kernel, SE, skip", {**NESTING, "skip": (True, False, "pool")}, "nested", "shared"),
    ("+ expand 3|6, kernel, SE, block mbconv|conv", {**NESTING, "block": ("mbconv", "conv")}, "nested", "shared"),
    ("every choice (the efficientnet space)", EVERY, "nested", "shared"),
    ("every choice (the efficientnet space)", EVERY, "separate", "separate"),
]


def variant_space(space: SearchSpace, free: dict[str, tuple[Any, ...]]) -> SearchSpace:
    stages = tuple(dataclasses.replace(stage, **{**HELD, **free}) for stage in space.stages)
    return dataclasses.replace(space, stages=stages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--paths", type=int, default=6)
    parser.add_argument("--only", nargs="+", default=None, help="variants whose label contains one of these")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench-supernet-choices"))
    args = parser.parse_args()
    configure_allocator()
    torch.set_num_threads(1)
    space = load_space("efficientnet")
    low, high = 400e6 * 0.9, 400e6 * 1.1
    runtime = ProxyRuntime(seed=0, threads=1)
    console = Console(width=160)
    table = Table(title=f"supernet inherited accuracy, {args.epochs} epochs, {args.paths} random in-band paths")
    for column in ("free choices", "ops", "kernels", "training s", "last epoch's loss", "inherited accuracy"):
        table.add_column(column, justify="right")
    for label, free, ops, kernels in VARIANTS:
        if args.only and not any(o in label for o in args.only):
            continue
        variant = dataclasses.replace(variant_space(space, free), name=f"efficientnet-bench-{len(table.rows)}")
        config = ProxyConfig(
            name="supernet", data="digits", supernet_epochs=args.epochs, supernet_kernels=kernels, supernet_ops=ops
        )
        data = load_proxy_data(config, runtime)
        setup = SupernetSetup(variant, low, high, args.run_dir)
        started = time.perf_counter()
        trained = train_supernet(setup, config, data, runtime)
        seconds = time.perf_counter() - started
        loss = torch.load(trained.path, weights_only=True)["losses"][-1]
        proxy = SupernetProxy(data, config, runtime, setup)
        rng = random.Random(123)
        scores = [proxy.score(draw_path(variant, rng, low, high)) for _ in range(args.paths)]
        row = [label, ops, kernels, f"{seconds:.0f}", f"{loss:.3f}", f"{statistics.mean(scores):.3f}"]
        console.print(" | ".join(row))
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
