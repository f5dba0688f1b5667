"""`effnet proxy-check`: can a cheap accuracy proxy be trusted to rank candidates?

Draws candidates inside the FLOPs band of a search space, scores each with the cheap proxies and
with a longer training (the reference), and reports Kendall's tau and Spearman's rho of every
proxy against the reference, beside the baselines "params" and "flops" (rank by size alone):
many published zero-cost proxies rank no better than parameter count.
"""

from __future__ import annotations

import csv
import io
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from effnet.cli.common import clean_input_errors, console, emit_json, progress_console, set_run_dir
from effnet.cli.options import check_run_dir
from effnet.nas.data.sources import ImageData, load_data
from effnet.nas.errors import InputError
from effnet.nas.files import atomic_write_text, dump_yaml
from effnet.nas.net.flops import analytic_cost, analytic_flops
from effnet.nas.proxies import PROXY_NAMES, ProxyFailure, ProxySettings, make_proxy
from effnet.nas.proxies.rank import kendall_tau, spearman_rho
from effnet.nas.proxies.train import proxy_network
from effnet.nas.study.report import write_run_record
from effnet.nas.training.runtime import configure_allocator, resolve_device
from effnet.nas.study.space import SearchSpace, load_space
from effnet.nas.net.spec import NetworkSpec, spec_to_dict
from effnet.nas.units import format_size, parse_size

BASELINES = ("params", "flops")
REFERENCE = "reference"
DEFAULT_PROXIES = ("train", "zero-cost", "synflow")
MAX_DRAWS = 1_000
"""Random draws allowed per requested candidate before the band is declared unreachable."""


@dataclass
class CandidateResult:
    index: int
    spec: NetworkSpec
    flops: int
    params: int
    scores: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def value(self, name: str) -> float:
        if name == "params":
            return float(self.params)
        if name == "flops":
            return float(self.flops)
        return self.scores.get(name, math.nan)


def draw_candidates(space: SearchSpace, count: int, low: float, high: float, seed: int) -> list[NetworkSpec]:
    """`count` distinct random specs with analytic FLOPs in [low, high], reproducible from `seed`."""
    rng = random.Random(seed)
    found: dict[str, NetworkSpec] = {}
    for _ in range(MAX_DRAWS * count):
        spec = space.random_spec(rng)
        if low <= analytic_flops(spec) <= high:
            found.setdefault(repr(spec_to_dict(spec)["stages"]), spec)
            if len(found) == count:
                return list(found.values())
    raise InputError(f"found only {len(found)} distinct candidates with {format_size(low)}–{format_size(high)} "
                     f"FLOPs in {MAX_DRAWS * count:,} random draws from the space; widen --flops-tolerance, "
                     "move --target-flops or ask for fewer --candidates")


def score_candidates(candidates: list[NetworkSpec], data: ImageData, proxies: list[str], cheap: ProxySettings,
                     reference: ProxySettings, advance: Callable[[str], None]) -> list[CandidateResult]:
    """Every proxy and then the reference training on every candidate; a failure is recorded, not raised."""
    scorers = [(name, make_proxy(name, data, cheap)) for name in proxies]
    scorers.append((REFERENCE, make_proxy("train", data, reference)))
    results = []
    for index, spec in enumerate(candidates):
        params = analytic_cost(proxy_network(spec, data, cheap)).params
        result = CandidateResult(index=index, spec=spec, flops=analytic_flops(spec), params=params)
        for name, proxy in scorers:
            advance(f"candidate {index + 1}/{len(candidates)}: {name}")
            started = time.perf_counter()
            try:
                result.scores[name] = proxy.score(spec)
            except ProxyFailure as err:
                result.failures[name] = str(err)
            result.seconds[name] = time.perf_counter() - started
        results.append(result)
    advance("done")
    return results


def correlations(results: list[CandidateResult], names: list[str]) -> dict[str, dict[str, Any]]:
    """Kendall tau and Spearman rho of each name's values against the reference, over scored candidates."""
    table = {}
    for name in names:
        usable = [r for r in results if math.isfinite(r.value(name)) and math.isfinite(r.value(REFERENCE))]
        x = [r.value(name) for r in usable]
        y = [r.value(REFERENCE) for r in usable]
        enough = len(usable) >= 2
        seconds = [r.seconds[name] for r in results if name in r.seconds]
        table[name] = {
            "kendall_tau": _json_float(kendall_tau(x, y)) if enough else None,
            "spearman_rho": _json_float(spearman_rho(x, y)) if enough else None,
            "candidates": len(usable),
            "seconds_per_candidate": sum(seconds) / len(seconds) if seconds else 0.0,
        }
    return table


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def write_csv(results: list[CandidateResult], names: list[str], path: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    timed = [n for n in names if n not in BASELINES] + [REFERENCE]
    writer.writerow(["candidate", "flops", "params", *[n for n in names if n not in BASELINES], REFERENCE,
                     *[f"seconds_{n}" for n in timed], "failures", "architecture"])
    for r in results:
        scores = [_cell(r.scores.get(n)) for n in names if n not in BASELINES]
        writer.writerow([r.index, r.flops, r.params, *scores, _cell(r.scores.get(REFERENCE)),
                         *[f"{r.seconds.get(n, 0.0):.2f}" for n in timed],
                         "; ".join(f"{k}: {v}" for k, v in r.failures.items()), r.spec.summary])
    return atomic_write_text(path, buffer.getvalue())


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def print_result(summary: dict[str, Any], results: list[CandidateResult], proxies: list[str]) -> None:
    candidates = Table(title=f"candidates ({summary['data']}, {summary['resolution']} px)")
    for column in ("#", "FLOPs", "params", *proxies, f"{REFERENCE} ({summary['reference_epochs']} ep)"):
        candidates.add_column(column, justify="right")
    for r in results:
        candidates.add_row(str(r.index), format_size(r.flops), format_size(r.params),
                           *[_short(r.scores.get(n)) for n in [*proxies, REFERENCE]])
    console.print(candidates)
    table = Table(title=f"rank agreement with {summary['reference_epochs']}-epoch training "
                        f"({summary['candidates']} candidates)")
    for column in ("proxy", "Kendall τ", "Spearman ρ", "s / candidate"):
        table.add_column(column, justify="left" if column == "proxy" else "right")
    for name, row in summary["correlations"].items():
        table.add_row(name if name not in BASELINES else f"{name} (baseline)", _show(row["kendall_tau"]),
                      _show(row["spearman_rho"]), f"{row['seconds_per_candidate']:.1f}" if name not in BASELINES else "")
    console.print(table)
    low, high = summary["reference_accuracy"]["min"], summary["reference_accuracy"]["max"]
    if low is not None:
        console.print(f"reference accuracy spans {low:.4f}–{high:.4f}")
    console.print(f"architectures and scores: {summary['csv']}, {summary['yaml']}")


def _short(value: float | None) -> str:
    return "failed" if value is None else f"{value:.4g}"


def _show(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


@clean_input_errors
def proxy_check(
    target_flops: str = typer.Option("400M", "--target-flops", "-t", help="FLOPs target T: 400M, 0.4G, 400e6."),
    flops_tolerance: float = typer.Option(0.1, "--flops-tolerance", help="Candidates are drawn inside T·(1±tol)."),
    space: Optional[str] = typer.Option(None, "--space", help="Search space: efficientnet (default), mnasnet, or a YAML file."),
    data: str = typer.Option("digits", "--data", help="digits (embedded, real), synthetic, or an image-folder path."),
    proxy: Optional[list[str]] = typer.Option(
        None, "--proxy", help=f"Cheap proxy to check, repeatable: {', '.join(PROXY_NAMES)} "
                              f"(default: {', '.join(DEFAULT_PROXIES)}); zero-cost is NASWOT."),
    epochs: int = typer.Option(3, "--epochs", help="Epochs of the cheap `train` proxy."),
    reference_epochs: int = typer.Option(8, "--reference-epochs", help="Epochs of the reference training."),
    candidates: int = typer.Option(8, "--candidates", "-n", help="Candidates to draw and score."),
    resolution: int = typer.Option(32, "--resolution", help="Image size the proxies and the reference train at."),
    seed: int = typer.Option(0, "--seed", help="Seeds the candidate draw, the data split and every training."),
    device: str = typer.Option("cpu", "--device", help="auto | cpu | cuda | cuda:N."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: torch's)."),
    run_dir: Path = typer.Option(Path("runs/proxy-check"), "--run-dir", help="Where proxy_check.csv and .yaml go."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object instead of tables."),
) -> None:
    """Rank-check cheap accuracy proxies against a longer training (Kendall τ, Spearman ρ, params/FLOPs baselines)."""
    proxies = list(dict.fromkeys(proxy or DEFAULT_PROXIES))
    unknown = [p for p in proxies if p not in PROXY_NAMES]
    if unknown:
        raise InputError(f"--proxy {unknown[0]!r} is unknown; choose from {', '.join(PROXY_NAMES)}")
    if candidates < 3:
        raise InputError(f"--candidates must be at least 3 for a rank correlation to mean anything, got {candidates}")
    if epochs < 1 or reference_epochs < 1:
        raise InputError(f"--epochs and --reference-epochs must be at least 1, got {epochs} and {reference_epochs}")
    if not 0 < flops_tolerance < 1:
        raise InputError(f"--flops-tolerance must lie strictly between 0 and 1, got {flops_tolerance}")
    if resolution < 8:
        raise InputError(f"--resolution must be at least 8 pixels, got {resolution}")
    device = str(resolve_device(device))
    target = parse_size(target_flops, "--target-flops")
    search_space = load_space(space)
    images = load_data(data, resolution, seed=seed)
    check_run_dir(run_dir)
    set_run_dir(run_dir)
    configure_allocator()
    low, high = target * (1 - flops_tolerance), target * (1 + flops_tolerance)
    specs = draw_candidates(search_space, candidates, low, high, seed)
    cheap = ProxySettings(epochs=epochs, resolution=resolution, device=device, seed=seed, threads=threads)
    reference = ProxySettings(epochs=reference_epochs, resolution=resolution, device=device, seed=seed,
                              threads=threads)

    progress = Progress(TextColumn("[bold]proxy-check"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=progress_console, disable=as_json)
    task = progress.add_task("proxy-check", total=len(specs) * (len(proxies) + 1), status="")
    steps = iter(range(len(specs) * (len(proxies) + 1) + 1))

    def advance(status: str) -> None:
        progress.update(task, completed=next(steps), status=status)

    with progress:
        results = score_candidates(specs, images, proxies, cheap, reference, advance)

    names = [*proxies, *BASELINES]
    references = [r.scores[REFERENCE] for r in results if REFERENCE in r.scores]
    csv_path = write_csv(results, names, run_dir / "proxy_check.csv")
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "space": search_space.name,
        "data": images.name,
        "target_flops": target,
        "flops_tolerance": flops_tolerance,
        "resolution": resolution,
        "epochs": epochs,
        "reference_epochs": reference_epochs,
        "seed": seed,
        "device": device,
        "candidates": len(results),
        "correlations": correlations(results, names),
        "reference_accuracy": {"min": min(references, default=None), "max": max(references, default=None)},
        "failures": [{"candidate": r.index, "proxy": k, "reason": v} for r in results for k, v in r.failures.items()],
        "csv": str(csv_path),
        "yaml": str(run_dir / "proxy_check.yaml"),
    }
    dump_yaml({**summary, "results": [
        {"candidate": r.index, "flops": r.flops, "params": r.params, "scores": r.scores,
         "seconds": {k: round(v, 3) for k, v in r.seconds.items()}, "failures": r.failures,
         "spec": spec_to_dict(r.spec)} for r in results]}, run_dir / "proxy_check.yaml")
    write_run_record(run_dir, "proxy-check", {k: summary[k] for k in (
        "space", "data", "target_flops", "flops_tolerance", "resolution", "epochs", "reference_epochs", "seed",
        "device")} | {"proxies": proxies, "candidates": candidates})
    if as_json:
        emit_json(summary)
    else:
        print_result(summary, results, proxies)
