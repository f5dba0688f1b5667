"""What a search leaves in its run directory: trials.csv, the best spec b0.yaml, plots, report.html."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from effnet.nas.files import write_csv
from effnet.nas.latency.measure import measure_latency
from effnet.nas.net.counting import fvcore_count
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.net.spec_file import dump_spec
from effnet.nas.search.config import SearchConfig
from effnet.nas.search.plots import plot_accuracy_vs_cost, plot_history
from effnet.nas.search.report import write_search_report
from effnet.nas.search.rescore import SCREENED_ACCURACY_ATTR, SCREENED_TRIAL_ATTR, Rescoring
from effnet.nas.search.result import Candidate, SearchResult, search_warnings
from effnet.nas.search.trials import best_trial, is_in_band, pareto_front, summarize
from effnet.nas.space.choices import SearchSpace
from effnet.nas.space.fit import DataFit
from effnet.nas.study.chance import ChanceLevel
from effnet.nas.study.html_report import REPORT_NAME
from effnet.nas.study.runner import StudyRun
from effnet.nas.study.trial_attrs import (
    ACCURACY_ATTR,
    EPOCHS_TRAINED_ATTR,
    ERROR_ATTR,
    FAIL_REASON_ATTR,
    FLOPS_ATTR,
    IN_BAND_ATTR,
    LATENCY_ATTR,
    PARAMS_ATTR,
    REPORT_SECONDS_ATTR,
    REWARD_ATTR,
    WORK_SECONDS_ATTR,
    WORKER_ATTR,
)

CSV_COLUMNS = (
    "number",
    "state",
    "in_band",
    "flops",
    "params",
    "accuracy",
    "reward",
    "proxy_seconds",
    "report_seconds",
    "duration_s",
    "epochs_trained",
    "slow",
    "worker",
    "error",
)
"""`proxy_seconds` is the candidate's training alone; `report_seconds` its per-epoch reports and pruning
checks (storage writes); `duration_s` the whole trial, sampling and counting included; `slow` marks a
training slower than its size explains (`slow_trials`)."""
LATENCY_COLUMN = "predicted_latency_s"
"""In a search with a latency target, after `reward`: the candidate's latency as the latency table predicts it."""
SLOW_FACTOR = 3.0
"""A candidate is slow when its seconds per FLOP and epoch exceed this many times the study's median."""
SLOW_MIN_TRIALS = 3
TOP = 5


SEARCH_FILES = ("b0.yaml", "trials.csv", "rescored.csv", "history.png", "accuracy_vs_*.png")
"""The files `write_search_files` writes in the run directory besides a study's own (`STUDY_FILES`)."""


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    duration = trial.duration.total_seconds() if trial.duration else None
    row = {
        "number": trial.number,
        "state": trial.state.name,
        "in_band": trial.user_attrs.get(IN_BAND_ATTR),
        "flops": trial.user_attrs.get(FLOPS_ATTR),
        "params": trial.user_attrs.get(PARAMS_ATTR),
        "accuracy": trial.user_attrs.get(ACCURACY_ATTR),
        "reward": trial.user_attrs.get(REWARD_ATTR),
        **({LATENCY_COLUMN: trial.user_attrs[LATENCY_ATTR]} if LATENCY_ATTR in trial.user_attrs else {}),
        "proxy_seconds": trial.user_attrs.get(WORK_SECONDS_ATTR),
        "report_seconds": trial.user_attrs.get(REPORT_SECONDS_ATTR),
        "duration_s": round(duration, 3) if duration is not None else None,
        "epochs_trained": trial.user_attrs.get(EPOCHS_TRAINED_ATTR),
        "worker": trial.user_attrs.get(WORKER_ATTR),
        "error": trial.user_attrs.get(ERROR_ATTR) or trial.user_attrs.get(FAIL_REASON_ATTR),
    }
    if SCREENED_TRIAL_ATTR in trial.user_attrs:
        row[SCREENED_TRIAL_ATTR] = trial.user_attrs[SCREENED_TRIAL_ATTR]
        row[SCREENED_ACCURACY_ATTR] = trial.user_attrs.get(SCREENED_ACCURACY_ATTR)
    row.update(sorted(trial.params.items()))
    return row


def slow_trials(timings: dict[int, tuple[float, int, int]]) -> set[int]:
    """The trials whose training took over `SLOW_FACTOR` times the median seconds per FLOP and epoch (the
    images per epoch are the study's, so this is per FLOP per image): for a reason not their size, such as
    other work on the cores. `timings` maps a trial number to (training seconds, FLOPs, epochs trained); those
    with no epoch trained are not judged, nor any study with fewer than `SLOW_MIN_TRIALS` judged."""
    rates = {n: s / (f * e) for n, (s, f, e) in timings.items() if e > 0 and f > 0 and s >= 0}
    if len(rates) < SLOW_MIN_TRIALS:
        return set()
    median = statistics.median(rates.values())
    return {n for n, rate in rates.items() if rate > SLOW_FACTOR * median}


def write_trials_csv(study: optuna.Study, path: Path, by_latency: bool = False) -> Path:
    rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    slow = slow_trials(
        {
            r["number"]: (r["proxy_seconds"], r["flops"], r["epochs_trained"])
            for r in rows
            if None not in (r["proxy_seconds"], r["flops"], r["epochs_trained"])
        }
    )
    for row in rows:
        row["slow"] = row["number"] in slow if row["epochs_trained"] else None
    columns = list(CSV_COLUMNS)
    if any(SCREENED_TRIAL_ATTR in r for r in rows):
        columns[1:1] = [SCREENED_TRIAL_ATTR, SCREENED_ACCURACY_ATTR]
    if by_latency:
        columns.insert(columns.index("reward") + 1, LATENCY_COLUMN)
    param_columns = sorted({k for r in rows for k in r} - set(columns))
    return write_csv(path, [*columns, *param_columns], rows)


def certified_spec(
    config: SearchConfig,
    space: SearchSpace,
    trial: FrozenTrial,
    fit: DataFit | None = None,
    chance: ChanceLevel | None = None,
    latency: dict[str, Any] | None = None,
) -> tuple[NetworkSpec, int]:
    """The best trial's spec with its provenance (the data it was fitted to among it: export-family reads the
    median image size there; with a latency target, its predicted and measured latency), and its FLOPs by
    fvcore, which must lie in the band."""
    spec = space.spec_from_params(trial.params)
    certified = fvcore_count(spec).total
    band = config.band
    if band is not None and not band.contains(certified):
        raise RuntimeError(
            f"fvcore counts {certified} FLOPs for trial {trial.number}, outside the band "
            f"[{band.low}, {band.high}]: the analytic counter disagrees"
        )
    return spec.replace(
        name="b0",
        provenance={
            "source": "effnet search",
            "study": config.study.name,
            "trial": trial.number,
            "objective": config.objective,
            "reward": trial.user_attrs.get(REWARD_ATTR),
            "accuracy": trial.user_attrs.get(ACCURACY_ATTR),
            "proxy": config.proxy.name,
            "data": config.proxy.data,
            "target_flops": config.target_flops,
            "flops_tolerance": config.flops_tolerance,
            "flops": trial.user_attrs.get(FLOPS_ATTR),
            "fvcore_flops": certified,
            "space": space.name,
            "classes": spec.num_classes,
            "resolution": spec.resolution,
            **({"fit": fit.record()} if fit is not None else {}),
            **({"chance": chance.record()} if chance is not None else {}),
            **({"latency": latency} if latency is not None else {}),
            **(
                {
                    "screened_trial": trial.user_attrs[SCREENED_TRIAL_ATTR],
                    "screened_accuracy": trial.user_attrs.get(SCREENED_ACCURACY_ATTR),
                }
                if SCREENED_TRIAL_ATTR in trial.user_attrs
                else {}
            ),
        },
    ), certified


def best_latency(config: SearchConfig, spec: NetworkSpec, trial: FrozenTrial) -> dict[str, Any] | None:
    """With a latency target, the best candidate measured end to end where the table was measured, beside the
    table's prediction; None without one."""
    if config.latency_band is None:
        return None
    settings = config.latency
    measured = measure_latency(
        spec, runtime=settings.runtime, device=settings.device, batch=settings.batch, threads=settings.threads
    )
    return {
        "target_s": config.target_latency_s,
        "tolerance": config.latency_tolerance,
        "predicted_s": trial.user_attrs[LATENCY_ATTR],
        "measured_s": measured.median_s,
        "p90_s": measured.p90_s,
        "cv": measured.cv,
        "runtime": measured.runtime,
        "device": measured.device,
        "batch": measured.batch,
        "threads": measured.threads,
        "repeats": measured.repeats,
    }


def _candidate(trial: FrozenTrial, space: SearchSpace, front: set[int]) -> Candidate:
    a = trial.user_attrs
    return Candidate(
        trial=a.get(SCREENED_TRIAL_ATTR, trial.number),  # a re-scored candidate by its number in trials.csv
        reward=a.get(REWARD_ATTR),
        accuracy=a.get(ACCURACY_ATTR),
        flops=a[FLOPS_ATTR],
        params=a[PARAMS_ATTR],
        latency_s=a.get(LATENCY_ATTR),
        architecture=space.spec_from_params(trial.params).summary,
        on_front=trial.number in front,
    )


def write_search_files(
    run: StudyRun,
    config: SearchConfig,
    space: SearchSpace,
    fit: DataFit | None = None,
    chance: ChanceLevel | None = None,
    rescoring: Rescoring | None = None,
) -> SearchResult:
    """trials.csv, plots and (once a candidate in the band finished) b0.yaml, for what the study holds; with a
    rescoring, its trials in rescored.csv and b0 the best of them (the screening's best if none finished)."""
    study, run_dir = run.study, config.study.run_dir
    trials = study.get_trials(deepcopy=False)
    files = {"trials_csv": write_trials_csv(study, run_dir / "trials.csv", config.by_latency)}
    best = best_trial(study, config)
    chosen_by = config
    if rescoring is not None:
        files["rescored_csv"] = write_trials_csv(rescoring.study, run_dir / "rescored.csv", config.by_latency)
        if rescoring.best is not None:
            best, chosen_by = rescoring.best, rescoring.config
        elif best is not None:
            run.notes.append("no re-scored candidate finished in the time left: b0 is the supernet's pick")
    latency = best_latency(config, space.spec_from_params(best.params), best) if best is not None else None
    scored = [t for t in trials if is_in_band(t) and t.state == TrialState.COMPLETE]
    front = pareto_front(scored, config.cost_attr)
    if rescoring is not None and chosen_by is rescoring.config:
        scored = [t for t in rescoring.study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    metric = ACCURACY_ATTR if config.multi_objective else REWARD_ATTR
    files["history_plot"] = plot_history(trials, metric, run_dir / "history.png", chance)
    plot_name = "accuracy_vs_latency.png" if config.by_latency else "accuracy_vs_flops.png"
    shown = best  # the report and plots show the screening's trials: a re-scored best as the one it was there
    if best is not None and chosen_by is not config:
        shown = next((t for t in trials if t.number == best.user_attrs[SCREENED_TRIAL_ATTR]), None)
    files["accuracy_plot"] = plot_accuracy_vs_cost(trials, config.cost_axis, front, shown, run_dir / plot_name, chance)
    ranked = sorted(scored, key=lambda t: t.user_attrs.get(metric) or 0.0, reverse=True)
    if best is not None:
        ranked = [best] + [t for t in ranked if t.number != best.number]
    on_front = {t.number for t in front} if chosen_by is config else set()  # the front is the screening's
    warnings = search_warnings(config.proxy.name, ranked[0].user_attrs.get(ACCURACY_ATTR) if ranked else None, chance)
    files["report"] = write_search_report(
        trials, config, front, shown, run_dir / REPORT_NAME, chance, fit, latency, warnings
    )
    spec, certified = None, None
    if best is not None:
        spec, certified = certified_spec(chosen_by, space, best, fit, chance, latency)
        files["best_spec"] = dump_spec(spec, run_dir / "b0.yaml", replace=True)
    return SearchResult(
        config=config,
        best_spec=spec,
        best_flops=certified,
        top=[_candidate(t, space, on_front) for t in ranked[:TOP]],
        summary=summarize(study),
        stop_reason=run.stop_reason,
        signal=run.signal,
        elapsed_s=run.elapsed_s,
        files={**files, "run_record": run_dir / "run.yaml"},
        notes=run.notes,
        fit=fit,
        chance=chance,
        threads=run.threads.record() if run.threads is not None else None,
        latency=latency,
        rescored=rescoring.record() if rescoring is not None else None,
    )
