"""What a grid's coefficients record says against trusting its coefficients: an incomplete grid, a winner
within the proxy's noise, tied with its runner-up, with a score near the proxy's chance level, or scored on a
validation split that misses classes. The caveats travel with the coefficients (`Coefficients.caveats`) to the
family."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from effnet.nas.study.chance import unseen_classes_warning


def grid_caveats(record: Mapping[str, Any]) -> tuple[str, ...]:
    """One sentence per caveat of a coefficients record (as grid-scale writes it; older records lack the
    noise keys, and files written by hand lack both, which says nothing against them)."""
    caveats = []
    if record.get("complete") is False:
        if "evaluations_total" in record:
            done = f"{record.get('evaluations_done')} of {record['evaluations_total']} evaluations"
        else:
            done = f"{record.get('points_scored')} of {record.get('points_total')} points"
        caveats.append(
            f"the coefficients come from an incomplete grid ({done} done); rerun the same "
            "grid-scale command to finish it"
        )
    if record.get("within_noise") is True:
        margin = record.get("margin_sd")
        lead = f"by {margin:.2f} standard deviations of the proxy" if isinstance(margin, (int, float)) else "by nothing"
        caveats.append(
            f"the grid's choice is within noise: the best network leads the runner-up {lead} "
            f"({record.get('repeats')} runs each); more --repeats or --proxy-epochs would tell them apart"
        )
    if record.get("tied_with_runner_up") is True:
        runner_up = record.get("runner_up")
        if not isinstance(runner_up, dict):
            runner_up = {}
        caveats.append(
            f"the grid's choice is tied with the runner-up (alpha {runner_up.get('alpha')}, beta "
            f"{runner_up.get('beta')}, gamma {runner_up.get('gamma')}: mean score "
            f"{_number(record.get('score'))} each); the tie rule chose it (the lower measured FLOPs ratio), "
            "not the scores; more --repeats or --proxy-epochs would tell them apart"
        )
    chance = record.get("chance")
    if record.get("near_chance") is True and isinstance(chance, dict):
        caveats.append(
            f"the grid's best score {_number(record.get('score'))} is within "
            f"{_number(chance.get('margin'))} of the proxy's chance level {_number(chance.get('chance'))}: "
            "its networks were not told apart from guessing; train the proxy longer (--proxy-epochs), at a "
            "higher --proxy-resolution, or on more images"
        )
    unseen = unseen_classes_warning(chance) if isinstance(chance, dict) else None
    if unseen is not None:
        caveats.append(unseen)
    return tuple(caveats)


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
