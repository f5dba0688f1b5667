"""A grid study read back: one result per distinct network (its repeats' scores, mean and standard deviation),
one row per point (sharing its network's result, `twin_of` naming the point that was evaluated), the ranking,
how far the winner is ahead against the proxy's noise, and what coefficients.yaml holds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import optuna
from optuna.trial import FrozenTrial, TrialState

from effnet.nas.latency.measure import Latency
from effnet.nas.net.flops import analytic_cost
from effnet.nas.study.chance import ChanceLevel
from effnet.nas.study.trial_attrs import (
    ERROR_ATTR,
    FIXED_PARAMS_SYSTEM_ATTR,
    REPEAT_ATTR,
    WORK_SECONDS_ATTR,
    WORKER_ATTR,
)
from effnet.scaling.grid_space import FLOPS_TARGET, GridConfig, GridPoint, point_key
from effnet.scaling.latency import latency_row
from effnet.scaling.twins import CHOICE_RULE, TwinGroup, twin_groups

Evaluation = tuple[str, int]
"""(network, repeat): what one trial scores."""
NOISE_RULE = (
    "within noise when the best network's lead is under two standard errors of a difference of two "
    "K-run means: 2 * noise_sd * sqrt(2 / K), noise_sd the proxy's run-to-run standard deviation "
    "pooled over every network scored K >= 2 times"
)
TIE_RULE = (
    "tied when the best network's mean score equals the runner-up's (to 1e-9); the tie goes to the lower "
    "measured FLOPs ratio, then to the product alpha * beta^2 * gamma^2 nearer 2: a rule, not evidence"
)
TIE_TOLERANCE = 1e-9


# -- trials ----------------------------------------------------------------------------------------


def trial_point(trial: FrozenTrial) -> tuple[float, float, float] | None:
    """The point a trial stands for: its parameters, or the fixed ones of a queued trial not yet taken."""
    return point_key(trial.params) or point_key(trial.system_attrs.get(FIXED_PARAMS_SYSTEM_ATTR, {}))


def trial_evaluation(trial: FrozenTrial, network_of: Mapping[tuple, str]) -> Evaluation | None:
    """The (network, repeat) a trial scores, or None for a trial without a grid point."""
    point = trial_point(trial)
    network = network_of.get(point) if point is not None else None
    return None if network is None else (network, int(trial.user_attrs.get(REPEAT_ATTR, 0)))


def is_evaluated(trial: FrozenTrial) -> bool:
    """Scored, or failed by the proxy's own error (which a retry would repeat); not a dead worker's."""
    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.FAIL and ERROR_ATTR in trial.user_attrs)


def is_live(trial: FrozenTrial) -> bool:
    return trial.state in (TrialState.WAITING, TrialState.RUNNING)


# -- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkResult:
    """One distinct network: its twin group, the point its trials ran with, and one score per repeat."""

    group: TwinGroup
    evaluated: GridPoint
    """The point whose trials score the network (the group's first point until one has run)."""
    state: str
    """"complete" (every repeat scored), "failed" (the proxy raised on a repeat), "running", or "pending"."""
    scores: tuple[float, ...] = ()
    trials: tuple[int, ...] = ()
    seconds: float | None = None
    workers: tuple[str, ...] = ()
    error: str | None = None
    latency: Latency | None = None
    """The network's latency on this machine (None: not measured, `GridConfig.latency` unset)."""

    @property
    def network(self) -> str:
        return self.group.network

    @property
    def chosen(self) -> GridPoint:
        return self.group.chosen

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.scores) if self.state == "complete" else None

    @property
    def std(self) -> float | None:
        """The sample standard deviation of the repeats' scores (None below two repeats)."""
        return statistics.stdev(self.scores) if self.state == "complete" and len(self.scores) > 1 else None

    def summary(self) -> dict[str, Any]:
        return {**self.chosen.params_dict(), "network": self.network, "score": self.mean, "score_std": self.std}

    def latency_ms(self) -> float | None:
        return None if self.latency is None else 1000 * self.latency.median_s


@dataclass(frozen=True)
class PointResult:
    """One grid point and the result of its network; `twin_of` is the point whose evaluation it shares
    (None for the evaluated point itself)."""

    point: GridPoint
    network: NetworkResult
    twin_of: GridPoint | None

    def row(self) -> dict[str, Any]:
        p, n = self.point, self.network
        own = self.twin_of is None
        return {
            "alpha": p.alpha,
            "beta": p.beta,
            "gamma": p.gamma,
            "product": p.product,
            "flops_ratio": round(p.flops_ratio, 6),
            "flops": p.flops,
            "params": p.params,
            "proxy_resolution": p.proxy_resolution,
            "network": p.network,
            "twin_of": None if self.twin_of is None else self.twin_of.label,
            "score": n.mean,
            "score_std": n.std,
            "scores": " ".join(f"{s:.6g}" for s in n.scores),
            "state": n.state,
            "trials": " ".join(map(str, n.trials)) if own else None,
            "seconds": n.seconds if own else None,
            "worker": " ".join(n.workers) if own else None,
            "error": n.error,
            **(latency_row(n.latency) if n.latency is not None else {}),
        }

    def record(self) -> dict[str, Any]:
        """The row as plain data (`--json`): lists where grid.csv joins them with spaces."""
        own, n = self.twin_of is None, self.network
        return {
            **self.row(),
            "scores": list(n.scores),
            "trials": list(n.trials) if own else None,
            "worker": list(n.workers) if own else None,
        }


CSV_COLUMNS = (
    "alpha",
    "beta",
    "gamma",
    "product",
    "flops_ratio",
    "flops",
    "params",
    "proxy_resolution",
    "network",
    "twin_of",
    "score",
    "score_std",
    "scores",
    "state",
    "trials",
    "seconds",
    "worker",
    "error",
)


def network_results(study: optuna.Study, config: GridConfig, points: Sequence[GridPoint]) -> list[NetworkResult]:
    """One result per distinct network, in the order of each network's first point; each repeat counts the
    first trial that evaluated it."""
    network_of = {p.key: p.network for p in points}
    by_point = {p.key: p for p in points}
    trials: dict[str, list[FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        evaluation = trial_evaluation(trial, network_of)
        if evaluation is not None:
            trials.setdefault(evaluation[0], []).append(trial)
    results = []
    for group in twin_groups(points):
        mine = trials.get(group.network, [])
        done: dict[int, FrozenTrial] = {}
        for trial in sorted((t for t in mine if is_evaluated(t)), key=lambda t: t.number):
            done.setdefault(int(trial.user_attrs.get(REPEAT_ATTR, 0)), trial)
        ran = sorted((t for t in mine if is_evaluated(t) or t.state == TrialState.RUNNING), key=lambda t: t.number)
        first = trial_point(ran[0]) if ran else None  # a trial of the group has the group's point
        evaluated = by_point[first] if first is not None else group.points[0]
        if not done:
            running = any(t.state == TrialState.RUNNING for t in mine)
            results.append(NetworkResult(group, evaluated, "running" if running else "pending"))
            continue
        finished = [done[r] for r in sorted(done)]
        failed = [t for t in finished if t.state != TrialState.COMPLETE]
        if failed:
            state = "failed"
        elif len(done) == config.repeats:
            state = "complete"
        else:
            state = "running" if any(t.state == TrialState.RUNNING for t in mine) else "pending"
        seconds = [t.user_attrs.get(WORK_SECONDS_ATTR) for t in finished]
        results.append(
            NetworkResult(
                group,
                evaluated,
                state,
                scores=tuple(cast(float, t.value) for t in finished if t.state == TrialState.COMPLETE),
                trials=tuple(t.number for t in finished),
                seconds=round(sum(s for s in seconds if s is not None), 3)
                if all(s is not None for s in seconds)
                else None,
                workers=tuple(
                    dict.fromkeys(str(t.user_attrs[WORKER_ATTR]) for t in finished if WORKER_ATTR in t.user_attrs)
                ),
                error=failed[0].user_attrs.get(ERROR_ATTR) if failed else None,
            )
        )
    return results


def point_results(networks: Sequence[NetworkResult], points: Sequence[GridPoint]) -> list[PointResult]:
    """One row per point, in grid order."""
    of = {p.key: n for n in networks for p in n.group.points}
    return [PointResult(p, of[p.key], None if p == of[p.key].evaluated else of[p.key].evaluated) for p in points]


def ranked(networks: Sequence[NetworkResult]) -> list[NetworkResult]:
    """Networks with every repeat scored, best first: the highest mean score; ties go to the cheaper network
    (the lower measured FLOPs ratio of its chosen point), then to the chosen point's product nearer 2."""
    scored = [n for n in networks if n.mean is not None]
    return sorted(scored, key=lambda n: (-mean_score(n), n.chosen.flops_ratio, abs(n.chosen.product - FLOPS_TARGET)))


def mean_score(network: NetworkResult) -> float:
    """The mean score of a network `ranked` kept: every one has one."""
    assert network.mean is not None, f"network {network.network} has no score yet"
    return network.mean


def evaluations_done(networks: Sequence[NetworkResult]) -> int:
    return sum(len(n.trials) for n in networks)


# -- the winner against the noise --------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The best network against the runner-up and the proxy's noise (`NOISE_RULE`)."""

    best: NetworkResult
    runner_up: NetworkResult | None
    noise_sd: float | None
    """The proxy's run-to-run standard deviation: the root of the mean sample variance over every network
    scored K >= 2 times (None with one repeat)."""
    margin_sd: float | None
    """(best mean - runner-up mean) / noise_sd: by how many standard deviations the best network leads."""
    within_noise: bool | None
    """None where it cannot be told: one repeat (no noise measured), or no runner-up."""

    @property
    def tied(self) -> bool:
        """The runner-up's mean score equals the best's: the tie rule, not the scores, chose (`TIE_RULE`)."""
        return self.runner_up is not None and abs(mean_score(self.best) - mean_score(self.runner_up)) <= TIE_TOLERANCE

    def record(self) -> dict[str, Any]:
        return {
            "runner_up": self.runner_up.summary() if self.runner_up else None,
            "noise_sd": self.noise_sd,
            "margin_sd": self.margin_sd,
            "within_noise": self.within_noise,
            "noise_rule": NOISE_RULE,
            "tied_with_runner_up": self.tied,
            "tie_rule": TIE_RULE,
        }


def verdict(order: Sequence[NetworkResult], repeats: int) -> Verdict | None:
    """How far the best of the ranked networks `order` leads (None until one is scored)."""
    if not order:
        return None
    best, runner_up = order[0], order[1] if len(order) > 1 else None
    variances = [n.std**2 for n in order if n.std is not None]
    noise = math.sqrt(statistics.fmean(variances)) if variances else None
    if runner_up is None or noise is None:
        return Verdict(best, runner_up, noise, None, None)
    lead = mean_score(best) - mean_score(runner_up)
    if noise == 0:
        return Verdict(best, runner_up, noise, None, lead == 0)
    return Verdict(best, runner_up, noise, lead / noise, lead < 2 * noise * math.sqrt(2 / repeats))


# -- coefficients.yaml --------------------------------------------------------------------------------


def coefficients_record(
    config: GridConfig,
    networks: Sequence[NetworkResult],
    points: Sequence[PointResult],
    base_label: str,
    provenance: dict[str, Any],
    chance: ChanceLevel | None = None,
) -> dict[str, Any] | None:
    """What coefficients.yaml holds: the chosen point of the best network at the top level (as
    `export-family --coefficients` reads it), its twin group, the verdict against the noise, the grid's
    completeness, every twin group, and every point's row."""
    order = ranked(networks)
    judged = verdict(order, config.repeats)
    if judged is None:
        return None
    best, chosen = judged.best, judged.best.chosen
    base_cost = analytic_cost(config.base)
    rank = {n.network: i for i, n in enumerate(order)}
    return {
        **chosen.params_dict(),
        "phi": config.grid.phi,
        "score": best.mean,
        "score_std": best.std,
        "scores": list(best.scores),
        "repeats": config.repeats,
        "product": chosen.product,
        "flops_ratio": round(chosen.flops_ratio, 6),
        "network": best.network,
        **({"latency_ms": best.latency_ms()} if best.latency is not None else {}),
        "selection": (
            f"the highest mean proxy score over the distinct phi={config.grid.phi} networks; ties: the "
            f"lower measured FLOPs ratio; then {CHOICE_RULE}"
        ),
        "twins": best.group.record(),
        **judged.record(),
        "chance": chance.record() if chance is not None else None,
        "near_chance": chance.near(mean_score(best)) if chance is not None else None,
        "complete": all(n.state in ("complete", "failed") for n in networks),
        "points_total": len(points),
        "points_scored": sum(r.network.mean is not None for r in points),
        "networks_total": len(networks),
        "networks_scored": len(order),
        "evaluations_total": len(networks) * config.repeats,
        "evaluations_done": evaluations_done(networks),
        "twin_groups": [n.group.record() for n in networks if len(n.group.points) > 1],
        "grid": config.grid.describe(),
        "proxy": config.proxy_settings(),
        "base": {
            "path": base_label,
            "name": config.base.name,
            "resolution": config.base.resolution,
            "num_classes": config.base.num_classes,
            "flops": base_cost.flops,
            "params": base_cost.params,
        },
        "provenance": provenance,
        "points": [_point_entry(r) for r in sorted(points, key=lambda r: rank.get(r.point.network, len(rank)))],
    }


def _point_entry(result: PointResult) -> dict[str, Any]:
    row = result.row()
    keep = (
        "alpha",
        "beta",
        "gamma",
        "score",
        "score_std",
        "product",
        "flops_ratio",
        "flops",
        "params",
        "proxy_resolution",
        "network",
        "twin_of",
        "state",
        "latency_ms",
    )
    entry = {k: row[k] for k in keep if k in row}
    if result.network.error:
        entry["error"] = result.network.error
    return entry
