"""`effnet search`: find a base network B0 near a FLOPs target."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import optuna
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from effnet.cli.common import clean_input_errors, console, emit_json, progress_console, set_run_dir
from effnet.cli.options import check_run_dir, parse_duration, worker_device
from effnet.nas.errors import InputError
from effnet.nas.study.objective import OBJECTIVES
from effnet.nas.study.plots import plot_accuracy_vs_flops, plot_history
from effnet.nas.study.report import (best_trial, pareto_front, summarize, write_best_spec, write_run_record,
                               write_trials_csv)
from effnet.nas.study.search import (PRUNERS, SAMPLERS, SearchConfig, config_dict, is_in_band, open_study, run_worker,
                               start_workers, trained_count, worker_threads)
from effnet.nas.study.space import load_space
from effnet.nas.study.storage import describe_storage
from effnet.nas.units import format_size, parse_size
from effnet.nas.study.workers import watch_workers


class SearchProgress:
    """A rich progress bar fed from the study itself, so it is right for any number of workers."""

    def __init__(self, config: SearchConfig, enabled: bool):
        self.config = config
        self.progress = Progress(
            TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            console=progress_console, disable=not enabled, transient=False,
        )
        self.task = self.progress.add_task("search", total=config.trials, status="")

    def update(self, study: optuna.Study) -> None:
        summary = summarize(study)
        best = best_trial(study, self.config)
        status = f"outside band {summary.outside_band} · pruned {summary.pruned} · failed {summary.failed}"
        if best is not None:
            status += (f" · best reward {best.user_attrs.get('reward', 0):.4f}"
                       f" at {format_size(best.user_attrs['flops'])} FLOPs")
        self.progress.update(self.task, completed=min(summary.trained, self.config.trials), status=status)


def run_search(config: SearchConfig, study: optuna.Study, progress: SearchProgress) -> tuple[optuna.Study, str]:
    """Run the workers (in this process for one, spawned processes for several) until done."""
    deadline = None if config.timeout_s is None else time.time() + config.timeout_s
    if config.workers == 1:
        reason = run_worker(config, 0, deadline, on_trial=progress.update, threads=worker_threads(config))
        return study, reason or "budget"
    failed = watch_workers(start_workers(config, deadline), lambda: progress.update(study))
    if failed:
        progress_console.print(f"[yellow]warning:[/] worker(s) {', '.join(failed)} exited with an error; "
                               f"their trials are in the study and a rerun resumes")
    progress.update(study)
    return study, "budget" if trained_count(study) >= config.trials else "timeout"


def requeue_interrupted(study: optuna.Study) -> int:
    """Trials cut short by Ctrl-C are failed by Optuna; queue their parameters for the rerun (unless a
    retry is queued already: by this, by the journal's dead-worker recovery, or by Optuna's heartbeat)."""
    trials = study.get_trials(deepcopy=False)
    queued = {t.user_attrs.get("retry_of") for t in trials} | {t.system_attrs.get("failed_trial") for t in trials}
    count = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        if is_in_band(t) and "error" not in t.user_attrs and t.number not in queued and t.params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            count += 1
    return count


def finish(study: optuna.Study, config: SearchConfig, stop_reason: str, elapsed: float) -> dict[str, Any]:
    """Write trials.csv, plots and b0.yaml for what was completed; return the summary object."""
    space = load_space(config.space)
    run_dir = config.run_dir
    trials = study.get_trials(deepcopy=False)
    write_trials_csv(study, run_dir / "trials.csv")
    best = best_trial(study, config)
    scored = [t for t in trials if is_in_band(t) and t.state == optuna.trial.TrialState.COMPLETE]
    front = pareto_front(scored)
    metric = "accuracy" if config.multi_objective else "reward"
    plots = [plot_history(trials, metric, run_dir / "history.png"),
             plot_accuracy_vs_flops(trials, config.band, front, best, run_dir / "accuracy_vs_flops.png")]
    summary = summarize(study)
    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "study": config.study_name,
        "storage": describe_storage(config.storage, run_dir),
        "stop_reason": stop_reason,
        "elapsed_s": round(elapsed, 1),
        "target_flops": config.target_flops,
        "band": [int(config.band.low), int(config.band.high)],
        "trials_completed": summary.completed,
        "trials_pruned": summary.pruned,
        "trials_failed": summary.failed,
        "trials_outside_band": summary.outside_band,
        "trials_csv": str(run_dir / "trials.csv"),
        "plots": [str(p) for p in plots],
        "best_spec": None,
    }
    if best is not None:
        spec_path = run_dir / "b0.yaml"
        spec, certified = write_best_spec(study, config, space, best, spec_path)
        if not config.band.contains(certified):
            raise RuntimeError(f"fvcore counts {certified} FLOPs for the best trial, outside the band "
                               f"[{config.band.low:.0f}, {config.band.high:.0f}]: the analytic counter disagrees")
        result.update({
            "best_spec": str(spec_path), "trial": best.number, "flops": certified,
            "params": best.user_attrs.get("params"), "accuracy": best.user_attrs.get("accuracy"),
            "reward": best.user_attrs.get("reward"), "architecture": spec.summary,
        })
    write_run_record(run_dir, "search", {**config_dict(config), "storage": describe_storage(config.storage, run_dir)},
                     {"result": result})
    return result


def print_result(study: optuna.Study, config: SearchConfig, result: dict[str, Any]) -> None:
    space = load_space(config.space)
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if is_in_band(t)]
    done.sort(key=lambda t: t.user_attrs.get("reward") or 0.0, reverse=True)
    table = Table(title=f"best candidates (target {format_size(config.target_flops)} FLOPs "
                        f"±{config.flops_tolerance:.0%}, {config.objective})")
    for column in ("trial", "reward", "accuracy", "FLOPs", "params", "architecture"):
        table.add_column(column, justify="left" if column == "architecture" else "right")
    for t in done[:5]:
        table.add_row(str(t.number), f"{t.user_attrs.get('reward', 0):.4f}", f"{t.user_attrs.get('accuracy', 0):.4f}",
                      format_size(t.user_attrs["flops"]), format_size(t.user_attrs["params"]),
                      space.spec_from_params(t.params).summary)
    console.print(table)
    console.print(f"trained {result['trials_completed']} completed + {result['trials_pruned']} pruned, "
                  f"{result['trials_failed']} failed, {result['trials_outside_band']} sampled outside the band "
                  f"(not trained); stopped by {result['stop_reason']} after {result['elapsed_s']:.0f} s")
    if result["best_spec"]:
        console.print(f"b0: {result['best_spec']} ({format_size(result['flops'])} FLOPs by fvcore, "
                      f"{format_size(result['params'])} params, proxy accuracy {result['accuracy']:.4f})")
    else:
        console.print("[yellow]no candidate inside the band finished training yet; rerun to continue[/]")
    console.print(f"trials: {result['trials_csv']}  plots: {', '.join(result['plots'])}")


@clean_input_errors
def search(
    target_flops: str = typer.Option("400M", "--target-flops", "-t", help="FLOPs target T: 400M, 0.4G, 400e6."),
    flops_tolerance: float = typer.Option(0.1, "--flops-tolerance", help="Band around T: candidates outside T·(1±tol) are never trained."),
    objective: str = typer.Option("reward", "--objective", help=f"{' | '.join(OBJECTIVES)}: soft reward ACC·(F/T)^-0.07, hard constraint, or accuracy-vs-FLOPs Pareto (NSGA-II).",
                                  autocompletion=lambda: list(OBJECTIVES)),
    space: Optional[str] = typer.Option(None, "--space", help="Search space: efficientnet (default), mnasnet, or a YAML file."),
    proxy: str = typer.Option("train", "--proxy", help="Accuracy proxy: train (short training, pruned) or zero-cost."),
    data: str = typer.Option("digits", "--data", help="digits (embedded, real), synthetic, or an image-folder path."),
    epochs: int = typer.Option(3, "--epochs", help="Proxy training epochs per candidate."),
    proxy_resolution: int = typer.Option(32, "--proxy-resolution", help="Image size the proxy trains at."),
    batch_size: int = typer.Option(64, "--batch-size"),
    trials: int = typer.Option(30, "--trials", "-n", help="Candidates to train (the study's total; a rerun resumes towards it)."),
    timeout: str = typer.Option("8m", "--timeout", help="Wall-clock limit of this run: 480, 8m, 2h or none."),
    workers: int = typer.Option(1, "--workers", "-w", help="Worker processes on the study (on CUDA, one per visible GPU in turn)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (postgresql://…, sqlite:///…, journal:PATH); default: a journal file in the run directory."),
    study_name: str = typer.Option("search", "--study", help="Study name inside the storage."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run directory (default runs/<study>)."),
    seed: int = typer.Option(0, "--seed"),
    sampler: str = typer.Option("tpe", "--sampler", help=f"{' | '.join(SAMPLERS)}", autocompletion=lambda: list(SAMPLERS)),
    pruner: str = typer.Option("hyperband", "--pruner", help=f"{' | '.join(PRUNERS)}", autocompletion=lambda: list(PRUNERS)),
    device: str = typer.Option("cpu", "--device", help="auto | cpu | cuda (bf16 autocast and channels_last on CUDA)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per worker (default: cores ÷ workers)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object instead of tables."),
) -> None:
    """Search a base network B0 near a FLOPs target (MnasNet space, Optuna, measured accuracy proxy)."""
    run_dir = run_dir or Path("runs") / study_name
    config = SearchConfig(
        target_flops=parse_size(target_flops, "--target-flops"), flops_tolerance=flops_tolerance,
        objective=objective, space=space, proxy=proxy, data=data, proxy_epochs=epochs,
        proxy_resolution=proxy_resolution, batch_size=batch_size, trials=trials,
        timeout_s=parse_duration(timeout), workers=workers, storage=storage, study_name=study_name,
        run_dir=run_dir, seed=seed, sampler=sampler, pruner=pruner, device=worker_device(device), threads=threads,
    )
    load_space(config.space)
    from effnet.nas.proxies import PROXIES

    if proxy not in PROXIES:
        raise InputError(f"--proxy must be one of {', '.join(PROXIES)}, got {proxy!r}")
    from effnet.nas.data.sources import load_data

    load_data(data, proxy_resolution, seed=seed)  # a bad --data path fails here, before the study starts
    check_run_dir(run_dir)
    set_run_dir(run_dir)
    study = open_study(config)  # a bad storage URL or changed resume settings fail here, before any output
    progress = SearchProgress(config, enabled=not as_json)
    started = time.time()
    if not as_json:
        progress_console.print(f"study {study_name!r} in {describe_storage(storage, run_dir)}; "
                               f"band {format_size(config.band.low)}–{format_size(config.band.high)} FLOPs")
    interrupted = False
    with progress.progress:
        try:
            study, reason = run_search(config, study, progress)
        except KeyboardInterrupt:
            interrupted = True
            reason = "interrupt"
    if interrupted:
        requeue_interrupted(study)
    result = finish(study, config, reason, time.time() - started)
    if as_json:
        emit_json(result)
    else:
        print_result(study, config, result)
    if interrupted:
        progress_console.print("interrupted: completed trials and files are saved; rerun the same command to resume")
        raise typer.Exit(130)

