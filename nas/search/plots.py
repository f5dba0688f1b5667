"""Search plots: optimization history and accuracy against FLOPs (matplotlib's Agg canvas: no display,
no global pyplot state). Accuracy plots draw the proxy's chance level and its margin; candidates that completed,
were pruned (their last accuracy) or fell outside the FLOPs band (never trained: a tick on the bottom edge at
their FLOPs) have markers of their own; legends sit outside the axes, clear of the data."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

from effnet.nas.files import save_figure
from effnet.nas.search.config import CostAxis
from effnet.nas.study.chance import ChanceLevel
from effnet.nas.study.trial_attrs import ACCURACY_ATTR, IN_BAND_ATTR

LEGEND_OUTSIDE = {"loc": "upper left", "bbox_to_anchor": (1.02, 1), "borderaxespad": 0.0, "fontsize": 8}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def draw_chance(ax, chance: ChanceLevel | None) -> None:
    """The chance level as a line, and the margin above it within which an accuracy is not told from it."""
    if chance is None:
        return
    ax.axhline(chance.chance, color="grey", lw=1, ls="--", label=f"chance {chance.chance:.3f}")
    ax.axhspan(
        chance.chance, chance.threshold, color="grey", alpha=0.12, label=f"within chance margin (+{chance.margin:.3f})"
    )


def plot_history(trials: list[FrozenTrial], metric: str, path: Path, chance: ChanceLevel | None = None) -> Path:
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get(metric) is not None]
    fig, ax = _figure(7, 4)
    xs = [t.number for t in done]
    ys = [t.user_attrs[metric] for t in done]
    ax.scatter(xs, ys, s=14, alpha=0.6, label=f"{metric} per trained trial")
    best, running = [], float("-inf")
    for y in ys:
        running = max(running, y)
        best.append(running)
    ax.step(xs, best, where="post", color="C3", label="best so far")
    if metric == ACCURACY_ATTR:
        draw_chance(ax, chance)
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title("Optimization history")
    ax.legend(**LEGEND_OUTSIDE)
    return save_figure(fig, path, dpi=120)


def plot_accuracy_vs_cost(
    trials: list[FrozenTrial],
    axis: CostAxis,
    front: list[FrozenTrial],
    best: FrozenTrial | None,
    path: Path,
    chance: ChanceLevel | None = None,
) -> Path:
    """Accuracy against the cost the search weighs (FLOPs, or the predicted latency), with its band."""
    fig, ax = _figure(7, 4)
    if axis.band is not None:
        low, high, target = axis.band
        ax.axvspan(low, high, color="C2", alpha=0.12, label=f"{axis.name} band")
        ax.axvline(target, color="C2", lw=1, ls="--", label="target")
    draw_chance(ax, chance)
    for state, marker, label in ((TrialState.COMPLETE, "o", "completed"), (TrialState.PRUNED, "v", "pruned")):
        shown = [
            t
            for t in trials
            if t.state == state and t.user_attrs.get(IN_BAND_ATTR) and t.user_attrs.get(ACCURACY_ATTR) is not None
        ]
        if shown:
            ax.scatter(
                [axis.of(t) for t in shown],
                [t.user_attrs[ACCURACY_ATTR] for t in shown],
                s=16,
                alpha=0.6,
                marker=marker,
                label=f"{label} ({len(shown)})",
            )
    outside = [
        cost for t in trials if t.user_attrs.get(IN_BAND_ATTR) is False and (cost := axis.of(t)) is not None and cost
    ]
    if outside:  # never trained: a tick along the bottom edge at their cost (x in data, y in axes units)
        ax.scatter(
            outside,
            [0.03] * len(outside),
            transform=ax.get_xaxis_transform(),
            marker="|",
            s=60,
            color="grey",
            alpha=0.5,
            label=f"outside the band, not trained ({len(outside)})",
        )
        low, high = ax.get_xlim()  # a blended transform does not widen the axis: widen it to hold them
        low, high = min(low, *outside), max(high, *outside)
        ax.set_xlim(low - 0.03 * (high - low), high + 0.03 * (high - low))
    if front:
        pts = sorted((axis.of(t) or 0.0, t.user_attrs[ACCURACY_ATTR]) for t in front)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="C1", ms=4, label="Pareto front")
    if best is not None and best.user_attrs.get(ACCURACY_ATTR) is not None:
        ax.scatter(
            [axis.of(best)], [best.user_attrs[ACCURACY_ATTR]], marker="*", s=160, color="C3", zorder=5, label="b0"
        )
    ax.set_xlabel(f"{axis.name} ({axis.unit})")
    ax.set_ylabel("proxy accuracy")
    ax.set_title(f"Accuracy against {axis.name}")
    ax.legend(**LEGEND_OUTSIDE)
    return save_figure(fig, path, dpi=120)
