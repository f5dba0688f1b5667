"""Strictly fair sampling (FairNAS) of the ops a supernet's layers switch between, against uniform paths.

    python bench/bench_supernet_fair.py --sampling fair uniform --epochs 5
    python bench/bench_supernet_fair.py --sampling fair --ops separate --kernels separate --epochs 5

FairNAS (Chu et al., ICCV 2021): each step trains as many paths as a layer has ops, every op of every layer
exactly once among them (a random permutation per stage), the gradients accumulated into one optimizer step.
Here a layer's ops are the supernet's (`op_key`: with `nested` ops mbconv at expand 3 or 6, the blocks without
an expansion, conv; with `separate` ops each block type and expand ratio), on the efficientnet space, whose
supernet does not learn with one uniform path a step (`bench_supernet_choices.py`: its block types are the
choice that keeps it at chance). A fair path's other choices are drawn uniformly, redrawn up to `BAND_DRAWS`
times to land in the 400M +- 10 % band (FairNAS has no band; `in band` reports how many did). `uniform` trains
as many uniformly drawn in-band paths a step, the same work. The same proxy settings as the product's
supernet (digits at 32 px, AdamW one-cycle at the proxy's learning rate, no dropout, one thread); then `--paths`
random in-band paths are scored with their inherited weights as the supernet proxy scores them (BatchNorm
recomputed on 8 training batches, validation top-1; chance is 0.10, a stand-alone network of the band reaches
0.94-0.99 in 8 epochs). The training loop is this bench's own: fair sampling is not one of the product's recipes.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from effnet.nas.data.loader import sample_seed
from effnet.nas.net.flops import analytic_flops
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.proxies.batches import ProxyBatches
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.data import load_proxy_data
from effnet.nas.proxies.elastic import KERNEL_SHARING
from effnet.nas.proxies.supernet import Supernet, op_key
from effnet.nas.proxies.supernet_training import draw_path
from effnet.nas.proxies.train import CALIBRATION_BATCHES, parameter_groups
from effnet.nas.space.choices import SearchSpace
from effnet.nas.space.load import load_space
from effnet.nas.training.allocator import configure_allocator
from effnet.nas.training.evaluate import top1_accuracy
from effnet.nas.training.precise_bn import recompute_batch_norm

BAND_DRAWS = 200
"""Draws of a fair path's other choices to land in the FLOPs band before it is trained outside it."""
LOW, HIGH = 400e6 * 0.9, 400e6 * 1.1


def op_groups(space: SearchSpace, ops: str) -> list[list[list[tuple[str, int]]]]:
    """Per stage, its (block, expand) options grouped by the supernet op each runs on."""
    groups = []
    for stage in space.stages:
        by_op: dict[str, list[tuple[str, int]]] = {}
        for block in stage.block:
            for expand in stage.expand if block == "mbconv" else (1,):
                by_op.setdefault(op_key(block, expand, ops), []).append((block, expand))
        groups.append(list(by_op.values()))
    return groups


def fair_paths(
    space: SearchSpace, groups: Sequence[Sequence[Sequence[tuple[str, int]]]], rng: random.Random
) -> list[NetworkSpec]:
    """One step's paths: as many as the most ops a stage has, each stage's ops once each (cycled where a stage
    has fewer), in a random order per stage."""
    count = max(len(g) for g in groups)
    orders = [rng.sample(range(len(g)), len(g)) for g in groups]
    paths = []
    for j in range(count):
        chosen = [g[order[j % len(g)]] for g, order in zip(groups, orders, strict=True)]
        options = [rng.choice(c) for c in chosen]
        for _ in range(BAND_DRAWS):

            def pick(name: str, values: Sequence[Any], options: list[tuple[str, int]] = options) -> Any:
                stage = int(name[1 : name.index("_")]) - 1
                if name.endswith("_block"):
                    return options[stage][0]
                if name.endswith("_expand"):
                    return options[stage][1]
                return rng.choice(list(values))

            spec = space.build(pick)
            if LOW <= analytic_flops(spec) <= HIGH:
                break
        paths.append(spec)
    return paths


def run(sampling: str, ops: str, kernels: str, epochs: int, score_paths: int, console: Console) -> list[str]:
    space = load_space("efficientnet")
    config = ProxyConfig(name="supernet", data="digits", supernet_epochs=epochs, supernet_kernels=kernels)
    runtime = ProxyRuntime(seed=0, threads=1)
    data = load_proxy_data(config, runtime)
    batches = ProxyBatches(data, config, runtime)
    torch.manual_seed(0)
    supernet = Supernet(space, data.resolution, data.num_classes, data.in_channels, kernels, ops)
    steps = batches.steps_per_epoch()
    optimizer = torch.optim.AdamW(parameter_groups(supernet, config.weight_decay), lr=config.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=epochs * steps)
    groups = op_groups(space, ops)
    per_step = max(len(g) for g in groups)
    in_band = trained = 0
    losses: list[float] = []
    started = time.perf_counter()
    supernet.train()
    for epoch in range(1, epochs + 1):
        batches.sampler.set_epoch(epoch)
        losses = []
        for step, batch in zip(range(steps), batches.train_loader, strict=False):
            rng = random.Random(sample_seed(0, epoch, step))
            images, labels = batches.normalize(batch.images), batch.labels
            paths: list[NetworkSpec] = (
                fair_paths(space, groups, rng)
                if sampling == "fair"
                else [draw_path(space, rng, LOW, HIGH) for _ in range(per_step)]
            )
            optimizer.zero_grad(set_to_none=True)
            for path in paths:
                in_band += LOW <= analytic_flops(path) <= HIGH
                trained += 1
                loss = F.cross_entropy(supernet(images, path.replace(dropout=0.0, drop_connect=0.0)), labels)
                (loss / len(paths)).backward()
                losses.append(loss.item())
            optimizer.step()
            schedule.step()
        console.print(f"{sampling} {ops}/{kernels}: epoch {epoch}, loss {statistics.mean(losses):.3f}")
    seconds = time.perf_counter() - started
    batches.sampler.set_epoch(0)
    calibration = [b.images for _, b in zip(range(CALIBRATION_BATCHES), batches.train_loader, strict=False)]
    val = [(b.images, b.labels) for b in batches.val_loader]
    rng = random.Random(123)
    scores = []
    for _ in range(score_paths):
        model = supernet.standalone(draw_path(space, rng, LOW, HIGH))
        recompute_batch_norm(model, (batches.normalize(x) for x in calibration), torch.device("cpu"))
        scores.append(top1_accuracy(model, ((batches.normalize(x), y) for x, y in val), torch.device("cpu")))
    return [
        sampling,
        f"{ops} / {kernels}",
        str(per_step),
        f"{epochs} ({epochs * steps})",
        f"{seconds:.0f}",
        f"{in_band}/{trained}",
        f"{statistics.mean(losses):.3f}",
        f"{statistics.mean(scores):.3f} ({min(scores):.3f}-{max(scores):.3f})",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sampling", nargs="+", choices=("fair", "uniform"), default=["fair", "uniform"])
    parser.add_argument("--ops", default="nested", choices=("nested", "separate"))
    parser.add_argument("--kernels", default="shared", choices=KERNEL_SHARING)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--paths", type=int, default=6, help="random in-band paths scored with inherited weights")
    args = parser.parse_args()
    configure_allocator()
    torch.set_num_threads(1)
    console = Console(width=160)
    table = Table(title="the efficientnet space's supernet: fair against uniform sampling, digits at 32 px")
    columns = ("sampling", "ops / kernels", "paths a step", "epochs (steps)", "training s", "in band")
    for column in (*columns, "last epoch's loss", "inherited accuracy (range)"):
        table.add_column(column, justify="right")
    for sampling in args.sampling:
        table.add_row(*run(sampling, args.ops, args.kernels, args.epochs, args.paths, console))
    console.print(table)


if __name__ == "__main__":
    main()
