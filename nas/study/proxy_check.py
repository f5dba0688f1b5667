"""Can a cheap accuracy proxy be trusted to rank candidates?

Draws candidates inside the FLOPs band of a search space, scores each with the cheap proxies and
with a longer training (the reference), and reports Kendall's tau and Spearman's rho of every
proxy against the reference with their p-values, beside the baselines "params" and "flops" (rank
by size alone): many published zero-cost proxies rank no better than parameter count. Each proxy's
cost is its seconds per candidate, and that plus its one-time cost (the supernet's training) spread
over `AMORTISED_OVER` candidates, a search's scale.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effnet.nas import checks
from effnet.nas.cpus import check_threads
from effnet.nas.data.sources import DataSplits, data_record
from effnet.nas.errors import InputError, SettingError
from effnet.nas.files import dump_yaml, write_csv
from effnet.nas.memory import check_loader_workers
from effnet.nas.net.flops import analytic_cost, analytic_flops
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.net.spec_file import spec_to_dict
from effnet.nas.outputs import claim_run_dir, holding_run_dirs
from effnet.nas.progress import Progress, ProgressCallback
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.data import load_proxy_data
from effnet.nas.proxies.factory import make_proxy
from effnet.nas.proxies.names import DEFAULT_PROXIES, PROXY_NAMES
from effnet.nas.proxies.proxy import ProxyFailure
from effnet.nas.proxies.supernet_training import CHECKPOINT_FILES, SupernetSetup, SupernetTraining, train_supernet
from effnet.nas.proxies.train import proxy_network
from effnet.nas.record import RUN_RECORD, write_run_record
from effnet.nas.signals import Interrupted
from effnet.nas.space.choices import SearchSpace
from effnet.nas.space.load import load_space
from effnet.nas.space.reach import check_band
from effnet.nas.study.rank import UNDEFINED, kendall, spearman
from effnet.nas.units import format_size

BASELINES = ("params", "flops")
PROXY_CHECK_FILES = (RUN_RECORD, "proxy_check.csv", "proxy_check.yaml", CHECKPOINT_FILES)
"""The files proxy-check writes in its run directory."""
REFERENCE = "reference"
MAX_DRAWS = 1_000
"""Random draws allowed per requested candidate before the band is declared too thin."""
MAX_TOTAL_DRAWS = 50_000
"""Random draws allowed in all (a few seconds), however many candidates are asked for."""
AMORTISED_OVER = 1_000
"""Candidates a proxy's one-time cost (the supernet's training) is spread over in `amortised_seconds`."""


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
    draws = min(MAX_DRAWS * count, MAX_TOTAL_DRAWS)
    for _ in range(draws):
        spec = space.random_spec(rng)
        if low <= analytic_flops(spec) <= high:
            found.setdefault(repr(spec_to_dict(spec)["stages"]), spec)
            if len(found) == count:
                return list(found.values())
    raise InputError(
        f"found only {len(found)} distinct candidates with {format_size(low)}–{format_size(high)} "
        f"FLOPs in {draws:,} random draws from the space; widen the FLOPs tolerance, "
        "move the target or ask for fewer candidates"
    )


def score_candidates(
    candidates: list[NetworkSpec],
    data: DataSplits,
    config: ProxyCheckConfig,
    advance: Callable[[str], None],
    supernet: SupernetSetup | None = None,
) -> list[CandidateResult]:
    """Every proxy and then the reference training on every candidate; a failure is recorded, not raised. The
    supernet proxy needs `supernet`, trained."""
    runtime = config.runtime()
    scorers = [(name, make_proxy(config.proxy(name), data, runtime, supernet)) for name in config.proxies]
    scorers.append((REFERENCE, make_proxy(config.proxy(epochs=config.reference_epochs), data, runtime)))
    results = []
    for index, spec in enumerate(candidates):
        params = analytic_cost(proxy_network(spec, data)).params
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


def correlations(
    results: list[CandidateResult], names: list[str], setup_seconds: dict[str, float] | None = None
) -> dict[str, dict[str, Any]]:
    """Kendall tau and Spearman rho (with p-values) of each name's values against the reference, over scored
    candidates; seconds per candidate, and with a proxy's one-time cost (`setup_seconds`: the supernet's
    training) spread over `AMORTISED_OVER` candidates."""
    table = {}
    for name in names:
        usable = [r for r in results if math.isfinite(r.value(name)) and math.isfinite(r.value(REFERENCE))]
        x = [r.value(name) for r in usable]
        y = [r.value(REFERENCE) for r in usable]
        tau, rho = (kendall(x, y), spearman(x, y)) if len(usable) >= 2 else (UNDEFINED, UNDEFINED)
        seconds = [r.seconds[name] for r in results if name in r.seconds]
        per_candidate = sum(seconds) / len(seconds) if seconds else 0.0
        setup = (setup_seconds or {}).get(name, 0.0)
        table[name] = {
            "kendall_tau": _rounded(tau.statistic, 4),
            "kendall_p": _significant(tau.pvalue),
            "spearman_rho": _rounded(rho.statistic, 4),
            "spearman_p": _significant(rho.pvalue),
            "candidates": len(usable),
            "seconds_per_candidate": per_candidate,
            "setup_seconds": setup,
            "amortised_seconds": per_candidate + setup / AMORTISED_OVER,
        }
    return table


def _rounded(value: float, digits: int) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def _significant(value: float) -> float | None:
    """A p-value to 4 significant digits (small ones stay distinguishable from 0)."""
    return None if math.isnan(value) else float(f"{value:.4g}")


def write_candidates_csv(results: list[CandidateResult], proxies: list[str], path: Path) -> Path:
    timed = [*proxies, REFERENCE]
    columns = ["candidate", "flops", "params", *timed, *[f"seconds_{n}" for n in timed], "failures", "architecture"]
    rows = [
        {
            "candidate": r.index,
            "flops": r.flops,
            "params": r.params,
            **{n: _cell(r.scores.get(n)) for n in timed},
            **{f"seconds_{n}": f"{r.seconds.get(n, 0.0):.2f}" for n in timed},
            "failures": "; ".join(f"{k}: {v}" for k, v in r.failures.items()),
            "architecture": r.spec.summary,
        }
        for r in results
    ]
    return write_csv(path, columns, rows)


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


@dataclass(frozen=True)
class ProxyCheckConfig:
    """Which proxies to check, on how many candidates drawn from which band of which space, against how
    long a reference training; `device` is auto, cpu, cuda or cuda:N."""

    target_flops: int = 400_000_000
    flops_tolerance: float = 0.1
    space: str | None = None
    data: str = "digits"
    proxies: tuple[str, ...] = DEFAULT_PROXIES
    epochs: int = 3
    reference_epochs: int = 8
    candidates: int = 8
    resolution: int = 32
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    run_dir: Path = Path("runs/proxy-check")
    train_images: int | None = None
    val_images: int | None = None
    augment: str = "auto"
    loader_workers: int | None = None
    cache_dir: Path | None = None
    supernet_epochs: int = 200
    supernet_kernels: str = "separate"
    supernet_recipe: str = "uniform"
    supernet_ops: str = "separate"
    force: bool = False
    """Let the run directory hold files effnet did not write (see `effnet.nas.outputs`)."""

    def proxy(self, name: str = "train", epochs: int | None = None) -> ProxyConfig:
        return ProxyConfig(
            name=name,
            data=self.data,
            epochs=self.epochs if epochs is None else epochs,
            resolution=self.resolution,
            train_images=self.train_images,
            val_images=self.val_images,
            augment=self.augment,
            supernet_epochs=self.supernet_epochs,
            supernet_kernels=self.supernet_kernels,
            supernet_recipe=self.supernet_recipe,
            supernet_ops=self.supernet_ops,
        )

    def runtime(self) -> ProxyRuntime:
        return ProxyRuntime(
            device=self.device,
            seed=self.seed,
            threads=self.threads,
            loader_workers=self.loader_workers,
            cache_dir=self.cache_dir,
        )

    def __post_init__(self) -> None:
        checks.whole("target_flops", self.target_flops, low=1)
        checks.number("flops_tolerance", self.flops_tolerance, low=0, high=1, low_open=True, high_open=True)
        if not self.proxies:
            raise SettingError("proxy", "needs at least one proxy to check")
        for name in self.proxies:
            checks.choice("proxy", name, PROXY_NAMES)
        checks.whole("proxy_epochs", self.epochs, low=1, high=10_000)
        checks.whole("reference_epochs", self.reference_epochs, low=1, high=10_000)
        checks.whole("candidates", self.candidates, low=3, high=100_000)
        checks.whole("proxy_resolution", self.resolution, low=8, high=4096)
        checks.seed("seed", self.seed)
        self.proxy()  # the data and supernet settings, checked as any proxy's
        if self.threads is not None:
            check_threads("threads", self.threads)


@dataclass(frozen=True)
class ProxyCheckResult:
    config: ProxyCheckConfig
    space: str
    data: str
    results: list[CandidateResult]
    correlations: dict[str, dict[str, Any]]
    files: dict[str, Path] = field(default_factory=dict)
    supernet: SupernetTraining | None = None

    def as_dict(self) -> dict[str, Any]:
        c = self.config
        references = [r.scores[REFERENCE] for r in self.results if REFERENCE in r.scores]
        return {
            "run_dir": str(c.run_dir),
            "space": self.space,
            "data": self.data,
            "target_flops": c.target_flops,
            "flops_tolerance": c.flops_tolerance,
            "resolution": c.resolution,
            "epochs": c.epochs,
            "reference_epochs": c.reference_epochs,
            "seed": c.seed,
            "device": c.device,
            "candidates": len(self.results),
            "correlations": self.correlations,
            "amortised_over": AMORTISED_OVER,
            "supernet": None
            if self.supernet is None
            else {
                "checkpoint": str(self.supernet.path),
                "epochs": c.supernet_epochs,
                "kernels": c.supernet_kernels,
                "recipe": c.supernet_recipe,
                "ops": c.supernet_ops,
                "steps": self.supernet.steps,
                "training_s": round(self.supernet.seconds, 1),
            },
            "reference_accuracy": {"min": min(references, default=None), "max": max(references, default=None)},
            "failures": [
                {"candidate": r.index, "proxy": k, "reason": v} for r in self.results for k, v in r.failures.items()
            ],
            "csv": str(self.files["csv"]),
            "yaml": str(self.files["yaml"]),
        }


@holding_run_dirs()
def proxy_check(config: ProxyCheckConfig, on_progress: ProgressCallback | None = None) -> ProxyCheckResult:
    """Draw the candidates, score them with every proxy and the reference training, and write
    proxy_check.csv, proxy_check.yaml and run.yaml; `on_progress(Progress)` follows along (`done` counts
    the scorings, each proxy's and the reference's of each candidate). The
    supernet proxy's supernet is trained first (resumed, or found, in the run directory); a stop signal
    during its training saves its checkpoint and raises `Interrupted`."""
    from effnet.nas.training.runtime import resolve_device

    device = str(resolve_device(config.device))
    check_loader_workers(config.loader_workers)
    space = load_space(config.space)
    claim_run_dir(config.run_dir, "proxy-check", config.force, writes=PROXY_CHECK_FILES)
    images = load_proxy_data(config.proxy(), config.runtime(), on_progress)
    low = config.target_flops * (1 - config.flops_tolerance)
    high = min(config.target_flops * (1 + config.flops_tolerance), sys.float_info.max)  # finite: the band check says
    check_band(space, math.ceil(low), math.floor(high))
    specs = draw_candidates(space, config.candidates, low, high, config.seed)
    setup, supernet = None, None
    if "supernet" in config.proxies:
        setup = SupernetSetup(space, low, high, config.run_dir)
        runtime = dataclasses.replace(config.runtime(), device=device)
        supernet = train_supernet(setup, config.proxy("supernet"), images, runtime, on_progress=on_progress)
        if supernet.signal is not None:
            raise Interrupted(supernet.signal)
    total = len(specs) * (len(config.proxies) + 1)
    steps = iter(range(total + 1))

    def advance(status: str) -> None:
        if on_progress is not None:
            on_progress(Progress(next(steps), total, status))

    results = score_candidates(specs, images, dataclasses.replace(config, device=device), advance, setup)
    names = [*config.proxies, *BASELINES]
    setup_seconds = {} if supernet is None else {"supernet": supernet.seconds}
    run_dir = config.run_dir
    files = {
        "csv": write_candidates_csv(results, list(config.proxies), run_dir / "proxy_check.csv"),
        "yaml": run_dir / "proxy_check.yaml",
    }
    result = ProxyCheckResult(
        config=dataclasses.replace(config, device=device),
        space=space.name,
        data=images.name,
        results=results,
        correlations=correlations(results, names, setup_seconds),
        files=files,
        supernet=supernet,
    )
    summary = result.as_dict()
    dump_yaml(
        {
            **summary,
            "results": [
                {
                    "candidate": r.index,
                    "flops": r.flops,
                    "params": r.params,
                    "scores": r.scores,
                    "seconds": {k: round(v, 3) for k, v in r.seconds.items()},
                    "failures": r.failures,
                    "spec": spec_to_dict(r.spec),
                }
                for r in results
            ],
        },
        files["yaml"],
    )
    settings = {
        **dataclasses.asdict(result.config),
        "run_dir": str(run_dir),
        "proxies": list(config.proxies),
        "data": data_record(images),
    }
    files["run"] = write_run_record(
        run_dir,
        "proxy-check",
        settings,
        {k: summary[k] for k in ("correlations", "reference_accuracy", "failures", "supernet")},
    )
    return result
