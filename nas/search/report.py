"""A search's report.html: the optimization history, the importances of the space's choices, and accuracy against
the cost the search weighs (FLOPs, or the predicted latency) with the band, the Pareto front and the chosen b0."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from effnet.nas.search.config import CostAxis, SearchConfig
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
from effnet.nas.study.trial_attrs import ACCURACY_ATTR, FLOPS_ATTR, IN_BAND_ATTR, LATENCY_ATTR, REWARD_ATTR

MARKERS = ((TrialState.COMPLETE, "circle", "completed"), (TrialState.PRUNED, "triangle-down", "pruned"))


def accuracy_section(
    trials: list[FrozenTrial],
    axis: CostAxis,
    front: list[FrozenTrial],
    best: FrozenTrial | None,
    chance: ChanceLevel | None = None,
) -> Section:
    import plotly.graph_objects as go

    figure = go.Figure()
    if axis.band is not None:
        low, high, target = axis.band
        figure.add_vrect(
            x0=low, x1=high, fillcolor="green", opacity=0.12, line_width=0, annotation_text=f"{axis.name} band"
        )
        figure.add_vline(x=target, line_dash="dash", line_color="green", annotation_text="target")
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
                x=[axis.of(t) for t in shown],
                y=[t.user_attrs[ACCURACY_ATTR] for t in shown],
                mode="markers",
                name=f"{label} ({len(shown)})",
                marker={"symbol": symbol},
                text=[f"trial {t.number}" for t in shown],
                opacity=0.7,
            )
        )
    outside = [t for t in trials if t.user_attrs.get(IN_BAND_ATTR) is False and axis.of(t)]
    if outside:  # never trained: ticks along the bottom at their cost
        figure.add_trace(
            go.Scatter(
                x=[axis.of(t) for t in outside],
                y=[0.0] * len(outside),
                mode="markers",
                name=f"outside the band, not trained ({len(outside)})",
                marker={"symbol": "line-ns-open", "size": 10, "color": "grey"},
                text=[f"trial {t.number}" for t in outside],
                opacity=0.5,
            )
        )
    if front:
        points = sorted((axis.of(t) or 0.0, t.user_attrs[ACCURACY_ATTR], t.number) for t in front)
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
                x=[axis.of(best)],
                y=[best.user_attrs[ACCURACY_ATTR]],
                mode="markers",
                name="b0",
                marker={"symbol": "star", "size": 16},
                text=[f"trial {best.number}"],
            )
        )
    title = f"Accuracy against {axis.name}"
    figure.update_layout(title=title, xaxis_title=f"{axis.name} ({axis.unit})", yaxis_title="proxy accuracy")
    return Section(
        title,
        f"Every trained candidate's proxy accuracy against its {axis.name} (completed "
        "and pruned apart, candidates outside the band as ticks at 0), the "
        "band, the chance level, the Pareto front of the trained candidates "
        "and the chosen b0.",
        figure,
    )


def band_words(config: SearchConfig) -> str:
    """The search's bands in words: `the band [low, high] FLOPs`, its latency band, or both."""
    parts = []
    if config.band is not None:
        parts.append(f"[{config.band.low:,}, {config.band.high:,}] FLOPs")
    if config.latency_band is not None:
        band = config.latency_band
        parts.append(f"[{1000 * band.low:.2f}, {1000 * band.high:.2f}] ms predicted ({config.latency.runtime})")
    return "the band " + " and ".join(parts)


def latency_line(latency: dict[str, Any]) -> str:
    """b0's latency: the table's prediction and the end-to-end measurement, and how far apart they are."""
    predicted, measured = latency["predicted_s"], latency["measured_s"]
    return (
        f"b0 measured end to end: median {1000 * measured:.2f} ms, p90 {1000 * latency['p90_s']:.2f} ms "
        f"({latency['runtime']}, batch {latency['batch']}, {latency['threads']} thread(s)); predicted "
        f"{1000 * predicted:.2f} ms ({predicted / measured - 1:+.1%})"
    )


def write_search_report(
    trials: list[FrozenTrial],
    config: SearchConfig,
    front: list[FrozenTrial],
    best: FrozenTrial | None,
    path: Path,
    chance: ChanceLevel | None = None,
    fit: DataFit | None = None,
    latency: dict[str, Any] | None = None,
    warnings: Sequence[str] = (),
) -> Path:
    """report.html; `warnings` (`search_warnings`) are shown as the terminal states them."""
    metric = ACCURACY_ATTR if config.multi_objective else REWARD_ATTR
    trained = [t for t in trials if t.state == TrialState.COMPLETE and is_in_band(t)]
    study = scored_study(trained, lambda t: t.user_attrs.get(metric), f"{config.study.name}-report")
    lines = [
        f"study {config.study.name}: {len(trained)} candidates trained in {band_words(config)}, "
        f"{len(trials)} trials in all",
        f"objective {config.objective}, proxy {config.proxy.name} on {config.proxy.data}",
        f"watch a running study live: {dashboard_command(config.study.storage, config.study.run_dir)}",
    ]
    if fit is not None:
        lines.append(f"networks fitted to the data: {fit.describe()}")
    if chance is not None:
        lines.append(chance.line("an accuracy"))
    if best is not None:
        predicted = best.user_attrs.get(LATENCY_ATTR)
        lines.append(
            f"b0: trial {best.number}, {metric} {best.user_attrs.get(metric):.4f}, "
            f"{best.user_attrs.get(FLOPS_ATTR):,} FLOPs"
            + (f", predicted latency {1000 * predicted:.2f} ms" if predicted is not None else "")
        )
        if latency is not None:
            lines.append(latency_line(latency))
    lines.extend(f"warning: {warning}" for warning in warnings)
    sections = [
        history_section(study, metric, "trained candidate"),
        importance_section(study, metric, "trained candidate"),
        accuracy_section(trials, config.cost_axis, front, best, chance),
    ]
    return write_report(path, f"effnet search: {config.study.name}", lines, sections)
