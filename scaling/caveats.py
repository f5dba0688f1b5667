"""What a grid's coefficients record says against trusting its coefficients: an incomplete grid, or a winner
within the proxy's noise. The caveats travel with the coefficients (`Coefficients.caveats`) to the family."""

from __future__ import annotations

from typing import Any, Mapping


def grid_caveats(record: Mapping[str, Any]) -> tuple[str, ...]:
    """One sentence per caveat of a coefficients record (as grid-scale writes it; older records lack the
    noise keys, and files written by hand lack both, which says nothing against them)."""
    caveats = []
    if record.get("complete") is False:
        if "evaluations_total" in record:
            done = f"{record.get('evaluations_done')} of {record['evaluations_total']} evaluations"
        else:
            done = f"{record.get('points_scored')} of {record.get('points_total')} points"
        caveats.append(f"the coefficients come from an incomplete grid ({done} done); rerun the same "
                       "grid-scale command to finish it")
    if record.get("within_noise") is True:
        margin = record.get("margin_sd")
        lead = f"by {margin:.2f} standard deviations of the proxy" if isinstance(margin, (int, float)) else "by nothing"
        caveats.append(f"the grid's choice is within noise: the best network leads the runner-up {lead} "
                       f"({record.get('repeats')} runs each); more --repeats or --proxy-epochs would tell them apart")
    return tuple(caveats)
