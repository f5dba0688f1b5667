"""A search's report.html: the optimization history, the importances of the space's choices, and accuracy against
FLOPs with the band, the Pareto front and the chosen b0."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

from effnet.nas.study.html_report import (Section, dashboard_command, history_section, importance_section,
                                           scored_study, write_report)
from effnet.nas.study.objective import FlopsBand
from effnet.nas.study.search import SearchConfig, is_in_band


def accuracy_section(trials: list[FrozenTrial], band: FlopsBand, front: list[FrozenTrial],
                     best: FrozenTrial | None) -> Section:
    import plotly.graph_objects as go

    scored = [t for t in trials if t.user_attrs.get("accuracy") is not None and t.user_attrs.get("flops")]
    figure = go.Figure()
    figure.add_vrect(x0=band.low / 1e6, x1=band.high / 1e6, fillcolor="green", opacity=0.12, line_width=0,
                     annotation_text="FLOPs band")
    figure.add_vline(x=band.target / 1e6, line_dash="dash", line_color="green", annotation_text="target")
    figure.add_trace(go.Scatter(
        x=[t.user_attrs["flops"] / 1e6 for t in scored], y=[t.user_attrs["accuracy"] for t in scored],
        mode="markers", name="trained candidates", text=[f"trial {t.number}" for t in scored], opacity=0.7))
    if front:
        points = sorted((t.user_attrs["flops"] / 1e6, t.user_attrs["accuracy"], t.number) for t in front)
        figure.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers",
                                    name="Pareto front", text=[f"trial {p[2]}" for p in points]))
    if best is not None and best.user_attrs.get("accuracy") is not None:
        figure.add_trace(go.Scatter(x=[best.user_attrs["flops"] / 1e6], y=[best.user_attrs["accuracy"]],
                                    mode="markers", name="b0", marker={"symbol": "star", "size": 16},
                                    text=[f"trial {best.number}"]))
    figure.update_layout(title="Accuracy against FLOPs", xaxis_title="FLOPs (M, 1 multiply-add = 1 FLOP)",
                         yaxis_title="proxy accuracy")
    return Section("Accuracy against FLOPs", "Every trained candidate's proxy accuracy against its FLOPs, the "
                                             "band, the Pareto front of the trained candidates and the chosen b0.",
                   figure)


def write_search_report(trials: list[FrozenTrial], config: SearchConfig, front: list[FrozenTrial],
                        best: FrozenTrial | None, path: Path) -> Path:
    metric = "accuracy" if config.multi_objective else "reward"
    trained = [t for t in trials if t.state == TrialState.COMPLETE and is_in_band(t)]
    study = scored_study(trained, lambda t: t.user_attrs.get(metric), f"{config.study.name}-report")
    lines = [f"study {config.study.name}: {len(trained)} candidates trained in the band "
             f"[{config.band.low:,}, {config.band.high:,}] FLOPs, {len(trials)} trials in all",
             f"objective {config.objective}, proxy {config.proxy.name} on {config.proxy.data}",
             f"watch a running study live: {dashboard_command(config.study.storage, config.study.run_dir)}"]
    if best is not None:
        lines.append(f"b0: trial {best.number}, {metric} {best.user_attrs.get(metric):.4f}, "
                     f"{best.user_attrs.get('flops'):,} FLOPs")
    sections = [history_section(study, metric, "trained candidate"),
                importance_section(study, metric, "trained candidate"),
                accuracy_section(trials, config.band, front, best)]
    return write_report(path, f"effnet search: {config.study.name}", lines, sections)

