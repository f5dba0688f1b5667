"""A search's report.html: the optimization history, the importances of the space's choices, and accuracy against
FLOPs with the band, the Pareto front and the chosen b0."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

from effnet.nas.search.config import SearchConfig
from effnet.nas.search.reward import FlopsBand
from effnet.nas.search.trials import is_in_band
from effnet.nas.space.fit import DataFit
from effnet.nas.study.chance import ChanceLevel
from effnet.nas.study.html_report import (
    Section,
    dashboard_command,
    history_section,
    importance_section,
    scored_study,
    write_report,
)
from effnet.nas.study.trial_attrs import ACCURACY_ATTR, FLOPS_ATTR, IN_BAND_ATTR, REWARD_ATTR

MARKERS = ((TrialState.COMPLETE, "circle", "completed"), (TrialState.PRUNED, "triangle-down", "pruned"))


def accuracy_section(
    trials: list[FrozenTrial],
    band: FlopsBand,
    front: list[FrozenTrial],
    best: FrozenTrial | None,
    chance: ChanceLevel | None = None,
) -> Section:
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.add_vrect(
        x0=band.low / 1e6,
        x1=band.high / 1e6,
        fillcolor="green",
        opacity=0.12,
        line_width=0,
        annotation_text="FLOPs band",
    )
    figure.add_vline(x=band.target / 1e6, line_dash="dash", line_color="green", annotation_text="target")
    if chance is not None:
        figure.add_hrect(y0=chance.chance, y1=chance.threshold, fillcolor="grey", opacity=0.15, line_width=0)
        figure.add_hline(
            y=chance.chance,
            line_dash="dash",
            line_color="grey",
            annotation_text=f"chance {chance.chance:.3f} (shaded: within {chance.margin:.3f} of it)",
        )
    for state, symbol, label in MARKERS:
        shown = [
            t
            for t in trials
            if t.state == state and t.user_attrs.get(IN_BAND_ATTR) and t.user_attrs.get(ACCURACY_ATTR) is not None
        ]
        figure.add_trace(
            go.Scatter(
                x=[t.user_attrs[FLOPS_ATTR] / 1e6 for t in shown],
                y=[t.user_attrs[ACCURACY_ATTR] for t in shown],
                mode="markers",
                name=f"{label} ({len(shown)})",
                marker={"symbol": symbol},
                text=[f"trial {t.number}" for t in shown],
                opacity=0.7,
            )
        )
    outside = [t for t in trials if t.user_attrs.get(IN_BAND_ATTR) is False and t.user_attrs.get(FLOPS_ATTR)]
    if outside:  # never trained: ticks along the bottom at their FLOPs
        figure.add_trace(
            go.Scatter(
                x=[t.user_attrs[FLOPS_ATTR] / 1e6 for t in outside],
                y=[0.0] * len(outside),
                mode="markers",
                name=f"outside the band, not trained ({len(outside)})",
                marker={"symbol": "line-ns-open", "size": 10, "color": "grey"},
                text=[f"trial {t.number}" for t in outside],
                opacity=0.5,
            )
        )
    if front:
        points = sorted((t.user_attrs[FLOPS_ATTR] / 1e6, t.user_attrs[ACCURACY_ATTR], t.number) for t in front)
        figure.add_trace(
            go.Scatter(
                x=[p[0] for p in points],
                y=[p[1] for p in points],
                mode="lines+markers",
                name="Pareto front",
                text=[f"trial {p[2]}" for p in points],
            )
        )
    if best is not None and best.user_attrs.get(ACCURACY_ATTR) is not None:
        figure.add_trace(
            go.Scatter(
                x=[best.user_attrs[FLOPS_ATTR] / 1e6],
                y=[best.user_attrs[ACCURACY_ATTR]],
                mode="markers",
                name="b0",
                marker={"symbol": "star", "size": 16},
                text=[f"trial {best.number}"],
            )
        )
    figure.update_layout(
        title="Accuracy against FLOPs", xaxis_title="FLOPs (M, 1 multiply-add = 1 FLOP)", yaxis_title="proxy accuracy"
    )
    return Section(
        "Accuracy against FLOPs",
        "Every trained candidate's proxy accuracy against its FLOPs (completed "
        "and pruned apart, candidates outside the band as ticks at 0), the "
        "band, the chance level, the Pareto front of the trained candidates "
        "and the chosen b0.",
        figure,
    )


def write_search_report(
    trials: list[FrozenTrial],
    config: SearchConfig,
    front: list[FrozenTrial],
    best: FrozenTrial | None,
    path: Path,
    chance: ChanceLevel | None = None,
    fit: DataFit | None = None,
) -> Path:
    metric = ACCURACY_ATTR if config.multi_objective else REWARD_ATTR
    trained = [t for t in trials if t.state == TrialState.COMPLETE and is_in_band(t)]
    study = scored_study(trained, lambda t: t.user_attrs.get(metric), f"{config.study.name}-report")
    lines = [
        f"study {config.study.name}: {len(trained)} candidates trained in the band "
        f"[{config.band.low:,}, {config.band.high:,}] FLOPs, {len(trials)} trials in all",
        f"objective {config.objective}, proxy {config.proxy.name} on {config.proxy.data}",
        f"watch a running study live: {dashboard_command(config.study.storage, config.study.run_dir)}",
    ]
    if fit is not None:
        lines.append(f"networks fitted to the data: {fit.describe()}")
    if chance is not None:
        lines.append(chance.line("an accuracy"))
    if best is not None:
        lines.append(
            f"b0: trial {best.number}, {metric} {best.user_attrs.get(metric):.4f}, "
            f"{best.user_attrs.get(FLOPS_ATTR):,} FLOPs"
        )
        accuracy = best.user_attrs.get(ACCURACY_ATTR)
        if chance is not None and accuracy is not None and chance.near(accuracy):
            lines.append("warning: " + chance.warning(accuracy, "b0's proxy accuracy"))
    sections = [
        history_section(study, metric, "trained candidate"),
        importance_section(study, metric, "trained candidate"),
        accuracy_section(trials, config.band, front, best, chance),
    ]
    return write_report(path, f"effnet search: {config.study.name}", lines, sections)
