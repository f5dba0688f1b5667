"""The search's samplers and proxies, side by side in one process.

    python bench/bench_search.py                      # TPE against random search: 3 seeds x 12 trained trials
    python bench/bench_search.py --trials 6 --seeds 1 # a quick look
    python bench/bench_search.py --proxy zero-cost --trials 40   # the samplers alone, on a fast proxy
    python bench/bench_search.py --compare proxies --wall 8m --seeds 3   # supernet against train, equal wall time
    python bench/bench_search.py --compare proxies --wall 5m --seeds 3 --space efficientnet-nested \
        --supernet-ops nested --supernet-kernels shared --supernet-epochs 60   # a supernet that learns
    python bench/bench_search.py --compare proxies --wall 5m --seeds 3 --space efficientnet-nested \
        --supernet-ops nested --supernet-kernels shared --supernet-epochs 40 --rescore-top 4   # the train proxy decides
    python bench/bench_search.py --compare proxies --wall 15m --seeds 3 --space efficientnet-nested \
        --supernet-ops nested --supernet-kernels shared --supernet-recipe sandwich --supernet-epochs 10 --rescore-top 4
    python bench/bench_search.py --samplers tpe,nsga2 --proxy supernet --trials 300 --space efficientnet-nested \
        --supernet-ops nested --supernet-kernels shared --supernet-epochs 40   # evolution on the supernet's scores

`--compare samplers` (default): for each of the two `--samplers` (TPE and random search by default) and seed
it runs the default search (`effnet search` defaults: 400M ± 10 %, the efficientnet space, the train proxy on
the embedded digits; `--space`, `--proxy` and the supernet's settings change them) for `--trials` candidates
into a fresh run directory and reports the best reward, trials per minute, and the share of wall time spent
outside proxy training (sampling, analytic FLOPs, storage writes, pruning checks, out-of-band trials, and the
search's closing work: the best candidate's fvcore count, trials.csv, plots, the report; a supernet's training
counts as training). With the supernet proxy each run trains its own supernet (the same
one for the same seed) and the best reward is the supernet's score: `tpe,nsga2` asks whether Once-for-All's
evolutionary search (Optuna's NSGA-II, a genetic algorithm, on the one objective) finds better candidates of
the trained supernet than TPE does.

`--compare proxies`: for each seed, the default search with the `train` proxy and with the `supernet` proxy,
each given the same wall time (`--wall`; the supernet's training counts in it) and no trial limit; the best
in-band candidate each finds is then trained by the same longer reference training as `effnet proxy-check`'s
(`--reference-epochs`, the study's seed) and compared by that accuracy and its reward. `--keep-picks DIR` keeps
each pick's spec, for `bench_reference.py` to score again over more data splits than the study's one.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from rich.console import Console
from rich.table import Table

from effnet.cli.options import parse_duration
from effnet.nas.choices import SAMPLERS
from effnet.nas.net.spec_file import dump_spec
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.data import load_proxy_data
from effnet.nas.proxies.factory import make_proxy
from effnet.nas.search.config import SearchConfig
from effnet.nas.search.reward import mnasnet_reward
from effnet.nas.search.search import search
from effnet.nas.search.trials import best_trial
from effnet.nas.study.storage import open_storage
from effnet.nas.study.study_config import StudyConfig
from effnet.nas.study.trial_attrs import REWARD_ATTR, WORK_SECONDS_ATTR
from effnet.nas.training.allocator import configure_allocator

TARGET = 400_000_000


def proxy_config(proxy: str, args: argparse.Namespace) -> ProxyConfig:
    """The proxy as the command line sets it: the train proxy's epochs, the supernet's settings."""
    return ProxyConfig(
        name=proxy,
        data=args.data,
        epochs=args.epochs,
        supernet_epochs=args.supernet_epochs,
        supernet_kernels=args.supernet_kernels,
        supernet_ops=args.supernet_ops,
        supernet_recipe=args.supernet_recipe,
    )


def run_one(sampler: str, seed: int, args: argparse.Namespace, root: Path) -> dict:
    """One search of `args.trials` candidates with `sampler`, in a run directory of its own (a supernet proxy's
    training included: the same seed trains the same supernet, as a user's run would)."""
    run_dir = root / f"{sampler}-{seed}"
    config = SearchConfig(
        target_flops=TARGET,
        sampler=sampler,
        trials=args.trials,
        space=args.space,
        proxy=proxy_config(args.proxy, args),
        study=StudyConfig(run_dir=run_dir, name="search", seed=seed, threads=args.threads),
    )
    started = time.perf_counter()
    result = search(config)  # the supernet's training first, where the proxy is the supernet
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name="search", storage=open_storage(None, run_dir))
    trials_done = study.get_trials(deepcopy=False)
    training = sum(t.user_attrs.get(WORK_SECONDS_ATTR, 0.0) for t in trials_done)
    training += (result.supernet or {}).get("trained_now_s", 0.0)
    best = best_trial(study, config)
    summary = result.summary
    return {
        "sampler": sampler,
        "seed": seed,
        "wall_s": wall,
        "best_reward": best.user_attrs[REWARD_ATTR] if best else float("nan"),
        "trained": summary.trained,
        "outside": summary.outside_band,
        "pruned": summary.pruned,
        "trained_per_min": summary.trained / wall * 60,
        "outside_share": 1 - training / wall,
    }


def interleaved(
    seeds: int,
    arms: tuple[str, ...],
    run: Callable[[str, int, Path], dict],
    line: Callable[[dict], str],
    console: Console,
    first_seed: int = 0,
) -> list[dict]:
    """Every arm once per seed, in a temporary directory, interleaved so that machine noise hits all alike."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(first_seed, first_seed + seeds):
            for arm in arms:
                rows.append(run(arm, seed, Path(tmp)))
                console.print(f"{arm} seed {seed}: {line(rows[-1])}")
    return rows


def compare_samplers(args: argparse.Namespace, console: Console) -> None:
    samplers = tuple(args.samplers.split(","))
    if len(set(samplers)) != 2 or len(samplers) != 2 or not set(samplers) <= set(SAMPLERS):
        raise SystemExit(f"--samplers: two different of {', '.join(SAMPLERS)}, comma-separated; got {args.samplers!r}")
    rows = interleaved(
        args.seeds,
        samplers,
        lambda sampler, seed, root: run_one(sampler, seed, args, root),
        lambda row: (
            f"best reward {row['best_reward']:.4f}, {row['trained']} trained / {row['outside']} outside "
            f"band in {row['wall_s']:.0f} s"
        ),
        console,
        args.first_seed,
    )
    table = Table(
        title=f"{samplers[0]} vs {samplers[1]}: {args.trials} candidates per run, {args.data}, space "
        f"{args.space or 'efficientnet'}, {args.proxy} proxy ({args.epochs} epochs if train), 400M ± 10 %"
    )
    for column in (
        "sampler",
        "seed",
        "best reward",
        "trained",
        "pruned",
        "outside band",
        "trained/min",
        "time outside training",
    ):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r["sampler"],
            str(r["seed"]),
            f"{r['best_reward']:.4f}",
            str(r["trained"]),
            str(r["pruned"]),
            str(r["outside"]),
            f"{r['trained_per_min']:.1f}",
            f"{r['outside_share']:.1%}",
        )
    table.add_section()
    means = {}
    for sampler in samplers:
        mine = [r for r in rows if r["sampler"] == sampler]
        means[sampler] = statistics.mean(r["best_reward"] for r in mine)
        table.add_row(
            f"{sampler} mean",
            "",
            f"{means[sampler]:.4f}",
            "",
            "",
            "",
            f"{statistics.mean(r['trained_per_min'] for r in mine):.1f}",
            f"{statistics.mean(r['outside_share'] for r in mine):.1%}",
        )
    console.print(table)
    first, second = samplers
    console.print(f"best-reward ratio {first} / {second}: {means[first] / means[second]:.3f}")


def search_for(proxy: str, seed: int, wall: float, args: argparse.Namespace, root: Path) -> dict:
    """One search with `proxy` for `wall` seconds; its best in-band candidate scored by the reference training."""
    config = SearchConfig(
        target_flops=TARGET,
        trials=10_000_000,
        space=args.space,
        proxy=proxy_config(proxy, args),
        study=StudyConfig(
            run_dir=root / f"{proxy}-{seed}", name="search", seed=seed, timeout_s=wall, threads=args.threads
        ),
        rescore_top=args.rescore_top if proxy == "supernet" else 0,
    )
    started = time.perf_counter()
    result = search(config)
    wall_s = time.perf_counter() - started
    row = {
        "proxy": proxy,
        "seed": seed,
        "wall_s": wall_s,
        "trained": result.summary.trained,
        "proxy_reward": result.top[0].reward if result.top else float("nan"),
        "reference": float("nan"),
        "reference_reward": float("nan"),
        "architecture": "",
        "supernet_s": (result.supernet or {}).get("trained_now_s", 0.0),
        "rescored": (result.rescored or {}).get("completed", 0),
    }
    if result.best_spec is not None:
        reference = ProxyConfig(data=args.data, epochs=args.reference_epochs)
        runtime = ProxyRuntime(seed=seed, threads=args.threads)
        accuracy = make_proxy(reference, load_proxy_data(reference, runtime), runtime).score(result.best_spec)
        row.update(
            reference=accuracy,
            reference_reward=mnasnet_reward(accuracy, result.best_flops, TARGET),
            architecture=result.best_spec.summary,
        )
        if args.keep_picks is not None:  # for bench_reference.py: the pick scored again over more splits
            dump_spec(result.best_spec, Path(args.keep_picks) / f"{proxy}-{seed}.yaml", replace=True)
    return row


def compare_proxies(args: argparse.Namespace, console: Console) -> None:
    wall = parse_duration(args.wall, "--wall")
    arms = tuple(args.proxies.split(","))
    if not arms or not set(arms) <= {"train", "supernet"}:
        raise SystemExit(f"--proxies: train, supernet or both, comma-separated; got {args.proxies!r}")
    rows = interleaved(
        args.seeds,
        arms,
        lambda proxy, seed, root: search_for(proxy, seed, wall, args, root),
        lambda row: (
            f"{row['trained']} candidates in {row['wall_s']:.0f} s, best {row['architecture']} reference "
            f"accuracy {row['reference']:.4f}"
        ),
        console,
        args.first_seed,
    )
    rescore = f", its top {args.rescore_top} re-scored by the train proxy" if args.rescore_top else ""
    table = Table(
        title=f"train proxy ({args.epochs} epochs) vs supernet ({args.supernet_epochs} epochs{rescore}, ops "
        f"{args.supernet_ops}, kernels {args.supernet_kernels}, recipe {args.supernet_recipe}) at equal wall time "
        f"{args.wall}, {args.data}, space {args.space or 'efficientnet'}; best candidate trained "
        f"{args.reference_epochs} epochs"
    )
    for column in (
        "proxy",
        "seed",
        "wall s",
        "supernet s",
        "candidates",
        "rescored",
        "proxy reward",
        "reference acc",
        "reference reward",
        "best candidate",
    ):
        table.add_column(column, justify="left" if column == "best candidate" else "right")
    for r in rows:
        table.add_row(
            r["proxy"],
            str(r["seed"]),
            f"{r['wall_s']:.0f}",
            f"{r['supernet_s']:.0f}",
            str(r["trained"]),
            str(r["rescored"]),
            f"{r['proxy_reward']:.4f}",
            f"{r['reference']:.4f}",
            f"{r['reference_reward']:.4f}",
            r["architecture"],
        )
    table.add_section()
    for proxy in arms:
        mine = [r for r in rows if r["proxy"] == proxy]
        table.add_row(
            f"{proxy} mean",
            "",
            "",
            "",
            f"{statistics.mean(r['trained'] for r in mine):.0f}",
            "",
            "",
            f"{statistics.mean(r['reference'] for r in mine):.4f}",
            f"{statistics.mean(r['reference_reward'] for r in mine):.4f}",
            "",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", choices=("samplers", "proxies"), default="samplers")
    parser.add_argument("--trials", type=int, default=12, help="trained candidates per run (samplers)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=3, help="the train proxy's epochs")
    parser.add_argument("--proxy", default="train", help="samplers: train (default), zero-cost or supernet")
    parser.add_argument("--samplers", default="tpe,random", help="samplers: the two compared, comma-separated")
    parser.add_argument("--wall", default="8m", help="proxies: each search's wall time (480, 8m)")
    parser.add_argument("--supernet-epochs", type=int, default=ProxyConfig.supernet_epochs)
    parser.add_argument("--supernet-kernels", default=ProxyConfig.supernet_kernels)
    parser.add_argument("--supernet-ops", default=ProxyConfig.supernet_ops)
    parser.add_argument("--supernet-recipe", default=ProxyConfig.supernet_recipe, help="uniform or sandwich")
    parser.add_argument(
        "--proxies", default="train,supernet", help="proxies: the arms, comma-separated (one each to run them apart)"
    )
    parser.add_argument("--rescore-top", type=int, default=0, help="proxies: the supernet search's --rescore-top")
    parser.add_argument("--space", default=None, help="the search space (default: the default search's)")
    parser.add_argument("--reference-epochs", type=int, default=8, help="proxies: the best candidate's training")
    parser.add_argument("--keep-picks", default=None, help="proxies: a folder for each pick's spec, PROXY-SEED.yaml")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    configure_allocator()
    console = Console(width=180)
    if args.compare == "samplers":
        compare_samplers(args, console)
    else:
        compare_proxies(args, console)


if __name__ == "__main__":
    main()
