"""What a search leaves in its run directory: trials.csv, the best spec b0.yaml, plots, run.yaml."""

from __future__ import annotations

import csv
import io
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from effnet.nas.files import atomic_write_text, dump_yaml
from effnet.nas.net.flops import fvcore_count
from effnet.nas.study.objective import mnasnet_reward
from effnet.nas.study.search import SearchConfig, counts_toward_budget, is_in_band
from effnet.nas.study.space import SearchSpace
from effnet.nas.net.spec import NetworkSpec, dump_spec
from effnet.nas.study.storage import STALE_ATTR, WORKER_ATTR, redact_url

CSV_COLUMNS = ("number", "state", "in_band", "flops", "params", "accuracy", "reward", "proxy_seconds",
               "report_seconds", "duration_s", "worker", "error")
"""`proxy_seconds` is the candidate's training alone; `report_seconds` its per-epoch reports and pruning
checks (storage writes); `duration_s` the whole trial, sampling and counting included."""


@dataclass(frozen=True)
class StudySummary:
    trained: int
    completed: int
    pruned: int
    failed: int
    outside_band: int
    running: int


def summarize(study: optuna.Study) -> StudySummary:
    trials = study.get_trials(deepcopy=False)
    in_band = [t for t in trials if is_in_band(t)]
    return StudySummary(
        trained=sum(counts_toward_budget(t) for t in trials),
        completed=sum(t.state == TrialState.COMPLETE for t in in_band),
        pruned=sum(t.state == TrialState.PRUNED for t in in_band),
        failed=sum(t.state == TrialState.FAIL for t in trials),
        outside_band=sum(t.state == TrialState.COMPLETE and not is_in_band(t) for t in trials),
        running=sum(t.state == TrialState.RUNNING for t in trials),
    )


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    duration = trial.duration.total_seconds() if trial.duration else None
    row = {
        "number": trial.number,
        "state": trial.state.name,
        "in_band": trial.user_attrs.get("in_band"),
        "flops": trial.user_attrs.get("flops"),
        "params": trial.user_attrs.get("params"),
        "accuracy": trial.user_attrs.get("accuracy"),
        "reward": trial.user_attrs.get("reward"),
        "proxy_seconds": trial.user_attrs.get("proxy_seconds"),
        "report_seconds": trial.user_attrs.get("report_seconds"),
        "duration_s": round(duration, 3) if duration is not None else None,
        "worker": trial.user_attrs.get(WORKER_ATTR),
        "error": trial.user_attrs.get("error") or trial.user_attrs.get("fail_reason"),
    }
    row.update(sorted(trial.params.items()))
    return row


def write_trials_csv(study: optuna.Study, path: Path) -> Path:
    rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    param_columns = sorted({k for r in rows for k in r} - set(CSV_COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*CSV_COLUMNS, *param_columns], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def best_trial(study: optuna.Study, config: SearchConfig) -> FrozenTrial | None:
    """The best feasible trained trial: the top reward, or for a Pareto search the front member with
    the best soft reward inside the band."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if is_in_band(t) and not t.user_attrs.get(STALE_ATTR)]
    if not trials:
        return None
    if config.multi_objective:
        front = pareto_front(trials)
        return max(front, key=lambda t: mnasnet_reward(t.values[0], t.values[1], config.target_flops))
    return max(trials, key=lambda t: t.value)


def pareto_front(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Trained trials no other trial beats on both accuracy (higher) and FLOPs (lower)."""
    points = [(t.user_attrs.get("accuracy"), t.user_attrs.get("flops"), t) for t in trials
              if t.user_attrs.get("accuracy") is not None]
    return [t for a, f, t in points
            if not any((a2 >= a and f2 <= f) and (a2 > a or f2 < f) for a2, f2, _ in points)]


def write_best_spec(study: optuna.Study, config: SearchConfig, space: SearchSpace, trial: FrozenTrial,
                    path: Path) -> tuple[NetworkSpec, int]:
    """Rebuild the best trial's spec, certify its FLOPs with fvcore, and write it with provenance."""
    spec = space.spec_from_params(trial.params)
    certified = fvcore_count(spec).total
    spec = spec.replace(name="b0", provenance={
        "source": "effnet search",
        "study": config.study_name,
        "trial": trial.number,
        "objective": config.objective,
        "reward": trial.user_attrs.get("reward"),
        "accuracy": trial.user_attrs.get("accuracy"),
        "proxy": config.proxy,
        "data": config.data,
        "target_flops": config.target_flops,
        "flops_tolerance": config.flops_tolerance,
        "flops": trial.user_attrs.get("flops"),
        "fvcore_flops": certified,
        "space": space.name,
    })
    dump_spec(spec, path)
    return spec, certified


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("effnet", "torch", "optuna", "fvcore"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def write_run_record(run_dir: Path, command: str, settings: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    record = {"command": command, "argv": [redact_url(a) for a in sys.argv], "versions": versions(), "settings": settings}
    record.update(extra or {})
    return dump_yaml(record, run_dir / "run.yaml")
