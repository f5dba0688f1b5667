"""`effnet grid-scale`: grid-search the compound scaling coefficients alpha, beta, gamma at phi = 1 (or k)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from effnet.cli import latency_options, options
from effnet.cli.common import (
    ProgressBar,
    clean_input_errors,
    console,
    emit_json,
    exit_for_signal,
    literal,
    print_notes,
    set_run_dir,
    warn_skipped,
)
from effnet.cli.latency_options import milliseconds, scaling_help, scaling_settings, settings_given
from effnet.nas.resources import reference_b0_path

TABLE_ROWS = 15


def coefficient_cell(network: Any, name: str) -> str:
    """One coefficient of a network's row: its value, or the interval its twins span."""
    low, high = network.group.interval(name)
    return f"{low:g}" if low == high else f"{low:g}–{high:g}"


def score_cell(network: Any) -> str:
    return f"{network.mean:.4f}" + (f" ± {network.std:.4f}" if network.std is not None else "")


def print_result(result: Any) -> None:
    from rich import box
    from rich.table import Table

    from effnet.nas.units import format_size

    data = result.as_dict()
    order = result.ranked
    phi, repeats = data["phi"], data["repeats"]
    table = Table(
        title=f"distinct networks by mean score ({data['networks_scored']} of {data['networks_total']} "
        f"networks for {data['points_total']} points, {repeats} run{'s' * (repeats > 1)} each; "
        f"{data['grid']['rule']}, φ = {phi})",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
    )
    timed = data["latency"] is not None
    for column in ("rank", "α", "β", "γ", "pts", "αβ²γ²", "FLOPs÷B0", "params", "px", "score", "s"):
        table.add_column(column, justify="right", no_wrap=True)
    if timed:
        table.add_column("latency", justify="right", no_wrap=True)
    for rank, n in enumerate(order[:TABLE_ROWS], start=1):
        p = n.chosen
        table.add_row(
            str(rank),
            *(coefficient_cell(n, name) for name in ("alpha", "beta", "gamma")),
            str(len(n.group.points)),
            f"{p.product:.4f}",
            f"{p.flops_ratio:.3f}x",
            format_size(p.params),
            str(p.proxy_resolution),
            score_cell(n),
            f"{n.seconds:.0f}" if n.seconds is not None else "",
            *([milliseconds(n.latency.median_s if n.latency is not None else None)] if timed else []),
        )
    table.caption = (
        f"α β γ: the twin group, the points building the same network (pts of them; one evaluation "
        f"scores them all); αβ²γ², FLOPs÷B0 (measured at φ = {phi} after rounding), params: the chosen "
        "twin's; px: proxy resolution; score: mean ± standard deviation over the runs; s: proxy seconds"
    )
    if timed:
        t = data["latency"]
        table.caption += (
            f"; latency: the φ = {phi} network's median of {t['repeats']} runs here ({t['runtime']}, "
            f"batch {t['batch']}, {t['threads'] or 'default'} thread(s))"
        )
    if len(order) > TABLE_ROWS:
        table.caption += f"; {len(order) - TABLE_ROWS} more in grid.csv"
    console.print(table)
    for n in result.networks:
        if n.state == "failed":
            p = n.evaluated
            console.print(f"[red]failed[/] α={p.alpha:g} β={p.beta:g} γ={p.gamma:g}: {literal(n.error)}")
    twins = len(data["twin_groups"])
    ended = "done" if data["stop_reason"] == "done" else f"stopped by {data['stop_reason']}"
    console.print(
        f"evaluated {data['evaluations_done']} of {data['evaluations_total']} (distinct networks × runs; "
        f"{data['points_total']} points, {twins} twin group{'' if twins == 1 else 's'}); "
        f"{ended} after {data['elapsed_s']:.0f} s"
    )
    if data["threads"] is not None:
        console.print(f"CPU threads: {data['threads']['reason']}")
    if data["best"]:
        print_best(data)
    else:
        console.print("[yellow]no network is scored yet; rerun the same command to continue[/]")
    if data["points_left"]:
        console.print("evaluations are left: rerun the same command to resume (scored networks are kept)")
    for warning in data["warnings"]:
        console.print(f"[yellow]warning:[/] {literal(warning)}")
    files = data["files"]
    console.print(literal(f"grid: {files['grid_csv']}  plot: {files['plot']}  report: {files['report']}"))


def print_best(data: dict[str, Any]) -> None:
    """The chosen coefficients, what the grid could not tell apart, and the lead against the noise."""
    from effnet.nas.study.chance import chance_line

    b = data["best"]
    console.print(
        f"best: α={b['alpha']:g} β={b['beta']:g} γ={b['gamma']:g} (αβ²γ² = {b['product']:.4f}, measured "
        f"FLOPs {b['flops_ratio']:.3f}x the base at φ = {data['phi']}) score {b['score']:.4f}"
        + (f" ± {b['score_std']:.4f}" if b["score_std"] is not None else "")
        + f" -> {literal(data['coefficients'])}"
    )
    twins = b["twins"]
    if len(twins["points"]) > 1:
        axes = (("α", "alpha"), ("β", "beta"), ("γ", "gamma"))
        spans = ", ".join(
            f"{symbol} {low:g}–{high:g}" for symbol, name in axes for low, high in [twins[name]] if low != high
        )
        console.print(
            f"[yellow]twins:[/] {len(twins['points'])} points build this same network ({spans}); the grid "
            f"cannot tell them apart at φ = {data['phi']}, so the smallest α·β²·γ² among them was chosen "
            "(a grid at --phi 2 or 3 separates more of them)"
        )
    if b["tied_with_runner_up"]:
        r = b["runner_up"]
        console.print(
            f"[red]tied[/] with the runner-up (α={r['alpha']:g} β={r['beta']:g} γ={r['gamma']:g}, "
            f"{r['score']:.4f}): the tie rule chose, not the scores ({b['tie_rule']})"
        )
    if data["chance"] is not None:
        near = " [red]near chance[/]" if b["near_chance"] else ""
        console.print(chance_line(data["chance"], "a score") + near)
    if b["within_noise"] is None and b["runner_up"] is not None:
        console.print(
            "noise: one run per network, so the lead over the runner-up cannot be judged; "
            "--repeats 3 measures the proxy's noise"
        )
    elif b["within_noise"] is not None:
        r = b["runner_up"]
        lead = (
            f"{b['margin_sd']:.2f} standard deviations"
            if b["margin_sd"] is not None
            else f"{b['score'] - r['score']:.4f} with no run-to-run noise"
        )
        verdict = "[red]within noise[/]: the grid cannot tell them apart" if b["within_noise"] else "beyond noise"
        console.print(
            f"the choice is {verdict}: it leads the runner-up (α={r['alpha']:g} β={r['beta']:g} "
            f"γ={r['gamma']:g}, {r['score']:.4f}) by {lead} of the proxy (noise {b['noise_sd']:.4f}, "
            f"{data['repeats']} runs each)"
        )


@clean_input_errors()
def grid_scale(
    base_path: Path = typer.Option(
        reference_b0_path(),
        "--base",
        help="Base spec B0 (e.g. runs/search/b0.yaml; default: the reference EfficientNet-B0).",
        show_default=False,
    ),
    alpha_range: str = typer.Option("1.0:1.4", "--alpha-range", help="Depth coefficient range LOW:HIGH or one value."),
    beta_range: str = typer.Option("1.0:1.3", "--beta-range", help="Width coefficient range LOW:HIGH or one value."),
    gamma_range: str = typer.Option("1.0:1.3", "--gamma-range", help="Resolution coefficient range LOW:HIGH."),
    step: float = typer.Option(0.05, "--step", help="Grid step on every axis (0.05 holds the paper's 1.15)."),
    tolerance: float = typer.Option(0.1, "--tolerance", help="Keep points with |α·β²·γ² − 2| <= tolerance."),
    phi: int = typer.Option(
        1,
        "--phi",
        help="Build each point's φ = k network (same points: α^k·β^2k·γ^2k ≈ 2^k); "
        "at 2 or 3 the coefficients' differences survive the rounding.",
    ),
    repeats: int = typer.Option(
        1,
        "--repeats",
        help="Train each distinct network with this many seeds; the table "
        "shows mean ± standard deviation and whether the choice is "
        "within noise.",
    ),
    flops_ratio: bool = typer.Option(
        False,
        "--flops-ratio",
        help="Constrain the measured (rounded) FLOPs ratio of the φ = k network "
        "over the base (its k-th root) instead of the formula α·β²·γ².",
    ),
    classes: str | None = options.BASE_CLASSES,
    proxy: str = typer.Option("train", "--proxy", help="Accuracy proxy: train (short training), zero-cost or synflow."),
    data: str = options.DATA,
    proxy_epochs: int | None = options.PROXY_EPOCHS,
    epochs: int | None = options.OLD_EPOCHS,
    proxy_resolution: int = typer.Option(
        32,
        "--proxy-resolution",
        help="Proxy image size at γ = 1 (at most 8x a folder's median image side); a point trains at round(size·γ).",
    ),
    batch_size: int = options.BATCH_SIZE,
    proxy_train_images: int | None = options.PROXY_TRAIN_IMAGES,
    proxy_val_images: int | None = options.PROXY_VAL_IMAGES,
    augment: str = options.AUGMENT,
    loader_workers: int | None = options.LOADER_WORKERS,
    cache_dir: Path | None = options.CACHE_DIR,
    max_points: int | None = typer.Option(
        None,
        "--max-points",
        help="Start at most this many more evaluations (distinct networks × "
        "repeats) in this run (a rerun resumes; several workers may "
        "overshoot by one each).",
    ),
    timeout: str = typer.Option("none", "--timeout", help="Stop starting points after: 480, 8m, 2h or none."),
    workers: int = options.WORKERS,
    storage: str | None = options.STORAGE,
    study_name: str = typer.Option("grid", "--study", help="Study name inside the storage."),
    run_dir: Path | None = options.STUDY_RUN_DIR,
    force: bool = options.FORCE,
    seed: int = typer.Option(0, "--seed", help="The study's seed (proxy trainings, data split)."),
    device: str = options.STUDY_DEVICE,
    threads: int | None = options.THREADS,
    latency: bool = typer.Option(
        False,
        "--latency",
        help=scaling_help(
            "each distinct network (at its full resolution, once the study ends)", "--json's points and grid.csv"
        )
        + " --threads and --repeats are the study's; the measurement's are --latency-threads, --latency-repeats.",
    ),
    runtime: str | None = latency_options.RUNTIME,
    latency_batch: int | None = latency_options.BATCH,
    latency_threads: int | None = typer.Option(None, "--latency-threads", help=latency_options.THREADS_HELP),
    latency_repeats: int | None = latency_options.scaling_repeats("--latency-repeats"),
    as_json: bool = options.JSON,
) -> None:
    """Grid-search α, β, γ at φ = 1 (or --phi k) under α·β²·γ² ≈ 2; writes coefficients.yaml for export-family.

    Each kept point grows the base by depth α^φ, width β^φ, resolution γ^φ; twins (same network) share one score.

    Best mean score wins; inside the winner's twin group, the smallest α·β²·γ².

    The evaluations live in an Optuna study in the run directory: a rerun resumes, workers share them.
    """
    from effnet.nas.net.spec_file import load_spec
    from effnet.scaling.grid import grid_scale as run_grid
    from effnet.scaling.grid_space import GridConfig, GridDefinition

    flags = {"--runtime": runtime, "--batch": latency_batch, "--latency-threads": latency_threads}
    settings_given(latency, {**flags, "--latency-repeats": latency_repeats})
    named = {"threads": "latency_threads", "repeats": "latency_repeats"}
    timing = scaling_settings(runtime, latency_batch, latency_threads, latency_repeats, named) if latency else None
    grid = GridDefinition.from_ranges(alpha_range, beta_range, gamma_range, step, tolerance, flops_ratio, phi)
    run_dir = run_dir or Path("runs") / study_name
    config = GridConfig(
        base=load_spec(base_path),
        grid=grid,
        max_points=max_points,
        repeats=repeats,
        classes=options.whole_number(classes, "--classes"),
        latency=timing,
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
        ),
        study=options.study_config(
            run_dir, study_name, storage, workers, seed, timeout, device, threads, loader_workers, cache_dir, force
        ),
    )
    set_run_dir(run_dir)
    header = f"grid ({grid.rule}) in study {study_name!r} at {config.study.storage_label}"
    with ProgressBar("grid", header=header, plain=as_json) as bar:
        result = run_grid(config, str(base_path), on_progress=bar)
    print_notes(result.notes)
    if as_json:
        emit_json(result.as_dict())
    else:
        print_result(result)
    said: set[tuple[str, ...]] = set()
    for record in result.data.values():
        warn_skipped(record, said)
    exit_for_signal(result.signal, "scored points and files are")
