"""The grid over compound scaling coefficients: fix phi = 1, score alpha, beta, gamma near alpha*beta^2*gamma^2 = 2.

Every grid point lives in an Optuna study as one trial, added once as a WAITING trial with its
parameters. Workers never sample: each pops a WAITING trial, which the storage hands to exactly one
process (the RDB storages lock the row, the journal storage's replay accepts only the first RUNNING
transition), scores it, and stops when none is left. Optuna's `GridSampler` is not used: with
several workers it evaluates points twice and raises after the last point under ask/tell.

Points enter the queue in two places, both idempotent and safe to race: the run that finds a point
without a live or finished trial queues it (`queue_missing_points`), and the recovery of a dead
worker re-queues its point (`recover_stale_trials`). Should two runs queue the same point at once,
the claim rule `earlier_twin` still lets only one trial evaluate it: a claimed trial stands down
when its point already has an evaluated trial, or a waiting or running one with a lower number.
So the higher of two twins proceeds only once the lower is finished without a score, and finished
states are final: the lower can no longer record one. A trial failed as stale while its worker
lives on (a missed RDB heartbeat) cannot record its score either: Optuna refuses the late `tell`.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.distributions import FloatDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from effnet.nas.errors import InputError
from effnet.nas.net.flops import analytic_cost
from effnet.nas.study.search import worker_threads
from effnet.nas.net.spec import NetworkSpec, spec_to_dict
from effnet.nas.study.storage import STALE_ATTR, WORKER_ATTR, open_storage, recover_stale_trials, worker_identity
from effnet.nas.study.workers import raise_once, spawn_workers, take_gpu
from effnet.scaling.compound import compound_scale, scaled_resolution

FLOPS_TARGET = 2
"""The paper's constraint at phi = 1: alpha * beta^2 * gamma^2 ~ 2 (each unit of phi doubles the FLOPs)."""
MAX_AXIS_VALUES = 1000
MAX_GRID_SIZE = 1_000_000
_DIGITS = Decimal("1e-9")
UNNAMED_GRACE_S = 60.0
"""A worker names itself on a trial (host:pid) right after claiming it; a RUNNING trial still unnamed
after this long lost its worker in between."""
COEFFICIENTS = ("alpha", "beta", "gamma")


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


def parse_range(text: str, flag: str) -> AxisRange:
    """`1.0:1.4` (a closed range) or `1.2` (one value); both ends at least 1."""
    parts = str(text).split(":")
    if len(parts) > 2:
        raise InputError(f"{flag} {text!r} is not a range; write LOW:HIGH like 1.0:1.4, or one value like 1.2")
    try:
        ends = [Decimal(p.strip()) for p in parts]
    except InvalidOperation:
        raise InputError(f"{flag} {text!r} is not a range; write LOW:HIGH like 1.0:1.4, "
                         f"or one value like 1.2") from None
    if not all(e.is_finite() for e in ends):
        raise InputError(f"{flag} {text!r}: both ends must be finite numbers, like 1.0:1.4")
    low, high = ends[0], ends[-1]
    if low < 1:
        raise InputError(f"{flag} {text!r}: coefficients must be at least 1 (compound scaling only grows "
                         f"the network); start the range at 1.0 or above")
    if low > high:
        raise InputError(f"{flag} {text!r}: the low end is above the high end; write it as "
                         f"{_plain(high)}:{_plain(low)}")
    return AxisRange(low, high)


def parse_step(step: float | str) -> Decimal:
    try:
        value = Decimal(str(step))
    except InvalidOperation:
        raise InputError(f"--step {step!r} is not a number; use e.g. 0.05") from None
    if not value.is_finite() or value <= 0:
        raise InputError(f"--step must be a positive number like 0.05, got {step}")
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
        if not self.tolerance >= 0:
            raise InputError(f"--tolerance must be a number >= 0, got {self.tolerance}")
        counts = [int((r.high - r.low) / self.step) + 1 for r in (self.alpha, self.beta, self.gamma)]
        if max(counts) > MAX_AXIS_VALUES or counts[0] * counts[1] * counts[2] > MAX_GRID_SIZE:
            raise InputError(f"--step {_plain(self.step)} makes a grid of {counts[0]}x{counts[1]}x{counts[2]} "
                             f"points; use a larger step or narrower ranges")

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
    base: NetworkSpec
    grid: GridDefinition
    run_dir: Path
    proxy: str = "train"
    data: str = "digits"
    proxy_epochs: int = 3
    proxy_resolution: int = 32
    batch_size: int = 64
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    workers: int = 1
    storage: str | None = None
    study_name: str = "grid"

    def __post_init__(self) -> None:
        flags = {"workers": "--workers", "proxy_epochs": "--epochs", "proxy_resolution": "--proxy-resolution",
                 "batch_size": "--batch-size"}
        for name, flag in flags.items():
            if getattr(self, name) < 1:
                raise InputError(f"{flag} must be at least 1, got {getattr(self, name)}")

    def proxy_resolution_for(self, gamma: float) -> int:
        """The proxy scales resolution like the model does: `scaled_resolution(proxy_resolution, gamma)`."""
        return scaled_resolution(self.proxy_resolution, gamma)

    def proxy_settings(self) -> dict[str, Any]:
        return {"name": self.proxy, "data": self.data, "epochs": self.proxy_epochs,
                "resolution": self.proxy_resolution,
                "resolution_rule": "round(resolution * gamma), halves up (the model's own rule)",
                "batch_size": self.batch_size, "seed": self.seed, "score": self.score_name}

    @property
    def score_name(self) -> str:
        return "validation top-1 accuracy" if self.proxy == "train" else f"{self.proxy} score (higher is better)"

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed grid must agree on: otherwise its scores are not comparable."""
        spec_text = json.dumps(spec_to_dict(self.base.replace(provenance={})), sort_keys=True)
        return {"base": hashlib.sha256(spec_text.encode()).hexdigest()[:16], **self.grid.describe(),
                "proxy": self.proxy, "data": self.data, "epochs": self.proxy_epochs,
                "proxy_resolution": self.proxy_resolution, "batch_size": self.batch_size, "seed": self.seed}

    def distributions(self) -> dict[str, FloatDistribution]:
        return {"alpha": self.grid.alpha.distribution(), "beta": self.grid.beta.distribution(),
                "gamma": self.grid.gamma.distribution()}


# -- the study --------------------------------------------------------------------------------------

def open_grid_study(config: GridConfig) -> optuna.Study:
    """Create or load the grid's study; a resumed study must have been created with the same settings."""
    storage = open_storage(config.storage, config.run_dir)
    study = optuna.create_study(storage=storage, study_name=config.study_name, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=config.seed), load_if_exists=True)
    fingerprint = config.fingerprint()
    stored = study.user_attrs.get("grid")
    if stored is None:
        study.set_user_attr("grid", fingerprint)
    elif stored != fingerprint:
        changed = sorted(k for k in fingerprint if stored.get(k) != fingerprint[k])
        raise InputError(f"study {config.study_name!r} in this storage holds a grid with different settings "
                         f"({', '.join(f'{k}={stored.get(k)}' for k in changed)}); rerun with those, or use "
                         f"a new --study or --run-dir")
    return study


def trial_point(trial: FrozenTrial) -> tuple[float, float, float] | None:
    """The point a trial stands for: its parameters, or the fixed ones of a re-queued trial."""
    return point_key(trial.params) or point_key(trial.system_attrs.get("fixed_params", {}))


def is_evaluated(trial: FrozenTrial) -> bool:
    """Scored, or failed by the proxy's own error (which a retry would repeat); not a dead worker's."""
    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.FAIL and "error" in trial.user_attrs)


def is_live(trial: FrozenTrial) -> bool:
    return trial.state in (TrialState.WAITING, TrialState.RUNNING)


def queue_missing_points(study: optuna.Study, config: GridConfig, points: list[GridPoint]) -> int:
    """Add a WAITING trial for every point without a waiting, running or evaluated trial; returns how many."""
    covered = {trial_point(t) for t in study.get_trials(deepcopy=False) if is_live(t) or is_evaluated(t)}
    distributions = config.distributions()
    added = 0
    for point in points:
        if point.key in covered:
            continue
        study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, params=point.params_dict(),
                                                  distributions=distributions))
        added += 1
    return added


def claim_point(study: optuna.Study) -> tuple[optuna.Trial, tuple[float, float, float] | None] | None:
    """Pop one WAITING trial for this process (the storage gives each to one claimant) and its point, or None."""
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING):
                return optuna.Trial(study, trial._trial_id), trial_point(trial)
        except UpdateFinishedTrialError:
            continue
    return None


def earlier_twin(study: optuna.Study, number: int, key: tuple[float, float, float]) -> int | None:
    """Another trial of the same point that takes precedence over trial `number` (see the module notes)."""
    for other in study.get_trials(deepcopy=False):
        if other.number == number or trial_point(other) != key:
            continue
        if is_evaluated(other) or (is_live(other) and other.number < number):
            return other.number
    return None


def points_taken(study: optuna.Study) -> int:
    """Points evaluated or being evaluated: what `--max-points` counts."""
    return len({trial_point(t) for t in study.get_trials(deepcopy=False)
                if is_evaluated(t) or t.state == TrialState.RUNNING})


@contextmanager
def heartbeat(study: optuna.Study, trial_id: int) -> Iterator[None]:
    """Record heartbeats while a point is scored, on the storages that fail stale trials by them."""
    storage = study._storage  # the RDB storages, behind Optuna's cache wrapper; the journal has no heartbeats
    interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
    if interval is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class PointScorer:
    """Scores phi = 1 networks with the chosen proxy; data and proxy built once per proxy resolution."""

    def __init__(self, config: GridConfig, threads: int | None):
        self.config = config
        self.threads = threads
        self._proxies: dict[int, Any] = {}

    def proxy(self, resolution: int) -> Any:
        if resolution not in self._proxies:
            from effnet.nas.data.sources import load_data
            from effnet.nas.proxies import ProxySettings, make_proxy

            c = self.config
            data = load_data(c.data, resolution, seed=c.seed)
            settings = ProxySettings(epochs=c.proxy_epochs, resolution=resolution, batch_size=c.batch_size,
                                     device=c.device, seed=c.seed, threads=self.threads)
            self._proxies[resolution] = make_proxy(c.proxy, data, settings)
        return self._proxies[resolution]

    def __call__(self, spec: NetworkSpec, resolution: int) -> float:
        return float(self.proxy(resolution).score(spec))


def _requeue(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Fail a trial cut short (not evaluated) and queue its point again."""
    trial.set_user_attr("fail_reason", reason)
    trial.set_user_attr(STALE_ATTR, True)
    study.tell(trial, state=TrialState.FAIL)
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, params=trial.params,
                                              distributions=trial.distributions,
                                              user_attrs={"retry_of": trial.number}))


def evaluate_point(study: optuna.Study, trial: optuna.Trial, key: tuple[float, float, float] | None,
                   config: GridConfig, scorer: Callable) -> None:
    """Score the point of a claimed trial, unless a twin of it takes precedence."""
    trial.set_user_attr(WORKER_ATTR, worker_identity())
    if key is None:
        trial.set_user_attr("fail_reason", "not a grid point: the trial has no alpha, beta and gamma")
        study.tell(trial, state=TrialState.FAIL)
        return
    distributions = config.distributions()
    for name in COEFFICIENTS:  # materialises the point of a re-queued trial (held as fixed parameters)
        trial.suggest_float(name, distributions[name].low, distributions[name].high)
    alpha, beta, gamma = key
    twin = earlier_twin(study, trial.number, key)
    if twin is not None:
        trial.set_user_attr("duplicate_of", twin)
        study.tell(trial, state=TrialState.FAIL)
        return
    spec = phi1_spec(config.base, alpha, beta, gamma)
    cost, base_flops = analytic_cost(spec), analytic_cost(config.base).flops
    resolution = config.proxy_resolution_for(gamma)
    trial.set_user_attr("product", float(Decimal(str(alpha)) * Decimal(str(beta)) ** 2 * Decimal(str(gamma)) ** 2))
    trial.set_user_attr("flops", cost.flops)
    trial.set_user_attr("params", cost.params)
    trial.set_user_attr("flops_ratio", cost.flops / base_flops)
    trial.set_user_attr("proxy_resolution", resolution)
    started = time.perf_counter()
    try:
        with heartbeat(study, trial._trial_id):
            score = scorer(spec, resolution)
    except KeyboardInterrupt:
        _requeue(study, trial, "interrupted")
        raise
    except Exception as err:
        trial.set_user_attr("error", f"{type(err).__name__}: {' '.join(str(err).split())}"[:500])
        trial.set_user_attr("proxy_seconds", round(time.perf_counter() - started, 3))
        _tell(study, trial, state=TrialState.FAIL)
        return
    trial.set_user_attr("proxy_seconds", round(time.perf_counter() - started, 3))
    _tell(study, trial, value=score)


def _tell(study: optuna.Study, trial: optuna.Trial, value: float | None = None,
          state: TrialState | None = None) -> None:
    try:
        study.tell(trial, value, state=state)
    except UpdateFinishedTrialError:
        pass  # failed as stale meanwhile (a missed heartbeat) and already re-queued: that copy counts


# -- workers ----------------------------------------------------------------------------------------

def run_grid_worker(config: GridConfig, deadline: float | None = None, limit: int | None = None,
                    on_point: Callable[[optuna.Study], None] | None = None, threads: int | None = None,
                    scorer: Callable | None = None) -> str:
    """Claim and score points until none waits ("done"), `limit` points are taken ("max-points") or the
    deadline passes ("timeout"); a point in progress is finished first."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if threads:
        import torch

        torch.set_num_threads(threads)
    study = open_grid_study(config)
    scorer = scorer or PointScorer(config, threads)
    while True:
        if deadline is not None and time.time() >= deadline:
            return "timeout"
        if limit is not None and points_taken(study) >= limit:
            return "max-points"
        claimed = claim_point(study)
        if claimed is None:
            return "done"
        evaluate_point(study, *claimed, config, scorer)
        if on_point is not None:
            on_point(study)


def recover_unnamed_trials(study: optuna.Study, grace_s: float = UNNAMED_GRACE_S) -> list[int]:
    """Fail the RUNNING trials that no worker named `grace_s` after their claim: the claimant died
    between claiming and naming itself, so neither the host:pid check nor a heartbeat can find it.
    Their points are queued again by `queue_missing_points`."""
    storage = study._storage
    now = datetime.now()  # trial start times are naive local times, in both storages
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if WORKER_ATTR in trial.user_attrs or trial.datetime_start is None:
            continue
        if (now - trial.datetime_start).total_seconds() < grace_s:
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, "fail_reason", "its worker died right after claiming it")
            storage.set_trial_user_attr(trial._trial_id, STALE_ATTR, True)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue
        failed.append(trial.number)
    return failed


def prepare_grid(config: GridConfig, points: list[GridPoint]) -> tuple[optuna.Study, list[int], int]:
    """Open the study, recover points of dead workers and queue missing ones; before any worker starts."""
    study = open_grid_study(config)
    recovered = recover_stale_trials(study) + recover_unnamed_trials(study)
    queued = queue_missing_points(study, config, points)
    return study, recovered, queued


def _worker_process(config: GridConfig, deadline: float | None, limit: int | None, threads: int | None,
                    worker_index: int, gpu: str | None) -> None:
    signal.signal(signal.SIGINT, raise_once)
    take_gpu(gpu)
    try:
        run_grid_worker(config, deadline, limit, threads=threads)
    except KeyboardInterrupt:
        pass


def start_grid_workers(config: GridConfig, deadline: float | None, limit: int | None) -> list[multiprocessing.Process]:
    """`config.workers` processes on the shared study."""
    return spawn_workers(_worker_process, (config, deadline, limit, worker_threads(config)), config.workers,
                         config.device, "effnet-grid-worker")


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
