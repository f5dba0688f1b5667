"""`effnet search`: find a base network B0 near a FLOPs target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from effnet.cli import options
from effnet.cli.common import (
    ProgressBar,
    clean_input_errors,
    console,
    emit_json,
    exit_for_signal,
    literal,
    print_notes,
    progress_console,
    set_run_dir,
    warn_skipped,
)
from effnet.nas.choices import OBJECTIVES, PRUNERS, SAMPLERS


def print_result(result: Any) -> None:
    from rich.table import Table

    from effnet.nas.study.chance import chance_line
    from effnet.nas.units import format_size

    c = result.config
    table = Table(
        title=f"best candidates (target {format_size(c.target_flops)} FLOPs ±{c.flops_tolerance:.0%}, {c.objective})"
    )
    for column in ("trial", "reward", "accuracy", "FLOPs", "params", "architecture"):
        table.add_column(column, justify="left" if column == "architecture" else "right")
    for t in result.top:
        table.add_row(
            str(t.trial),
            f"{t.reward or 0:.4f}",
            f"{t.accuracy or 0:.4f}",
            format_size(t.flops),
            format_size(t.params),
            literal(t.architecture),
        )
    console.print(table)
    data, s = result.as_dict(), result.summary
    if result.supernet is not None:
        n = result.supernet
        console.print(
            f"supernet: {n['steps']:,} of {n['total_steps']:,} steps in {n['training_s']:.0f} s "
            f"({n['trained_now_s']:.0f} s in this run), {literal(n['checkpoint'])}"
        )
    if result.threads is not None:
        console.print(f"CPU threads: {result.threads['reason']}")
    console.print(
        f"trained {s.completed} completed + {s.pruned} pruned, {s.failed} failed, {s.outside_band} "
        f"sampled outside the band (not trained); stopped by {result.stop_reason} after "
        f"{result.elapsed_s:.0f} s"
    )
    if result.best_spec is not None:
        console.print(
            f"b0: {literal(data['best_spec'])} ({format_size(data['flops'])} FLOPs by fvcore, "
            f"{format_size(data['params'])} params, proxy accuracy {data['accuracy']:.4f})"
        )
    else:
        console.print("[yellow]no candidate inside the band finished training yet; rerun to continue[/]")
    if data["chance"] is not None:
        console.print(chance_line(data["chance"], "an accuracy"))
    console.print(literal(f"trials: {data['trials_csv']}  plots: {', '.join(data['plots'])}"))


@clean_input_errors()
def search(
    target_flops: str = typer.Option("400M", "--target-flops", "-t", help="FLOPs target T: 400M, 0.4G, 400e6."),
    flops_tolerance: float = typer.Option(
        0.1, "--flops-tolerance", help="Band around T: candidates outside T·(1±tol) are never trained."
    ),
    objective: str = typer.Option(
        "reward",
        "--objective",
        help=f"{' | '.join(OBJECTIVES)}: soft reward ACC·(F/T)^-0.07, hard constraint, or "
        "accuracy-vs-FLOPs Pareto (NSGA-II).",
        autocompletion=lambda: list(OBJECTIVES),
    ),
    space: str | None = typer.Option(
        None, "--space", help="Search space: efficientnet (default), mnasnet, or a YAML file."
    ),
    proxy: str = typer.Option(
        "train",
        "--proxy",
        help="Accuracy proxy: train (short training, pruned), supernet "
        "(weights inherited from one supernet trained first), "
        "zero-cost (NASWOT) or synflow.",
    ),
    data: str = options.DATA,
    proxy_epochs: int | None = options.PROXY_EPOCHS,
    epochs: int | None = options.OLD_EPOCHS,
    proxy_resolution: int = typer.Option(32, "--proxy-resolution", help="Image size the proxy trains at."),
    resolution: str | None = typer.Option(
        None,
        "--resolution",
        help="The base network's resolution, where the FLOPs target is counted (default: "
        "the space's 224, lowered for a folder of smaller images to their median short "
        "side, a multiple of 16).",
    ),
    classes: str | None = options.CLASSES,
    batch_size: int = options.BATCH_SIZE,
    supernet_epochs: int = options.SUPERNET_EPOCHS,
    supernet_kernels: str = options.SUPERNET_KERNELS,
    proxy_train_images: int | None = options.PROXY_TRAIN_IMAGES,
    proxy_val_images: int | None = options.PROXY_VAL_IMAGES,
    augment: str = options.AUGMENT,
    loader_workers: int | None = options.LOADER_WORKERS,
    cache_dir: Path | None = options.CACHE_DIR,
    trials: int = typer.Option(
        30, "--trials", "-n", help="Candidates to train (the study's total; a rerun resumes towards it)."
    ),
    timeout: str = typer.Option("8m", "--timeout", help="Wall-clock limit of this run: 480, 8m, 2h or none."),
    workers: int = options.WORKERS,
    storage: str | None = options.STORAGE,
    study_name: str = typer.Option("search", "--study", help="Study name inside the storage."),
    run_dir: Path | None = options.STUDY_RUN_DIR,
    force: bool = options.FORCE,
    seed: int = typer.Option(
        0,
        "--seed",
        help="The study's seed: proxy trainings, data split, and (with each "
        "worker's first trial number) every sampler. Every worker and "
        "machine on one study uses the same.",
    ),
    sampler: str = typer.Option(
        "tpe", "--sampler", help=f"{' | '.join(SAMPLERS)}", autocompletion=lambda: list(SAMPLERS)
    ),
    pruner: str = typer.Option(
        "hyperband", "--pruner", help=f"{' | '.join(PRUNERS)}", autocompletion=lambda: list(PRUNERS)
    ),
    device: str = options.STUDY_DEVICE,
    threads: int | None = options.THREADS,
    as_json: bool = options.JSON,
) -> None:
    """Search a base network B0 near a FLOPs target (MnasNet space, Optuna, measured accuracy proxy)."""
    from effnet.nas.search.config import SearchConfig
    from effnet.nas.search.search import search as run_search
    from effnet.nas.units import format_size, parse_size

    run_dir = run_dir or Path("runs") / study_name
    config = SearchConfig(
        target_flops=parse_size(target_flops, "--target-flops"),
        flops_tolerance=flops_tolerance,
        objective=objective,
        space=space,
        trials=trials,
        sampler=sampler,
        pruner=pruner,
        proxy=options.proxy_config(
            proxy,
            data,
            proxy_epochs,
            epochs,
            proxy_resolution,
            batch_size,
            proxy_train_images,
            proxy_val_images,
            augment,
            supernet_epochs=supernet_epochs,
            supernet_kernels=supernet_kernels,
        ),
        study=options.study_config(
            run_dir, study_name, storage, workers, seed, timeout, device, threads, loader_workers, cache_dir, force
        ),
        classes=options.whole_number(classes, "--classes"),
        resolution=options.whole_number(resolution, "--resolution"),
    )
    set_run_dir(run_dir)
    header = (
        f"study {study_name!r} in {config.study.storage_label}; band "
        f"{format_size(config.band.low)}–{format_size(config.band.high)} FLOPs"
    )
    with ProgressBar("search", header=header, plain=as_json) as bar:
        result = run_search(config, on_progress=bar)
    print_notes(result.notes)
    if result.fit is not None:
        progress_console.print(f"networks fitted to the data: {result.fit.describe()}")
    for warning in result.warnings:
        progress_console.print(f"[yellow]warning:[/] {warning}")
    if as_json:
        emit_json(result.as_dict())
    else:
        print_result(result)
    warn_skipped(result.data)
    exit_for_signal(result.signal, "completed trials and files are")
