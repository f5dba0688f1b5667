"""A grid's report.html: the optimization history, the importances of alpha, beta and gamma, and the score over
the grid (every point, twins sharing their network's score, the chosen point marked)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from effnet.nas.study.chance import ChanceLevel
from effnet.nas.study.html_report import (
    Section,
    dashboard_command,
    history_section,
    importance_section,
    scored_study,
    write_report,
)
from effnet.scaling.caveats import grid_caveats
from effnet.scaling.grid_results import PointResult
from effnet.scaling.grid_space import GridConfig


def surface_section(rows: Sequence[PointResult], record: dict[str, Any] | None, score_name: str) -> Section:
    import plotly.graph_objects as go

    scored = [r for r in rows if r.network.mean is not None]
    title = "Score over the grid"
    if not scored:
        return Section(title, "no network scored yet")
    figure = go.Figure(
        go.Scatter3d(
            x=[r.point.alpha for r in scored],
            y=[r.point.beta for r in scored],
            z=[r.point.gamma for r in scored],
            mode="markers",
            name="points",
            marker={
                "size": 5,
                "color": [r.network.mean for r in scored],
                "colorscale": "Viridis",
                "colorbar": {"title": score_name},
            },
            text=[
                f"{r.point.label}: {score_name} {r.network.mean:.4f}"
                + (f" ± {r.network.std:.4f}" if r.network.std is not None else "")
                + (f", twin of {r.twin_of.label}" if r.twin_of is not None else "")
                + f", αβ²γ² {r.point.product:.4f}, FLOPs ×{r.point.flops_ratio:.3f}"
                for r in scored
            ],
            hoverinfo="text",
        )
    )
    if record is not None:
        figure.add_trace(
            go.Scatter3d(
                x=[record["alpha"]],
                y=[record["beta"]],
                z=[record["gamma"]],
                mode="markers",
                name="chosen",
                marker={"size": 10, "symbol": "diamond", "color": "red"},
            )
        )
    figure.update_layout(
        title=title,
        height=650,
        scene={"xaxis_title": "α (depth)", "yaxis_title": "β (width)", "zaxis_title": "γ (resolution)"},
    )
    return Section(
        title,
        f"Every point of the grid that has a score, coloured by its network's mean {score_name} "
        "(twins share it; hover for the twin, αβ²γ² and the measured FLOPs growth); the chosen "
        "coefficients in red.",
        figure,
    )


def noise_verdict(record: dict[str, Any]) -> str:
    """How the chosen network's lead over the runner-up compares with the proxy's noise, in words."""
    if record["runner_up"] is None:
        return "no runner-up to compare it with"
    if record["noise_sd"] is None:
        return (
            "the proxy's noise not measured (one run per network)"
            if record["repeats"] == 1
            else "the proxy's noise not measured yet (no network scored twice)"
        )
    return "within the proxy's noise of the runner-up" if record["within_noise"] else "beyond the proxy's noise"


def write_grid_report(
    study: optuna.Study,
    config: GridConfig,
    rows: Sequence[PointResult],
    record: dict[str, Any] | None,
    path: Path,
    chance: ChanceLevel | None = None,
) -> Path:
    score = config.score_name
    evaluated = scored_study(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
        lambda t: t.value,
        f"{config.study.name}-report",
    )
    lines = [
        f"study {config.study.name!r}: grid over {config.base.name} at φ = {config.grid.phi}, "
        f"{len(rows)} points, {len(evaluated.trials)} evaluations scored ({config.proxy.name} proxy on "
        f"{config.proxy.data})",
        f"watch a running grid live: {dashboard_command(config.study.storage, config.study.run_dir)}",
    ]
    if chance is not None:
        lines.append(chance.line("a score"))
    if record is not None:
        lines.append(
            f"chosen: α {record['alpha']}, β {record['beta']}, γ {record['gamma']} ({score} "
            f"{record['score']:.4f}; {noise_verdict(record)}; tied with the runner-up: "
            f"{'yes' if record['tied_with_runner_up'] else 'no'})"
        )
        lines.extend(f"warning: {caveat}" for caveat in grid_caveats(record))
    sections = [
        history_section(evaluated, score, "evaluation"),
        importance_section(evaluated, score, "evaluation"),
        surface_section(rows, record, score),
    ]
    return write_report(path, f"effnet grid-scale: {config.study.name}", lines, sections)
