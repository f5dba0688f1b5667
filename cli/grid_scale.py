"""`effnet grid-scale`: grid-search the compound scaling coefficients alpha, beta, gamma at phi = 1."""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import optuna
import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from effnet.cli.common import clean_input_errors, console, emit_json, progress_console, set_run_dir
from effnet.cli.options import check_run_dir, parse_duration, worker_device
from effnet.nas.errors import InputError
from effnet.nas.files import atomic_write_text, dump_yaml
from effnet.nas.study.report import write_run_record
from effnet.nas.resources import reference_b0_path
from effnet.nas.study.search import worker_threads
from effnet.nas.net.spec import load_spec
from effnet.nas.study.storage import describe_storage
from effnet.nas.units import format_size
from effnet.nas.study.workers import watch_workers
from effnet.scaling.grid import (
    GridConfig, GridDefinition, GridPoint, PointResult, coefficients_record, grid_results, open_grid_study,
    parse_range, parse_step, points_taken, prepare_grid, ranked, run_grid_worker, start_grid_workers,
)

CSV_COLUMNS = ("alpha", "beta", "gamma", "product", "flops_ratio", "flops", "params", "proxy_resolution", "score",
               "state", "trial", "seconds", "worker", "error")
TABLE_ROWS = 15


class GridProgress:
    """A rich progress bar fed from the study, so it is right for any number of workers."""

    def __init__(self, config: GridConfig, points: list[GridPoint], enabled: bool):
        self.config = config
        self.points = points
        self.progress = Progress(
            TextColumn("[bold]grid"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            console=progress_console, disable=not enabled, transient=False,
        )
        self.task = self.progress.add_task("grid", total=len(points), status="")

    def update(self, study: optuna.Study) -> None:
        results = grid_results(study, self.config, self.points)
        done = sum(r.state in ("complete", "failed") for r in results)
        order = ranked(results)
        status = f"running {sum(r.state == 'running' for r in results)}"
        if order:
            p = order[0].point
            status += f" · best {order[0].score:.4f} at α={p.alpha:g} β={p.beta:g} γ={p.gamma:g}"
        self.progress.update(self.task, completed=done, status=status)


def run_grid(config: GridConfig, progress: GridProgress, deadline: float | None,
             limit: int | None) -> tuple[optuna.Study, str]:
    """Score the queued points: in this process for one worker, in spawned processes for several."""
    study = open_grid_study(config)
    if config.workers == 1:
        return study, run_grid_worker(config, deadline, limit, on_point=progress.update,
                                      threads=worker_threads(config))
    failed = watch_workers(start_grid_workers(config, deadline, limit), lambda: progress.update(study))
    if failed:
        progress_console.print(f"[yellow]warning:[/] worker(s) {', '.join(failed)} exited with an error; "
                               f"their points are re-queued on the next run")
    progress.update(study)
    if deadline is not None and time.time() >= deadline:
        return study, "timeout"
    if limit is not None and points_taken(study) >= limit:
        return study, "max-points"
    return study, "done"


def write_grid_csv(results: list[PointResult], path: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(r.row() for r in results)
    return atomic_write_text(path, buffer.getvalue())


def finish(study: optuna.Study, config: GridConfig, points: list[GridPoint], base_label: str, stop_reason: str,
           elapsed: float) -> tuple[dict[str, Any], list[PointResult]]:
    """Write grid.csv, grid.png, coefficients.yaml (once a point is scored) and run.yaml; return the summary."""
    run_dir = config.run_dir
    results = grid_results(study, config, points)
    write_grid_csv(results, run_dir / "grid.csv")
    from effnet.scaling.plots import plot_grid  # matplotlib takes ~1 s to import; only the report needs it

    plot_grid(results, config.grid, run_dir / "grid.png",
              f"{config.base.name}: grid at φ = 1, {config.proxy} proxy on {config.data}", config.score_name)
    storage = describe_storage(config.storage, run_dir)
    provenance = {"command": "effnet grid-scale", "study": config.study_name, "storage": storage,
                  "run_dir": str(run_dir), "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    record = coefficients_record(config, results, base_label, provenance)
    if record is not None:
        dump_yaml(record, run_dir / "coefficients.yaml")
    counts = {state: sum(r.state == state for r in results) for state in ("complete", "failed", "running", "pending")}
    result: dict[str, Any] = {
        "run_dir": str(run_dir), "study": config.study_name, "storage": storage, "stop_reason": stop_reason,
        "elapsed_s": round(elapsed, 1), "base": {"path": base_label, "name": config.base.name},
        "grid": config.grid.describe(), "proxy": config.proxy_settings(),
        "points_total": len(results), "points_scored": counts["complete"], "points_failed": counts["failed"],
        "points_left": counts["running"] + counts["pending"],
        "best": None, "coefficients": None,
        "files": {"grid_csv": str(run_dir / "grid.csv"), "plot": str(run_dir / "grid.png"),
                  "run": str(run_dir / "run.yaml")},
        "points": [r.row() for r in ranked(results)] + [r.row() for r in results if r.score is None],
    }
    if record is not None:
        result["best"] = {k: record[k] for k in ("alpha", "beta", "gamma", "score", "product", "flops_ratio")}
        result["coefficients"] = str(run_dir / "coefficients.yaml")
    settings = {**config.grid.describe(), **{f"proxy_{k}": v for k, v in config.proxy_settings().items()},
                "base": base_label, "device": config.device, "threads": config.threads, "workers": config.workers,
                "storage": storage, "study": config.study_name, "run_dir": str(run_dir)}
    write_run_record(run_dir, "grid-scale", settings, {"result": {k: v for k, v in result.items() if k != "points"}})
    return result, results


def print_result(result: dict[str, Any], results: list[PointResult]) -> None:
    order = ranked(results)
    table = Table(title=f"grid points by score ({result['points_scored']} of {result['points_total']} scored; "
                        f"{result['grid']['rule']})", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
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
    for r in results:
        if r.state == "failed":
            console.print(f"[red]failed[/] α={r.point.alpha:g} β={r.point.beta:g} γ={r.point.gamma:g}: {r.error}")
    console.print(f"scored {result['points_scored']}, failed {result['points_failed']}, left {result['points_left']} "
                  f"of {result['points_total']} points; stopped by {result['stop_reason']} after "
                  f"{result['elapsed_s']:.0f} s")
    if result["best"]:
        b = result["best"]
        console.print(f"best: α={b['alpha']:g} β={b['beta']:g} γ={b['gamma']:g} (αβ²γ² = {b['product']:.4f}, "
                      f"measured FLOPs {b['flops_ratio']:.3f}x the base at φ = 1) score {b['score']:.4f} "
                      f"-> {result['coefficients']}")
    else:
        console.print("[yellow]no grid point is scored yet; rerun the same command to continue[/]")
    if result["points_left"]:
        console.print("points are left: rerun the same command to resume (scored points are kept)")
    console.print(f"grid: {result['files']['grid_csv']}  plot: {result['files']['plot']}")


def check_proxy(proxy: str, data: str, config: GridConfig) -> None:
    """Fail on a bad proxy, data source or proxy setting before the study starts."""
    from effnet.nas.data.sources import load_data
    from effnet.nas.proxies import PROXIES, ProxySettings, make_proxy

    if proxy not in PROXIES:
        raise InputError(f"--proxy must be one of {', '.join(PROXIES)}, got {proxy!r}")
    resolution = config.proxy_resolution
    settings = ProxySettings(epochs=config.proxy_epochs, resolution=resolution, batch_size=config.batch_size,
                             device=config.device, seed=config.seed)
    make_proxy(proxy, load_data(data, resolution, seed=config.seed), settings)


@clean_input_errors
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
    proxy: str = typer.Option("train", "--proxy", help="Accuracy proxy: train (short training) or zero-cost."),
    data: str = typer.Option("digits", "--data", help="digits (embedded, real), synthetic, or an image-folder path."),
    epochs: int = typer.Option(3, "--epochs", help="Proxy training epochs per point."),
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
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="auto | cpu | cuda."),
    threads: Optional[int] = typer.Option(None, "--threads",
                                          help="CPU threads per worker (default: cores ÷ workers)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object instead of tables."),
) -> None:
    """Grid-search α, β, γ at φ = 1 under α·β²·γ² ≈ 2; writes coefficients.yaml for export-family.

    Each kept point grows the base by depth α, width β, resolution γ and the proxy scores it; best score wins.

    The points live in an Optuna study in the run directory: a rerun resumes, workers share them.
    """
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    if max_points is not None and max_points < 1:
        raise InputError(f"--max-points must be at least 1, got {max_points}")
    grid = GridDefinition(parse_range(alpha_range, "--alpha-range"), parse_range(beta_range, "--beta-range"),
                          parse_range(gamma_range, "--gamma-range"), parse_step(step), tolerance, flops_ratio)
    timeout_s = parse_duration(timeout)
    base = load_spec(base_path)
    run_dir = run_dir or Path("runs") / study_name
    config = GridConfig(base=base, grid=grid, run_dir=run_dir, proxy=proxy, data=data, proxy_epochs=epochs,
                        proxy_resolution=proxy_resolution, batch_size=batch_size, seed=seed,
                        device=worker_device(device), threads=threads, workers=workers, storage=storage,
                        study_name=study_name)
    points = grid.points(base)
    check_proxy(proxy, data, config)
    check_run_dir(run_dir)
    set_run_dir(run_dir)

    started = time.time()
    study, recovered, queued = prepare_grid(config, points)
    limit = None if max_points is None else points_taken(study) + max_points
    deadline = None if timeout_s is None else started + timeout_s
    if not as_json:
        progress_console.print(f"{len(points)} grid points ({grid.rule}) in study {study_name!r} at "
                               f"{describe_storage(storage, run_dir)}; {queued} queued now"
                               + (f", {len(recovered)} recovered from dead workers" if recovered else ""))
    progress = GridProgress(config, points, enabled=not as_json)
    interrupted = False
    with progress.progress:
        progress.update(study)
        try:
            study, reason = run_grid(config, progress, deadline, limit)
        except KeyboardInterrupt:
            interrupted, reason = True, "interrupt"
    result, results = finish(study, config, points, str(base_path), reason, time.time() - started)
    if as_json:
        emit_json(result)
    else:
        print_result(result, results)
    if interrupted:
        progress_console.print("interrupted: scored points and files are saved; rerun the same command to resume")
        raise typer.Exit(130)
