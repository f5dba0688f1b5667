"""Networks scored by the reference training over several data splits: a less noisy reference than one training.

    python bench/bench_reference.py train-0=a.yaml supernet-0=b.yaml --splits 5
    python bench/bench_reference.py train-0=a.yaml supernet-0=b.yaml --splits 5 --pairs train-0:supernet-0

`bench_search.py --compare proxies` scores each search's pick by one reference training (proxy-check's:
`--reference-epochs` epochs on the proxy's training split, accuracy on its held-out split, the study's seed). On
the embedded digits that split holds 360 images: one image is 0.28 %, about a third of the gap the comparisons
there turn on. Here every network is trained `--splits` times, split k drawn by seed `--first-split` + k (its
own split of the data and its own initialisation), the same splits for every network, so that two networks are
compared on the same images. Each row gives the mean accuracy, its standard error over the splits, the reward
ACC·(F/T)^-0.07 of the mean, and the held-out predictions the mean rests on; `--pairs A:B` adds the paired
differences (A − B, per split) with their standard error.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

from rich.console import Console
from rich.table import Table

from effnet.nas.net.counting import count_flops
from effnet.nas.net.spec_file import load_spec
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.data import load_proxy_data
from effnet.nas.proxies.factory import make_proxy
from effnet.nas.search.reward import mnasnet_reward
from effnet.nas.training.allocator import configure_allocator

TARGET = 400_000_000


def standard_error(values: list[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("networks", nargs="+", help="LABEL=SPEC.yaml, each network to score")
    parser.add_argument("--splits", type=int, default=5, help="reference trainings per network, one per split")
    parser.add_argument("--first-split", type=int, default=1000, help="the first split's seed")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--reference-epochs", type=int, default=8)
    parser.add_argument("--target-flops", type=float, default=TARGET)
    parser.add_argument("--pairs", nargs="*", default=[], help="A:B, paired differences of two labels")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    configure_allocator()
    console = Console(width=160)
    labelled = [item.split("=", 1) for item in args.networks]
    if any(len(pair) != 2 for pair in labelled):
        raise SystemExit("networks: LABEL=SPEC.yaml each")
    specs = {label: load_spec(path) for label, path in labelled}
    flops = {label: count_flops(spec).total for label, spec in specs.items()}
    reference = ProxyConfig(data=args.data, epochs=args.reference_epochs)
    scores: dict[str, list[float]] = {label: [] for label in specs}
    held_out = 0
    for k in range(args.splits):
        runtime = ProxyRuntime(seed=args.first_split + k, threads=args.threads)
        data = load_proxy_data(reference, runtime)
        held_out += len(data.val)
        proxy = make_proxy(reference, data, runtime)
        for label, spec in specs.items():  # every network on split k before split k + 1: load drifts hit all alike
            started = time.perf_counter()
            scores[label].append(proxy.score(spec))
            console.print(
                f"split {k} (seed {args.first_split + k}): {label} {scores[label][-1]:.4f} "
                f"in {time.perf_counter() - started:.0f} s"
            )
    table = Table(
        title=f"reference: {args.reference_epochs} epochs on {args.data}, {args.splits} splits "
        f"(seeds {args.first_split}..{args.first_split + args.splits - 1}), {held_out} held-out predictions per network"
    )
    for column in ("network", "MFLOPs", "accuracy per split", "mean accuracy", "± s.e.", "reward of the mean"):
        table.add_column(column, justify="left" if column in ("network", "accuracy per split") else "right")
    for label, values in scores.items():
        mean = statistics.mean(values)
        table.add_row(
            label,
            f"{flops[label] / 1e6:.1f}",
            " ".join(f"{v:.4f}" for v in values),
            f"{mean:.4f}",
            f"{standard_error(values):.4f}",
            f"{mnasnet_reward(mean, flops[label], args.target_flops):.4f}",
        )
    console.print(table)
    for pair in args.pairs:
        a, b = pair.split(":")
        differences = [x - y for x, y in zip(scores[a], scores[b], strict=True)]
        reward_a = mnasnet_reward(statistics.mean(scores[a]), flops[a], args.target_flops)
        reward_b = mnasnet_reward(statistics.mean(scores[b]), flops[b], args.target_flops)
        console.print(
            f"{a} − {b}: accuracy {statistics.mean(differences):+.4f} ± {standard_error(differences):.4f} (paired, "
            f"per split {' '.join(f'{d:+.4f}' for d in differences)}); reward {reward_a - reward_b:+.4f}"
        )


if __name__ == "__main__":
    main()
