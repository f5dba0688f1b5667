"""Search plots (matplotlib, Agg backend): optimization history and accuracy against FLOPs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

from effnet.nas.study.objective import FlopsBand


def _save(fig, path: Path) -> Path:
    """Write the figure atomically, then close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


def plot_history(trials: list[FrozenTrial], metric: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get(metric) is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
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
    return _save(fig, path)


def plot_accuracy_vs_flops(trials: list[FrozenTrial], band: FlopsBand, front: list[FrozenTrial],
                           best: FrozenTrial | None, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
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
    return _save(fig, path)
