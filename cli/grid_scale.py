"""`effnet grid-scale`: grid-search the compound scaling coefficients alpha, beta, gamma at phi = 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from effnet.cli.common import (ProgressBar, clean_input_errors, console, emit_json, exit_for_signal, print_notes,
                               set_run_dir)
from effnet.cli.options import parse_duration, renamed
from effnet.nas.resources import reference_b0_path

TABLE_ROWS = 15


def print_result(result: Any) -> None:
    from rich import box
    from rich.table import Table

    from effnet.nas.units import format_size

    data = result.as_dict()
    order = result.ranked
    table = Table(title=f"grid points by score ({data['points_scored']} of {data['points_total']} scored; "
                        f"{data['grid']['rule']})", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    for column in ("rank", "α", "β", "γ", "αβ²γ²", "FLOPs÷B0", "params", "px", "score", "s"):
        table.add_column(column, justify="right", no_wrap=True)
    for rank, r in enumerate(order[:TABLE_ROWS], start=1):
        p = r.point
        table.add_row(str(rank), f"{p.alpha:g}", f"{p.beta:g}", f"{p.gamma:g}", f"{p.product:.4f}",
                      f"{p.flops_ratio:.3f}x", format_size(p.params), str(r.proxy_resolution), f"{r.score:.4f}",
                      f"{r.seconds:.0f}" if r.seconds is not None else "")
    table.caption = "FLOPs÷B0: measured at φ = 1 after rounding; px: proxy resolution; s: proxy seconds"
    if len(order) > TABLE_ROWS:
        table.caption += f"; {len(order) - TABLE_ROWS} more in grid.csv"
    console.print(table)
    for r in result.points:
        if r.state == "failed":
            console.print(f"[red]failed[/] α={r.point.alpha:g} β={r.point.beta:g} γ={r.point.gamma:g}: {r.error}")
    console.print(f"scored {data['points_scored']}, failed {data['points_failed']}, left {data['points_left']} "
                  f"of {data['points_total']} points; stopped by {data['stop_reason']} after "
                  f"{data['elapsed_s']:.0f} s")
    if data["best"]:
        b = data["best"]
        console.print(f"best: α={b['alpha']:g} β={b['beta']:g} γ={b['gamma']:g} (αβ²γ² = {b['product']:.4f}, "
                      f"measured FLOPs {b['flops_ratio']:.3f}x the base at φ = 1) score {b['score']:.4f} "
                      f"-> {data['coefficients']}")
    else:
        console.print("[yellow]no grid point is scored yet; rerun the same command to continue[/]")
    if data["points_left"]:
        console.print("points are left: rerun the same command to resume (scored points are kept)")
    console.print(f"grid: {data['files']['grid_csv']}  plot: {data['files']['plot']}")


@clean_input_errors()
def grid_scale(
    base_path: Path = typer.Option(reference_b0_path(), "--base", help="Base spec B0 (e.g. runs/search/b0.yaml).",
                                   show_default="the reference EfficientNet-B0"),
    alpha_range: str = typer.Option("1.0:1.4", "--alpha-range", help="Depth coefficient range LOW:HIGH or one value."),
    beta_range: str = typer.Option("1.0:1.3", "--beta-range", help="Width coefficient range LOW:HIGH or one value."),
    gamma_range: str = typer.Option("1.0:1.3", "--gamma-range", help="Resolution coefficient range LOW:HIGH."),
    step: float = typer.Option(0.05, "--step", help="Grid step on every axis (0.05 holds the paper's 1.15)."),
    tolerance: float = typer.Option(0.1, "--tolerance", help="Keep points with |α·β²·γ² − 2| <= tolerance."),
    flops_ratio: bool = typer.Option(False, "--flops-ratio",
                                     help="Constrain the measured (rounded) FLOPs ratio of the φ=1 network "
                                          "over the base instead of the formula α·β²·γ²."),
    proxy: str = typer.Option("train", "--proxy", help="Accuracy proxy: train (short training), zero-cost or synflow."),
    data: str = typer.Option("digits", "--data", help="digits (embedded, real), synthetic, or an image-folder path."),
    proxy_epochs: Optional[int] = typer.Option(None, "--proxy-epochs", help="Proxy training epochs per point.",
                                               show_default="3"),
    epochs: Optional[int] = typer.Option(None, "--epochs", hidden=True, help="Deprecated name of --proxy-epochs."),
    proxy_resolution: int = typer.Option(32, "--proxy-resolution",
                                         help="Proxy image size at γ = 1; a point trains at round(size·γ)."),
    batch_size: int = typer.Option(64, "--batch-size"),
    max_points: Optional[int] = typer.Option(None, "--max-points",
                                             help="Score at most this many more points in this run (a rerun "
                                                  "resumes; several workers may overshoot by one each)."),
    timeout: str = typer.Option("none", "--timeout", help="Stop starting points after: 480, 8m, 2h or none."),
    workers: int = typer.Option(1, "--workers", "-w", help="Worker processes sharing the grid's study."),
    storage: Optional[str] = typer.Option(None, "--storage",
                                          help="Optuna storage URL (postgresql://…, sqlite:///…, journal:PATH); "
                                               "default: a journal file in the run directory."),
    study_name: str = typer.Option("grid", "--study", help="Study name inside the storage."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run directory (default runs/<study>)."),
    seed: int = typer.Option(0, "--seed", help="The study's seed (proxy trainings, data split)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    threads: Optional[int] = typer.Option(None, "--threads",
                                          help="CPU threads per worker (default: cores ÷ workers)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object instead of tables."),
) -> None:
    """Grid-search α, β, γ at φ = 1 under α·β²·γ² ≈ 2; writes coefficients.yaml for export-family.

    Each kept point grows the base by depth α, width β, resolution γ and the proxy scores it; best score wins.

    The points live in an Optuna study in the run directory: a rerun resumes, workers share them.
    """
    from effnet.nas.net.spec import load_spec
    from effnet.nas.proxies import ProxyConfig
    from effnet.nas.study.runner import StudyConfig
    from effnet.scaling.grid import GridConfig, GridDefinition, grid_scale as run_grid

    grid = GridDefinition.from_ranges(alpha_range, beta_range, gamma_range, step, tolerance, flops_ratio)
    run_dir = run_dir or Path("runs") / study_name
    config = GridConfig(
        base=load_spec(base_path), grid=grid, max_points=max_points,
        proxy=ProxyConfig(name=proxy, data=data, epochs=renamed(proxy_epochs, epochs, "--proxy-epochs", "--epochs", 3),
                          resolution=proxy_resolution, batch_size=batch_size),
        study=StudyConfig(run_dir=run_dir, name=study_name, storage=storage, workers=workers, seed=seed,
                          timeout_s=parse_duration(timeout), device=device, threads=threads),
    )
    set_run_dir(run_dir)
    header = f"grid ({grid.rule}) in study {study_name!r} at {config.study.storage_label}"
    with ProgressBar("grid", enabled=not as_json, header=header) as bar:
        result = run_grid(config, str(base_path), on_progress=bar)
    print_notes(result.notes)
    if as_json:
        emit_json(result.as_dict())
    else:
        print_result(result)
    exit_for_signal(result.signal, "scored points and files are")
