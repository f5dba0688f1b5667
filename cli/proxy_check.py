"""`effnet proxy-check`: can a cheap accuracy proxy be trusted to rank candidates?"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from effnet.cli import options
from effnet.cli.common import ProgressBar, clean_input_errors, console, emit_json, exit_for_signal, literal, set_run_dir
from effnet.cli.options import renamed
from effnet.nas.proxies.names import DEFAULT_PROXIES, PROXY_NAMES


def print_result(summary: dict[str, Any], results: list[Any], proxies: list[str]) -> None:
    from rich.table import Table

    from effnet.nas.study.proxy_check import BASELINES, REFERENCE
    from effnet.nas.units import format_size

    candidates = Table(title=f"candidates ({literal(summary['data'])}, {summary['resolution']} px)")
    for column in ("#", "FLOPs", "params", *proxies, f"{REFERENCE} ({summary['reference_epochs']} ep)"):
        candidates.add_column(column, justify="right")
    for r in results:
        candidates.add_row(
            str(r.index),
            format_size(r.flops),
            format_size(r.params),
            *[_short(r.scores.get(n)) for n in [*proxies, REFERENCE]],
        )
    console.print(candidates)
    table = Table(
        title=f"rank agreement with {summary['reference_epochs']}-epoch training ({summary['candidates']} candidates)"
    )
    table.caption = (
        f"p: two-sided, against no correlation; amortised: seconds per candidate with a one-time cost "
        f"(the supernet's training) spread over {summary['amortised_over']:,} candidates"
    )
    for column in ("proxy", "Kendall τ (p)", "Spearman ρ (p)", "s / cand.", "amortised"):
        table.add_column(column, justify="left" if column == "proxy" else "right")
    for name, row in summary["correlations"].items():
        timed = name not in BASELINES
        table.add_row(
            name if timed else f"{name} (baseline)",
            _show(row["kendall_tau"], row["kendall_p"]),
            _show(row["spearman_rho"], row["spearman_p"]),
            f"{row['seconds_per_candidate']:.3g}" if timed else "",
            f"{row['amortised_seconds']:.3g}" if timed else "",
        )
    console.print(table)
    if summary["supernet"] is not None:
        n = summary["supernet"]
        console.print(
            f"supernet: {n['epochs']} epochs ({n['steps']:,} steps, kernels {n['kernels']}, "
            f"recipe {n['recipe']}) trained in "
            f"{n['training_s']:.0f} s, {literal(n['checkpoint'])}"
        )
    low, high = summary["reference_accuracy"]["min"], summary["reference_accuracy"]["max"]
    if low is not None:
        console.print(f"reference accuracy spans {low:.4f}–{high:.4f}")
    console.print(literal(f"architectures and scores: {summary['csv']}, {summary['yaml']}"))


def _short(value: float | None) -> str:
    return "failed" if value is None else f"{value:.4g}"


def _show(value: float | None, p: float | None) -> str:
    return "n/a" if value is None or p is None else f"{value:+.3f} ({p:.2g})"


@clean_input_errors()
def proxy_check(
    target_flops: str = typer.Option("400M", "--target-flops", "-t", help="FLOPs target T: 400M, 0.4G, 400e6."),
    flops_tolerance: float = typer.Option(0.1, "--flops-tolerance", help="Candidates are drawn inside T·(1±tol)."),
    space: str | None = typer.Option(
        None, "--space", help="Search space: efficientnet (default), efficientnet-nested, mnasnet, or a YAML file."
    ),
    data: str = options.DATA,
    proxy: list[str] | None = typer.Option(
        None,
        "--proxy",
        help=f"Cheap proxy to check, repeatable: {', '.join(PROXY_NAMES)} "
        f"(default: {', '.join(DEFAULT_PROXIES)}); zero-cost is NASWOT.",
    ),
    proxy_epochs: int | None = typer.Option(
        None, "--proxy-epochs", help="Epochs of the cheap `train` proxy (default: 3)."
    ),
    epochs: int | None = options.OLD_EPOCHS,
    supernet_epochs: int = options.SUPERNET_EPOCHS,
    supernet_kernels: str = options.SUPERNET_KERNELS,
    supernet_recipe: str = options.SUPERNET_RECIPE,
    supernet_ops: str = options.SUPERNET_OPS,
    reference_epochs: int = typer.Option(8, "--reference-epochs", help="Epochs of the reference training."),
    candidates: int = typer.Option(8, "--candidates", "-n", help="Candidates to draw and score."),
    proxy_resolution: int | None = typer.Option(
        None, "--proxy-resolution", help="Image size the proxies and the reference train at (default: 32)."
    ),
    resolution: int | None = typer.Option(
        None, "--resolution", hidden=True, help="Deprecated name of --proxy-resolution."
    ),
    seed: int = typer.Option(0, "--seed", help="Seeds the candidate draw, the data split and every training."),
    proxy_train_images: int | None = options.PROXY_TRAIN_IMAGES,
    proxy_val_images: int | None = options.PROXY_VAL_IMAGES,
    augment: str = options.AUGMENT,
    loader_workers: int | None = options.LOADER_WORKERS,
    cache_dir: Path | None = options.CACHE_DIR,
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: torch's)."),
    run_dir: Path = typer.Option(Path("runs/proxy-check"), "--run-dir", help="Where proxy_check.csv and .yaml go."),
    force: bool = options.FORCE,
    as_json: bool = options.JSON,
) -> None:
    """Rank-check cheap accuracy proxies against a longer training (Kendall τ, Spearman ρ with p-values,
    params/FLOPs baselines)."""
    from effnet.nas.signals import Interrupted
    from effnet.nas.study.proxy_check import ProxyCheckConfig
    from effnet.nas.study.proxy_check import proxy_check as run_check
    from effnet.nas.units import parse_size

    config = ProxyCheckConfig(
        target_flops=parse_size(target_flops, "--target-flops"),
        flops_tolerance=flops_tolerance,
        space=space,
        data=data,
        proxies=tuple(dict.fromkeys(proxy or DEFAULT_PROXIES)),
        epochs=renamed(proxy_epochs, epochs, "--proxy-epochs", "--epochs", 3),
        reference_epochs=reference_epochs,
        candidates=candidates,
        resolution=renamed(proxy_resolution, resolution, "--proxy-resolution", "--resolution", 32),
        seed=seed,
        device=device,
        threads=threads,
        run_dir=run_dir,
        train_images=proxy_train_images,
        val_images=proxy_val_images,
        augment=augment,
        loader_workers=loader_workers,
        cache_dir=cache_dir,
        supernet_epochs=supernet_epochs,
        supernet_kernels=supernet_kernels,
        supernet_recipe=supernet_recipe,
        supernet_ops=supernet_ops,
        force=force,
    )
    set_run_dir(run_dir)
    try:
        with ProgressBar("proxy-check", plain=as_json) as bar:
            result = run_check(config, on_progress=bar)
    except Interrupted as stop:  # only while the supernet trains
        exit_for_signal(stop.signum, "the supernet's checkpoint is")
    summary = result.as_dict()
    if as_json:
        emit_json(summary)
    else:
        print_result(summary, result.results, list(config.proxies))
