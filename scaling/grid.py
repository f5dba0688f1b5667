"""The grid over compound scaling coefficients: fix phi = 1, score alpha, beta, gamma near alpha*beta^2*gamma^2 = 2.

Every grid point lives in an Optuna study as one trial, queued once (`enqueue_trial`) with its
parameters and the marker `queued_point`. Workers never sample: each takes a queued trial (the
storage hands each to exactly one process), scores it, and stops when none is left; the study runner
(`effnet.nas.study.runner`) runs them, so the grid resumes, shares its study between workers and
machines, and recovers the points of dead workers like the search does. Optuna's `GridSampler` is
not used: with several workers it evaluates points twice and raises after the last point.

Points enter the queue in two places, both idempotent and safe to race: the run that finds a point
without a live or finished trial queues it (`queue_missing_points`), and the recovery of a dead
worker queues its point again. Should two runs queue the same point at once, the claim rule
`earlier_twin` still lets only one trial evaluate it: a taken trial stands down when its point
already has an evaluated trial, or a waiting or running one with a lower number. A worker that asks
for a trial just as the queue runs dry gets a fresh one with no point; it stands down too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from effnet.nas import checks
from effnet.nas.errors import InputError, SettingError
from effnet.nas.files import dump_yaml, ensure_writable_dir, write_csv
from effnet.nas.net.flops import analytic_cost
from effnet.nas.net.spec import NetworkSpec, spec_to_dict
from effnet.nas.proxies import ProxyConfig, ProxyRuntime
from effnet.nas.record import write_run_record
from effnet.nas.study.recovery import QUEUED_PREFIX, WORKER_ATTR
from effnet.nas.study.runner import ProgressCallback, StudyConfig, StudyProgress, open_study, run_study
from effnet.scaling.compound import MAX_COEFFICIENT, Coefficients, compound_scale, scaled_resolution

FLOPS_TARGET = 2
"""The paper's constraint at phi = 1: alpha * beta^2 * gamma^2 ~ 2 (each unit of phi doubles the FLOPs)."""
MAX_AXIS_VALUES = 1000
MAX_GRID_SIZE = 10_000
"""Points a grid may span before the tolerance filters them (the default spans 441): each is sized when the
grid is made, and each kept one is a trial."""
_DIGITS = Decimal("1e-9")
COEFFICIENTS = ("alpha", "beta", "gamma")
POINT_ATTR = QUEUED_PREFIX + "point"
"""Marks a trial queued for a grid point (kept when a dead worker's point is queued again)."""


# -- the grid -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AxisRange:
    """One coefficient's closed range, held exactly (as decimals) so a step of 0.05 lands on 1.15."""

    low: Decimal
    high: Decimal

    @property
    def text(self) -> str:
        return f"{_plain(self.low)}:{_plain(self.high)}"

    def values(self, step: Decimal) -> tuple[float, ...]:
        """low, low + step, ... up to high, computed in decimal and rounded to 1e-9."""
        count = int((self.high - self.low) / step) + 1
        return tuple(float((self.low + k * step).quantize(_DIGITS)) for k in range(count))

    def distribution(self) -> FloatDistribution:
        return FloatDistribution(float(self.low), float(self.high))


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if "." in text else f"{text}.0"


def parse_range(text: str, setting: str) -> AxisRange:
    """`1.0:1.4` (a closed range) or `1.2` (one value); both ends at least 1. Errors name `setting`."""
    parts = str(text).split(":")
    if len(parts) > 2:
        raise SettingError(setting, f"{text!r} is not a range; write LOW:HIGH like 1.0:1.4, or one value like 1.2")
    try:
        ends = [Decimal(p.strip()) for p in parts]
    except InvalidOperation:
        raise SettingError(setting, f"{text!r} is not a range; write LOW:HIGH like 1.0:1.4, "
                                    f"or one value like 1.2") from None
    if not all(e.is_finite() for e in ends):
        raise SettingError(setting, f"{text!r}: both ends must be finite numbers, like 1.0:1.4")
    low, high = ends[0], ends[-1]
    if low < 1:
        raise SettingError(setting, f"{text!r}: coefficients must be at least 1 (compound scaling only grows "
                                    f"the network); start the range at 1.0 or above")
    if low > high:
        raise SettingError(setting, f"{text!r}: the low end is above the high end; write it as "
                                    f"{_plain(high)}:{_plain(low)}")
    if high > MAX_COEFFICIENT:
        raise SettingError(setting, f"{text!r}: coefficients must be at most {MAX_COEFFICIENT:g}; end the range there "
                                    "or below")
    return AxisRange(low, high)


def parse_step(step: float | str) -> Decimal:
    try:
        value = Decimal(str(step))
    except InvalidOperation:
        raise SettingError("step", f"{step!r} is not a number; use e.g. 0.05") from None
    if not value.is_finite() or value <= 0:
        raise SettingError("step", f"must be a positive number like 0.05, got {step}")
    return value


@dataclass(frozen=True)
class GridPoint:
    """One (alpha, beta, gamma) and what phi = 1 makes of the base: the formula's and the measured FLOPs growth."""

    alpha: float
    beta: float
    gamma: float
    product: float
    """alpha * beta^2 * gamma^2, computed exactly from the decimal grid values."""
    flops: int
    params: int
    flops_ratio: float
    """Analytic FLOPs of the phi = 1 network (after the reference rounding) over the base's."""

    @property
    def key(self) -> tuple[float, float, float]:
        return (self.alpha, self.beta, self.gamma)

    def params_dict(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}


def point_key(params: dict[str, Any]) -> tuple[float, float, float] | None:
    if not all(name in params for name in COEFFICIENTS):
        return None
    return tuple(round(float(params[name]), 9) for name in COEFFICIENTS)  # type: ignore[return-value]


def phi1_spec(base: NetworkSpec, alpha: float, beta: float, gamma: float) -> NetworkSpec:
    return compound_scale(base, alpha, beta, gamma, 1, name=f"{base.name}-grid")


@dataclass(frozen=True)
class GridDefinition:
    alpha: AxisRange
    beta: AxisRange
    gamma: AxisRange
    step: Decimal
    tolerance: float
    measured: bool
    """Keep points by the measured FLOPs ratio of the phi = 1 network instead of the formula."""

    def __post_init__(self) -> None:
        checks.number("tolerance", self.tolerance, low=0)
        counts = [int((r.high - r.low) / self.step) + 1 for r in (self.alpha, self.beta, self.gamma)]
        if max(counts) > MAX_AXIS_VALUES or counts[0] * counts[1] * counts[2] > MAX_GRID_SIZE:
            raise SettingError("step", f"{_plain(self.step)} makes a grid of {counts[0]}x{counts[1]}x{counts[2]} "
                             f"points; use a larger step or narrower ranges")

    @classmethod
    def from_ranges(cls, alpha: str = "1.0:1.4", beta: str = "1.0:1.3", gamma: str = "1.0:1.3",
                    step: float | str = 0.05, tolerance: float = 0.1, measured: bool = False) -> "GridDefinition":
        """A grid from ranges written `LOW:HIGH` (or one value); the defaults are the command line's:
        alpha 1.0-1.4, beta and gamma 1.0-1.3, step 0.05, |alpha*beta^2*gamma^2 - 2| <= 0.1."""
        return cls(parse_range(alpha, "alpha_range"), parse_range(beta, "beta_range"),
                   parse_range(gamma, "gamma_range"), parse_step(step), tolerance, measured)

    @property
    def rule(self) -> str:
        measure = "measured FLOPs ratio of the phi=1 network" if self.measured else "alpha*beta^2*gamma^2"
        return f"|{measure} - {FLOPS_TARGET}| <= {self.tolerance:g}"

    def describe(self) -> dict[str, Any]:
        return {"alpha": self.alpha.text, "beta": self.beta.text, "gamma": self.gamma.text,
                "step": _plain(self.step), "tolerance": self.tolerance,
                "constraint": "measured" if self.measured else "formula", "rule": self.rule}

    def points(self, base: NetworkSpec) -> list[GridPoint]:
        """The kept points in grid order (alpha, then beta, then gamma ascending)."""
        base_flops = analytic_cost(base).flops
        alphas, betas, gammas = (r.values(self.step) for r in (self.alpha, self.beta, self.gamma))
        kept = []
        for a in alphas:
            for b in betas:
                for g in gammas:
                    product = Decimal(str(a)) * Decimal(str(b)) ** 2 * Decimal(str(g)) ** 2
                    if not self.measured and abs(product - FLOPS_TARGET) > Decimal(str(self.tolerance)):
                        continue
                    cost = analytic_cost(phi1_spec(base, a, b, g))
                    ratio = cost.flops / base_flops
                    if self.measured and abs(ratio - FLOPS_TARGET) > self.tolerance:
                        continue
                    kept.append(GridPoint(a, b, g, float(product.quantize(_DIGITS)), cost.flops, cost.params, ratio))
        if not kept:
            raise InputError(f"the grid alpha {self.alpha.text}, beta {self.beta.text}, gamma {self.gamma.text} "
                             f"(step {_plain(self.step)}) holds no point with {self.rule}; widen the ranges "
                             f"or raise --tolerance")
        return kept


# -- settings ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GridConfig:
    """A grid: the base network, the grid definition, the proxy (its resolution is the one at gamma = 1;
    a point trains at `scaled_resolution(resolution, gamma)`), where the study lives, and `max_points`,
    how many more points this run may score (None: all)."""

    base: NetworkSpec
    grid: GridDefinition
    proxy: ProxyConfig = ProxyConfig()
    study: StudyConfig = StudyConfig(run_dir=Path("runs/grid"), name="grid")
    max_points: int | None = None

    def __post_init__(self) -> None:
        if self.max_points is not None:
            checks.whole("max_points", self.max_points, low=1)

    def proxy_resolution_for(self, gamma: float) -> int:
        """The proxy scales resolution like the model does: `scaled_resolution(proxy resolution, gamma)`."""
        return scaled_resolution(self.proxy.resolution, gamma)

    def proxy_settings(self) -> dict[str, Any]:
        return {"name": self.proxy.name, "data": self.proxy.data, "epochs": self.proxy.epochs,
                "resolution": self.proxy.resolution,
                "resolution_rule": "round(resolution * gamma), halves up (the model's own rule)",
                "batch_size": self.proxy.batch_size, "seed": self.study.seed, "score": self.score_name}

    @property
    def score_name(self) -> str:
        return "validation top-1 accuracy" if self.proxy.name == "train" else f"{self.proxy.name} score (higher is better)"

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed grid must agree on: otherwise its scores are not comparable."""
        spec_text = json.dumps(spec_to_dict(self.base.replace(provenance={})), sort_keys=True)
        return {"base": hashlib.sha256(spec_text.encode()).hexdigest()[:16], **self.grid.describe(),
                "proxy": self.proxy.fingerprint(), "seed": self.study.seed}

    def distributions(self) -> dict[str, FloatDistribution]:
        return {"alpha": self.grid.alpha.distribution(), "beta": self.grid.beta.distribution(),
                "gamma": self.grid.gamma.distribution()}

    def settings(self, base_label: str) -> dict[str, Any]:
        return {"base": base_label, "grid": self.grid.describe(), "proxy": self.proxy_settings(),
                "study": {**dataclasses.asdict(self.study), "run_dir": str(self.study.run_dir),
                          "storage": self.study.storage_label},
                "max_points": self.max_points}


# -- the study --------------------------------------------------------------------------------------

def trial_point(trial: FrozenTrial) -> tuple[float, float, float] | None:
    """The point a trial stands for: its parameters, or the fixed ones of a queued trial not yet taken."""
    return point_key(trial.params) or point_key(trial.system_attrs.get("fixed_params", {}))


def is_evaluated(trial: FrozenTrial) -> bool:
    """Scored, or failed by the proxy's own error (which a retry would repeat); not a dead worker's."""
    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.FAIL and "error" in trial.user_attrs)


def is_live(trial: FrozenTrial) -> bool:
    return trial.state in (TrialState.WAITING, TrialState.RUNNING)


def queue_missing_points(study: optuna.Study, points: list[GridPoint]) -> int:
    """Queue a trial for every point without a waiting, running or evaluated trial; returns how many."""
    covered = {trial_point(t) for t in study.get_trials(deepcopy=False) if is_live(t) or is_evaluated(t)}
    added = 0
    for point in points:
        if point.key in covered:
            continue
        study.enqueue_trial(point.params_dict(), user_attrs={POINT_ATTR: True})
        added += 1
    return added


def earlier_twin(study: optuna.Study, number: int, key: tuple[float, float, float]) -> int | None:
    """Another trial of the same point that takes precedence over trial `number` (see the module notes)."""
    for other in study.get_trials(deepcopy=False):
        if other.number == number or trial_point(other) != key:
            continue
        if is_evaluated(other) or (is_live(other) and other.number < number):
            return other.number
    return None


def points_taken(study: optuna.Study) -> int:
    """Points evaluated or being evaluated: what `max_points` counts."""
    return len({trial_point(t) for t in study.get_trials(deepcopy=False)
                if is_evaluated(t) or t.state == TrialState.RUNNING} - {None})


class PointScorer:
    """Scores phi = 1 networks with the chosen proxy; data and proxy built once per proxy resolution."""

    def __init__(self, proxy: ProxyConfig, runtime: ProxyRuntime):
        self.config = proxy
        self.runtime = runtime
        self._proxies: dict[int, Any] = {}

    def proxy(self, resolution: int) -> Any:
        if resolution not in self._proxies:
            from effnet.nas.data.sources import load_data
            from effnet.nas.proxies import make_proxy

            config = dataclasses.replace(self.config, resolution=resolution)
            data = load_data(config.data, resolution, seed=self.runtime.seed)
            self._proxies[resolution] = make_proxy(config, data, self.runtime)
        return self._proxies[resolution]

    def __call__(self, spec: NetworkSpec, resolution: int) -> float:
        return float(self.proxy(resolution).score(spec))


class PointObjective:
    """Scores the point of a taken trial, unless a twin of it takes precedence or it has none."""

    def __init__(self, config: GridConfig, study: optuna.Study, scorer: Callable[[NetworkSpec, int], float]):
        self.config = config
        self.study = study
        self.scorer = scorer
        self.base_flops = analytic_cost(config.base).flops

    def __call__(self, trial: optuna.Trial) -> float:
        if not trial.user_attrs.get(POINT_ATTR):
            trial.set_user_attr("surplus", True)
            raise optuna.TrialPruned("no grid point was left to take")
        distributions = self.config.distributions()
        key = tuple(trial.suggest_float(name, distributions[name].low, distributions[name].high)
                    for name in COEFFICIENTS)
        twin = earlier_twin(self.study, trial.number, key)
        if twin is not None:
            trial.set_user_attr("duplicate_of", twin)
            raise optuna.TrialPruned(f"trial {twin} evaluates this point")
        alpha, beta, gamma = key
        spec = phi1_spec(self.config.base, alpha, beta, gamma)
        cost = analytic_cost(spec)
        resolution = self.config.proxy_resolution_for(gamma)
        trial.set_user_attr("product", float(Decimal(str(alpha)) * Decimal(str(beta)) ** 2 * Decimal(str(gamma)) ** 2))
        trial.set_user_attr("flops", cost.flops)
        trial.set_user_attr("params", cost.params)
        trial.set_user_attr("flops_ratio", cost.flops / self.base_flops)
        trial.set_user_attr("proxy_resolution", resolution)
        started = time.perf_counter()
        try:
            from effnet.nas.study.signals import training

            with training():
                score = self.scorer(spec, resolution)
        except KeyboardInterrupt:
            raise
        except Exception as err:
            trial.set_user_attr("error", f"{type(err).__name__}: {' '.join(str(err).split())}"[:500])
            raise
        finally:
            trial.set_user_attr("proxy_seconds", round(time.perf_counter() - started, 3))
        return score


@dataclass(frozen=True)
class GridJob:
    """The grid as a `StudyJob` for the study runner; `limit` is the points-taken count at which this
    run stops (None: none); `scorer(spec, resolution)` replaces the proxy (None: `PointScorer`)."""

    config: GridConfig
    points: tuple[GridPoint, ...]
    limit: int | None = None
    scorer: Callable[[NetworkSpec, int], float] | None = None
    kind: str = "grid"

    def fingerprint(self) -> dict[str, Any]:
        return self.config.fingerprint()

    def directions(self) -> list[str]:
        return ["maximize"]

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=seed)  # queued points only; it never samples one

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.NopPruner()

    def prepare(self, study: optuna.Study) -> None:
        queue_missing_points(study, list(self.points))

    def objective(self, study: optuna.Study, deadline: float | None, threads: int | None,
                  device: str) -> Callable[[optuna.Trial], Any]:
        runtime = ProxyRuntime(device=device, seed=self.config.study.seed, threads=threads)
        return PointObjective(self.config, study, self.scorer or PointScorer(self.config.proxy, runtime))

    def stop_reason(self, study: optuna.Study) -> str | None:
        if self.limit is not None and points_taken(study) >= self.limit:
            return "max-points"
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return "done"
        return None

    def progress(self, study: optuna.Study) -> StudyProgress:
        results = grid_results(study, self.config, list(self.points))
        done = sum(r.state in ("complete", "failed") for r in results)
        order = ranked(results)
        status = f"running {sum(r.state == 'running' for r in results)}"
        if order:
            p = order[0].point
            status += f" · best {order[0].score:.4f} at α={p.alpha:g} β={p.beta:g} γ={p.gamma:g}"
        return StudyProgress(done=done, total=len(results), status=status)


# -- results --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PointResult:
    point: GridPoint
    state: str
    """"complete", "failed" (the proxy raised), "running", or "pending" (waiting, or to be re-queued)."""
    score: float | None = None
    trial: int | None = None
    proxy_resolution: int | None = None
    seconds: float | None = None
    worker: str | None = None
    error: str | None = None

    def row(self) -> dict[str, Any]:
        p = self.point
        return {"alpha": p.alpha, "beta": p.beta, "gamma": p.gamma, "product": p.product,
                "flops_ratio": round(p.flops_ratio, 6), "flops": p.flops, "params": p.params,
                "proxy_resolution": self.proxy_resolution, "score": self.score, "state": self.state,
                "trial": self.trial, "seconds": self.seconds, "worker": self.worker, "error": self.error}


def grid_results(study: optuna.Study, config: GridConfig, points: list[GridPoint]) -> list[PointResult]:
    """One result per grid point, from its evaluated trial if any."""
    by_point: dict[tuple, list[FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        by_point.setdefault(trial_point(trial), []).append(trial)
    results = []
    for point in points:
        trials = by_point.get(point.key, [])
        done = next((t for t in trials if is_evaluated(t)), None)
        if done is None:
            running = any(t.state == TrialState.RUNNING for t in trials)
            results.append(PointResult(point, "running" if running else "pending",
                                       proxy_resolution=config.proxy_resolution_for(point.gamma)))
            continue
        attrs = done.user_attrs
        complete = done.state == TrialState.COMPLETE
        results.append(PointResult(point, "complete" if complete else "failed",
                                   score=done.value if complete else None, trial=done.number,
                                   proxy_resolution=attrs.get("proxy_resolution"),
                                   seconds=attrs.get("proxy_seconds"), worker=attrs.get(WORKER_ATTR),
                                   error=attrs.get("error")))
    return results


def ranked(results: list[PointResult]) -> list[PointResult]:
    """Scored points, best first: the highest score; ties go to the cheaper network (lower measured
    FLOPs ratio), then to the product nearer 2."""
    scored = [r for r in results if r.score is not None]
    return sorted(scored, key=lambda r: (-r.score, r.point.flops_ratio, abs(r.point.product - FLOPS_TARGET)))


def coefficients_record(config: GridConfig, results: list[PointResult], base_label: str,
                        provenance: dict[str, Any]) -> dict[str, Any] | None:
    """What coefficients.yaml holds: the best point at the top level (as `export-family --coefficients`
    reads it), then every point's score, product and measured FLOPs ratio."""
    order = ranked(results)
    if not order:
        return None
    best = order[0]
    base_cost = analytic_cost(config.base)
    rest = [r for r in results if r.score is None]
    return {
        **best.point.params_dict(),
        "score": best.score,
        "product": best.point.product,
        "flops_ratio": round(best.point.flops_ratio, 6),
        "selection": "highest proxy score at phi=1 among the kept grid points; ties: lower measured FLOPs ratio",
        "complete": not any(r.state in ("pending", "running") for r in results),
        "points_total": len(results),
        "points_scored": len(order),
        "grid": config.grid.describe(),
        "proxy": config.proxy_settings(),
        "base": {"path": base_label, "name": config.base.name, "resolution": config.base.resolution,
                 "flops": base_cost.flops, "params": base_cost.params},
        "provenance": provenance,
        "points": [_point_entry(r) for r in order + rest],
    }


def _point_entry(result: PointResult) -> dict[str, Any]:
    row = result.row()
    keep = ("alpha", "beta", "gamma", "score", "product", "flops_ratio", "flops", "params", "proxy_resolution",
            "state", "trial")
    entry = {k: row[k] for k in keep}
    if result.error:
        entry["error"] = result.error
    return entry


CSV_COLUMNS = ("alpha", "beta", "gamma", "product", "flops_ratio", "flops", "params", "proxy_resolution", "score",
               "state", "trial", "seconds", "worker", "error")


@dataclass(frozen=True)
class GridResult:
    """What `grid_scale` found and wrote: every point's result (grid order), the best point's
    coefficients (None until a point is scored), whether the grid is complete, and the files."""

    config: GridConfig
    points: list[PointResult]
    coefficients: Coefficients | None
    record: dict[str, Any] | None
    """What coefficients.yaml holds (None until a point is scored)."""
    stop_reason: str
    """done, max-points, timeout, interrupt, or workers ended."""
    signal: int | None
    elapsed_s: float
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """What the user should know about the run (`StudyRun.notes`): a repaired journal, a failed worker."""

    @property
    def ranked(self) -> list[PointResult]:
        return ranked(self.points)

    @property
    def complete(self) -> bool:
        return not any(r.state in ("pending", "running") for r in self.points)

    def as_dict(self) -> dict[str, Any]:
        c = self.config
        counts = {state: sum(r.state == state for r in self.points)
                  for state in ("complete", "failed", "running", "pending")}
        data: dict[str, Any] = {
            "run_dir": str(c.study.run_dir), "study": c.study.name, "storage": c.study.storage_label,
            "stop_reason": self.stop_reason, "elapsed_s": round(self.elapsed_s, 1),
            "base": {"path": self.record["base"]["path"] if self.record else None, "name": c.base.name},
            "grid": c.grid.describe(), "proxy": c.proxy_settings(),
            "points_total": len(self.points), "points_scored": counts["complete"], "points_failed": counts["failed"],
            "points_left": counts["running"] + counts["pending"], "best": None, "coefficients": None,
            "files": {"grid_csv": str(self.files["grid_csv"]), "plot": str(self.files["plot"]),
                      "run": str(self.files["run_record"])},
            "notes": self.notes,
            "points": [r.row() for r in self.ranked] + [r.row() for r in self.points if r.score is None],
        }
        if self.record is not None:
            data["best"] = {k: self.record[k] for k in ("alpha", "beta", "gamma", "score", "product", "flops_ratio")}
            data["coefficients"] = str(self.files["coefficients"])
        return data


def check_grid(config: GridConfig) -> list[GridPoint]:
    """Everything that can be refused before the study starts: the grid's points, the data, the directory."""
    points = config.grid.points(config.base)
    config.study.worker_device()
    config.study.check_workers()
    from effnet.nas.data.sources import load_data

    load_data(config.proxy.data, config.proxy.resolution, seed=config.study.seed)
    ensure_writable_dir(config.study.run_dir)
    return points


def grid_scale(config: GridConfig, base_label: str = "<spec>",
               on_progress: ProgressCallback | None = None) -> GridResult:
    """Score the grid's points (resuming the study in the run directory) and write grid.csv, grid.png,
    coefficients.yaml (once a point is scored) and run.yaml. `base_label` is how the files name the base
    (its path, say). A stop signal ends the run early with what was scored written."""
    points = tuple(check_grid(config))
    job = GridJob(config, points)
    if config.max_points is not None:
        study, _ = open_study(job, config.study)
        job = dataclasses.replace(job, limit=points_taken(study) + config.max_points)
    run = run_study(job, config.study, on_progress)
    results = grid_results(run.study, config, list(points))
    run_dir = config.study.run_dir
    files = {"grid_csv": write_csv(run_dir / "grid.csv", CSV_COLUMNS, (r.row() for r in results))}
    from effnet.scaling.plots import plot_grid

    files["plot"] = plot_grid(results, config.grid, run_dir / "grid.png",
                              f"{config.base.name}: grid at φ = 1, {config.proxy.name} proxy on {config.proxy.data}",
                              config.score_name)
    provenance = {"command": "effnet grid-scale", "study": config.study.name, "storage": config.study.storage_label,
                  "run_dir": str(run_dir)}
    record = coefficients_record(config, results, base_label, provenance)
    coefficients = None
    if record is not None:
        files["coefficients"] = dump_yaml(record, run_dir / "coefficients.yaml")
        coefficients = Coefficients(record["alpha"], record["beta"], record["gamma"])
    files["run_record"] = run_dir / "run.yaml"
    result = GridResult(config=config, points=results, coefficients=coefficients, record=record,
                        stop_reason=run.stop_reason, signal=run.signal, elapsed_s=run.elapsed_s, files=files,
                        notes=run.notes)
    summary = {k: v for k, v in result.as_dict().items() if k != "points"}
    write_run_record(run_dir, "grid-scale", config.settings(base_label), summary)
    return result
