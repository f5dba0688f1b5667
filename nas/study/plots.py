"""Search plots: optimization history and accuracy against FLOPs (matplotlib's Agg canvas: no display,
no global pyplot state)."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

from effnet.nas.files import save_figure
from effnet.nas.study.objective import FlopsBand


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def plot_history(trials: list[FrozenTrial], metric: str, path: Path) -> Path:
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
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title("Optimization history")
    ax.legend(loc="lower right")
    return save_figure(fig, path, dpi=120)


def plot_accuracy_vs_flops(trials: list[FrozenTrial], band: FlopsBand, front: list[FrozenTrial],
                           best: FrozenTrial | None, path: Path) -> Path:
    fig, ax = _figure(7, 4)
    scored = [t for t in trials if t.user_attrs.get("accuracy") is not None and t.user_attrs.get("flops")]
    ax.axvspan(band.low / 1e6, band.high / 1e6, color="C2", alpha=0.12, label="FLOPs band")
    ax.axvline(band.target / 1e6, color="C2", lw=1, ls="--", label="target")
    ax.scatter([t.user_attrs["flops"] / 1e6 for t in scored], [t.user_attrs["accuracy"] for t in scored],
               s=14, alpha=0.6, label="trained candidates")
    if front:
        pts = sorted((t.user_attrs["flops"] / 1e6, t.user_attrs["accuracy"]) for t in front)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="C1", ms=4, label="Pareto front")
    if best is not None and best.user_attrs.get("accuracy") is not None:
        ax.scatter([best.user_attrs["flops"] / 1e6], [best.user_attrs["accuracy"]], marker="*", s=160,
                   color="C3", zorder=5, label="b0")
    ax.set_xlabel("FLOPs (M, 1 multiply-add = 1 FLOP)")
    ax.set_ylabel("proxy accuracy")
    ax.set_title("Accuracy against FLOPs")
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path, dpi=120)
