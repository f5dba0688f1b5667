"""Plots of a compound-scaled family and of the coefficient grid (matplotlib's Agg canvas: no display,
no global pyplot state)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from effnet.nas.files import save_figure
from effnet.nas.study.chance import ChanceLevel
from effnet.scaling.family import FamilyMember
from effnet.scaling.grid_results import PointResult, ranked
from effnet.scaling.grid_space import FLOPS_TARGET, GridDefinition

LEGEND_BELOW = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.16), "fontsize": 8, "ncols": 2}
"""Legends below the axes, clear of the data (two panels side by side leave no room to their right)."""
LOG_TICK_SUBS = (1.0, 2.0, 5.0)
"""Labelled log-axis ticks at 1, 2 and 5 x powers of ten: a panel spanning less than a decade still gets several."""


def plot_family(members: Sequence[FamilyMember], path: str | os.PathLike[str], title: str) -> Path:
    """`family_figure` as a PNG file."""
    return save_figure(family_figure(members, title), path)


def family_figure(members: Sequence[FamilyMember], title: str) -> Figure:
    """FLOPs and parameters (÷ base, log scale) against phi: measured beside the formula's
    (alpha*beta^2*gamma^2)^phi (FLOPs) or (alpha*beta^2)^phi (parameters) and the ideal 2^phi;
    `--match-flops` targets 2^k as crosses."""
    ordered = sorted(members, key=lambda m: m.phi)
    phis = [m.phi for m in ordered]
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    flops_ax, params_ax = fig.subplots(1, 2)

    flops_ax.plot(phis, [m.flops_ratio for m in ordered], "o-", label="measured (rounded)")
    flops_ax.plot(phis, [m.ideal_ratio for m in ordered], "s--", label="formula (αβ²γ²)^φ")
    flops_ax.plot(phis, [m.doubling_ratio for m in ordered], ":", color="grey", label="ideal 2^φ")
    targets = [(m.phi, 2.0**m.match.step) for m in ordered if m.match is not None]
    if targets:
        flops_ax.plot(*zip(*targets, strict=True), "x", color="black", markersize=9, label="target 2^k")
    flops_ax.set_title("FLOPs ÷ base")
    flops_ax.set_ylabel("FLOPs ÷ base (log scale)")

    params_ax.plot(phis, [m.params_ratio for m in ordered], "o-", label="measured (rounded)")
    params_ax.plot(phis, [m.ideal_params_ratio for m in ordered], "s--", label="formula (αβ²)^φ")
    params_ax.set_title("parameters ÷ base")
    params_ax.set_ylabel("parameters ÷ base (log scale)")

    for ax in (flops_ax, params_ax):
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=LOG_TICK_SUBS))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}x"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("φ")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(**LEGEND_BELOW)
        for m in ordered:
            ax.annotate(
                m.name,
                (m.phi, m.flops_ratio if ax is flops_ax else m.params_ratio),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=8,
            )
    fig.suptitle(title)
    return fig


def plot_grid(
    rows: Sequence[PointResult],
    grid: GridDefinition,
    path: str | os.PathLike[str],
    title: str,
    score_name: str,
    chance: ChanceLevel | None = None,
) -> Path:
    """Mean score of every point whose network is scored (twins share their network's, bars its standard
    deviation over the repeats) against the formula's alpha*beta^2*gamma^2 (left) and the measured FLOPs
    ratio of its phi = k network over the base, taken to the power 1/k (right), coloured by gamma; the kept
    band shaded on the side the constraint used, the chosen point starred, the chance level of an accuracy
    proxy dashed (and its margin shaded)."""
    scored = [r for r in rows if r.network.mean is not None]
    order = ranked(list(dict.fromkeys(r.network for r in rows)))
    best = order[0] if order else None
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    formula_ax, measured_ax = fig.subplots(1, 2, sharey=True)
    gammas = [r.point.gamma for r in scored]
    growth = f"(measured FLOPs ÷ base)^(1/{grid.phi})" if grid.phi > 1 else "measured FLOPs ÷ base"
    for ax, measure, label, constrained in (
        (formula_ax, lambda p: p.product, "α·β²·γ²", not grid.measured),
        (measured_ax, lambda p: p.flops_ratio ** (1 / grid.phi), f"{growth} (φ = {grid.phi}, rounded)", grid.measured),
    ):
        if constrained:
            ax.axvspan(
                FLOPS_TARGET - grid.tolerance,
                FLOPS_TARGET + grid.tolerance,
                color="grey",
                alpha=0.12,
                label=f"kept: |x − {FLOPS_TARGET}| ≤ {grid.tolerance:g}",
            )
        ax.axvline(FLOPS_TARGET, color="grey", linestyle=":")
        if chance is not None:
            ax.axhline(chance.chance, color="tab:red", lw=1, ls="--", label=f"chance {chance.chance:.3f}")
            ax.axhspan(
                chance.chance,
                chance.threshold,
                color="tab:red",
                alpha=0.07,
                label=f"within chance margin (+{chance.margin:.3f})",
            )
        xs, ys = [measure(r.point) for r in scored], [r.network.mean for r in scored]
        if any(r.network.std for r in scored):
            ax.errorbar(
                xs,
                ys,
                yerr=[r.network.std or 0.0 for r in scored],
                fmt="none",
                ecolor="grey",
                elinewidth=0.8,
                alpha=0.6,
            )
        dots = ax.scatter(xs, ys, c=gammas, cmap="viridis", s=28, edgecolors="black", linewidths=0.3)
        if best is not None:
            p = best.chosen
            ax.plot(
                measure(p),
                best.mean,
                "*",
                color="red",
                markersize=16,
                markeredgecolor="black",
                label=f"chosen α={p.alpha:g} β={p.beta:g} γ={p.gamma:g}",
            )
        ax.set_xlabel(label)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(**LEGEND_BELOW)
    formula_ax.set_ylabel(score_name)
    if scored:
        fig.colorbar(dots, ax=measured_ax, label="γ")
    fig.suptitle(title)
    return save_figure(fig, path)
