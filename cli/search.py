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
    fail,
    literal,
    print_notes,
    progress_console,
    set_run_dir,
    warn_skipped,
)
from effnet.nas.choices import LATENCY_RUNTIMES, OBJECTIVES, PRUNERS, SAMPLERS

DEFAULT_TARGET_FLOPS = "400M"
"""`--target-flops` when neither target is given."""


def print_result(result: Any) -> None:
    from rich.table import Table

    from effnet.nas.search.config import ACCURACY_PROXIES
    from effnet.nas.search.report import latency_line
    from effnet.nas.study.chance import chance_line
    from effnet.nas.units import format_size

    c = result.config
    targets = []
    if c.target_latency_s is not None:
        targets.append(f"{1000 * c.target_latency_s:.2f} ms ±{100 * c.latency_tolerance:.3g}%")
    if c.target_flops is not None:
        targets.append(f"{format_size(c.target_flops)} FLOPs ±{100 * c.flops_tolerance:.3g}%")
    table = Table(title=f"best candidates (target {', '.join(targets)}, {c.objective})")
    if c.multi_objective:
        table.caption = "front: on the Pareto front of accuracy and cost (no trained candidate is better on both)"
    measured = "accuracy" if c.proxy.name in ACCURACY_PROXIES else "score"  # a zero-cost score is no accuracy
    columns = ["trial", "reward", measured, "FLOPs", "params", "architecture"]
    if c.by_latency:
        columns.insert(3, "predicted")
    if c.multi_objective:
        columns.insert(1, "front")
    for column in columns:
        table.add_column(column, justify="left" if column == "architecture" else "right")
    for t in result.top:
        row = [str(t.trial), *(["yes" if t.on_front else ""] if c.multi_objective else []), f"{t.reward or 0:.4f}"]
        row.append(f"{t.accuracy or 0:.4f}")
        if c.by_latency:
            row.append(f"{1000 * t.latency_s:.2f} ms" if t.latency_s is not None else "")
        table.add_row(*row, format_size(t.flops), format_size(t.params), literal(t.architecture))
    console.print(table)
    data, s = result.as_dict(), result.summary
    if result.supernet is not None:
        n = result.supernet
        console.print(
            f"supernet: {n['steps']:,} of {n['total_steps']:,} steps in {n['training_s']:.0f} s "
            f"({n['trained_now_s']:.0f} s in this run), {literal(n['checkpoint'])}"
        )
    if result.rescored is not None:
        r = result.rescored
        console.print(
            f"re-scored by the train proxy: {r['completed']} of the supernet's top {r['top']} in {r['elapsed_s']:.0f} s"
            + (f" (expected {r['reserved_s']:.0f} s)" if r["reserved_s"] is not None else "")
            + f" (study {literal(r['study'])}, {literal(str(result.files['rescored_csv']))}); "
            + (
                f"best: screening trial {r['best_screened_trial']}, accuracy {r['best_accuracy']:.4f}"
                if r["best_accuracy"] is not None
                else "none finished"
            )
        )
    if result.threads is not None:
        console.print(f"CPU threads: {result.threads['reason']}")
    trained = "trained" if c.proxy.name in ACCURACY_PROXIES else "scored"  # a zero-cost proxy trains nothing
    console.print(
        f"{trained} {s.completed} completed + {s.pruned} pruned, {s.failed} failed, {s.outside_band} "
        f"sampled outside the band (not {trained}); stopped by {result.stop_reason} after "
        f"{result.elapsed_s:.0f} s"
    )
    if result.best_spec is not None:
        console.print(
            f"b0: {literal(data['best_spec'])} ({format_size(data['flops'])} FLOPs by fvcore, "
            f"{format_size(data['params'])} params, proxy {measured} {data['accuracy']:.4f})"
        )
        if result.latency is not None:
            console.print(latency_line(result.latency))
    elif s.in_band == 0 and s.outside_band:
        tolerance = "--latency-tolerance" if result.config.latency_band is not None else "--flops-tolerance"
        console.print(
            f"[yellow]none of the {s.outside_band} networks sampled fell inside the band: widen {tolerance}[/]"
        )
    else:
        console.print("[yellow]no candidate inside the band finished training yet; rerun to continue[/]")
    if data["chance"] is not None:
        console.print(chance_line(data["chance"], "an accuracy"))
    console.print(literal(f"trials: {data['trials_csv']}  plots: {', '.join(data['plots'])}  report: {data['report']}"))


@clean_input_errors()
def search(
    target_flops: str | None = typer.Option(
        None,
        "--target-flops",
        "-t",
        help="FLOPs target T: 400M, 0.4G, 400e6 (default 400M; with --target-latency, none unless given: then "
        "both bands hold).",
    ),
    flops_tolerance: float = typer.Option(
        0.1, "--flops-tolerance", help="Band around T: candidates outside T·(1±tol) are never trained."
    ),
    objective: str = typer.Option(
        "reward",
        "--objective",
        help=f"{' | '.join(OBJECTIVES)}: soft reward ACC·(F/T)^-0.07, hard constraint, or "
        "accuracy-vs-FLOPs Pareto (NSGA-II); with --target-latency the latency L takes the FLOPs' place.",
        autocompletion=lambda: list(OBJECTIVES),
    ),
    target_latency: str | None = typer.Option(
        None,
        "--target-latency",
        help="Latency target T on this machine: 12ms, 0.012s, 800us (MnasNet's objective ACC·(L/T)^-0.07; L "
        "predicted by this machine's latency table, built first if missing: effnet latency-table).",
    ),
    latency_tolerance: float | None = typer.Option(
        None,
        "--latency-tolerance",
        help="With --target-latency, the band around it: outside T·(1±tol), never trained (default 0.1).",
    ),
    latency_runtime: str | None = typer.Option(
        None,
        "--latency-runtime",
        help=f"With --target-latency, what runs the network where it is deployed: {' | '.join(LATENCY_RUNTIMES)} "
        "(default folded).",
        autocompletion=lambda: list(LATENCY_RUNTIMES),
    ),
    latency_device: str | None = typer.Option(
        None, "--latency-device", help="With --target-latency, where it runs: cpu | cuda | cuda:N (default cpu)."
    ),
    latency_batch: int | None = typer.Option(
        None, "--latency-batch", help="With --target-latency, images per request (default 1)."
    ),
    latency_threads: int | None = typer.Option(
        None, "--latency-threads", help="With --target-latency, CPU threads where it is deployed (default 1)."
    ),
    space: str | None = typer.Option(
        None, "--space", help="Search space: efficientnet (default), efficientnet-nested, mnasnet, or a YAML file."
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
    proxy_resolution: int = typer.Option(
        32, "--proxy-resolution", help="Image size the proxy trains at (at most 8x a folder's median image side)."
    ),
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
    supernet_recipe: str = options.SUPERNET_RECIPE,
    supernet_ops: str = options.SUPERNET_OPS,
    rescore_top: int = typer.Option(
        0,
        "--rescore-top",
        help="With --proxy supernet: train the supernet's top K candidates again with the train proxy "
        "(--proxy-epochs, no pruning) and take b0 from them. Under --timeout the screening stops once the time "
        "left is what K trainings are expected to take (timed on the supernet's training and the screening). "
        "0: b0 is the supernet's pick.",
    ),
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
    from effnet.nas.latency.table import TableSettings
    from effnet.nas.search.config import SearchConfig
    from effnet.nas.search.search import search as run_search
    from effnet.nas.units import format_size, parse_size

    run_dir = run_dir or Path("runs") / study_name
    latency_s = options.parse_latency(target_latency) if target_latency is not None else None
    latency_flags = {
        "--latency-tolerance": latency_tolerance,
        "--latency-runtime": latency_runtime,
        "--latency-device": latency_device,
        "--latency-batch": latency_batch,
        "--latency-threads": latency_threads,
    }
    given = [flag for flag, value in latency_flags.items() if value is not None]
    if given and latency_s is None:
        raise fail(f"{given[0]} is a setting of the latency target; add --target-latency, or leave it out")
    default = TableSettings()
    table = TableSettings(
        default.runtime if latency_runtime is None else latency_runtime,
        default.device if latency_device is None else latency_device,
        default.batch if latency_batch is None else latency_batch,
        default.threads if latency_threads is None else latency_threads,
    )
    if target_flops is None and latency_s is None:
        target_flops = DEFAULT_TARGET_FLOPS
    flops = parse_size(target_flops, "--target-flops") if target_flops is not None else None
    config = SearchConfig(
        target_flops=flops,
        target_latency_s=latency_s,
        **({"latency_tolerance": latency_tolerance} if latency_tolerance is not None else {}),
        latency=table,
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
            supernet_recipe=supernet_recipe,
            supernet_ops=supernet_ops,
        ),
        study=options.study_config(
            run_dir, study_name, storage, workers, seed, timeout, device, threads, loader_workers, cache_dir, force
        ),
        classes=options.whole_number(classes, "--classes"),
        resolution=options.whole_number(resolution, "--resolution"),
        rescore_top=rescore_top,
    )
    set_run_dir(run_dir)
    bands = []
    if config.band is not None:
        bands.append(f"band {format_size(config.band.low)}–{format_size(config.band.high)} FLOPs")
    if config.latency_band is not None:
        low, high = config.latency_band.low, config.latency_band.high
        bands.append(f"latency band {1000 * low:.2f}–{1000 * high:.2f} ms ({config.latency.runtime})")
    header = f"study {study_name!r} in {config.study.storage_label}; {', '.join(bands)}"
    with ProgressBar("search", header=header, plain=as_json) as bar:
        result = run_search(config, on_progress=bar)
    print_notes(result.notes)
    if result.fit is not None:
        progress_console.print(f"networks fitted to the data: {literal(result.fit.describe())}")
    for warning in result.warnings:
        progress_console.print(f"[yellow]warning:[/] {literal(warning)}")
    if as_json:
        emit_json(result.as_dict())
    else:
        print_result(result)
    warn_skipped(result.data)
    exit_for_signal(result.signal, "completed trials and files are")
