"""TPE against random search at an equal budget, on the same proxy, side by side in one process.

    python bench/bench_search.py                      # digits, train proxy, 3 seeds x 12 trained trials
    python bench/bench_search.py --trials 6 --seeds 1 # a quick look
    python bench/bench_search.py --proxy zero-cost --trials 40   # the samplers alone, on a fast proxy

For each sampler and seed it runs the default search (`effnet search` defaults: 400M ± 10 %,
the efficientnet space, the train proxy on the embedded digits) into a fresh run directory and
reports the best reward, trials per minute, and the share of wall time spent outside proxy
training (sampling, analytic FLOPs, storage writes, pruning checks, out-of-band trials).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from effnet.nas.proxies import ProxyConfig
from effnet.nas.study.report import best_trial
from effnet.nas.study.runner import StudyConfig, run_study
from effnet.nas.study.search import SearchConfig, SearchJob, check_search, summarize


def run_one(sampler: str, seed: int, trials: int, data: str, epochs: int, proxy: str, root: Path) -> dict:
    config = SearchConfig(target_flops=400_000_000, sampler=sampler, trials=trials,
                          proxy=ProxyConfig(name=proxy, data=data, epochs=epochs),
                          study=StudyConfig(run_dir=root / f"{sampler}-{seed}", name="search", seed=seed))
    started = time.perf_counter()
    study = run_study(SearchJob(config, check_search(config)), config.study).study
    wall = time.perf_counter() - started
    trials_done = study.get_trials(deepcopy=False)
    training = sum(t.user_attrs.get("proxy_seconds", 0.0) for t in trials_done)
    best = best_trial(study, config)
    summary = summarize(study)
    return {
        "sampler": sampler, "seed": seed, "wall_s": wall,
        "best_reward": best.user_attrs["reward"] if best else float("nan"),
        "trained": summary.trained, "outside": summary.outside_band, "pruned": summary.pruned,
        "trained_per_min": summary.trained / wall * 60, "outside_share": 1 - training / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="trained candidates per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--proxy", default="train", help="train (default) or zero-cost")
    args = parser.parse_args()
    console = Console()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for sampler in ("tpe", "random"):  # interleaved, so machine noise hits both alike
                row = run_one(sampler, seed, args.trials, args.data, args.epochs, args.proxy, Path(tmp))
                console.print(f"{sampler} seed {seed}: best reward {row['best_reward']:.4f}, "
                              f"{row['trained']} trained / {row['outside']} outside band in {row['wall_s']:.0f} s")
                rows.append(row)
    table = Table(title=f"TPE vs random search: {args.trials} trained candidates per run, {args.data}, "
                        f"{args.proxy} proxy ({args.epochs} epochs if train), 400M ± 10 %")
    for column in ("sampler", "seed", "best reward", "trained", "pruned", "outside band", "trained/min",
                   "time outside training"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(r["sampler"], str(r["seed"]), f"{r['best_reward']:.4f}", str(r["trained"]), str(r["pruned"]),
                      str(r["outside"]), f"{r['trained_per_min']:.1f}", f"{r['outside_share']:.1%}")
    table.add_section()
    means = {}
    for sampler in ("tpe", "random"):
        mine = [r for r in rows if r["sampler"] == sampler]
        means[sampler] = statistics.mean(r["best_reward"] for r in mine)
        table.add_row(f"{sampler} mean", "", f"{means[sampler]:.4f}", "", "", "",
                      f"{statistics.mean(r['trained_per_min'] for r in mine):.1f}",
                      f"{statistics.mean(r['outside_share'] for r in mine):.1%}")
    console.print(table)
    console.print(f"best-reward ratio TPE / random: {means['tpe'] / means['random']:.3f}")


if __name__ == "__main__":
    main()
