"""`export_family`: the compound-scaled members of a base network, written as specs with their table and plot."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effnet.nas.errors import InputError
from effnet.nas.files import write_csv
from effnet.nas.net.spec import NetworkSpec, dump_spec
from effnet.nas.outputs import claim_run_dir, holding_run_dirs
from effnet.nas.record import write_run_record
from effnet.scaling.compound import Coefficients
from effnet.scaling.family import (DEFAULT_PHIS, FamilyMember, PresetFit, compound_family, match_flops_family,
                                   official_family)

MODES = ("compound", "match-flops", "official")
CSV_COLUMNS = ("name", "phi", "depth", "width", "resolution", "params", "params_ratio", "flops", "flops_ratio",
               "ideal_ratio", "doubling_ratio", "dropout", "path")
MATCH_COLUMNS = ("step", "target_ratio", "target_flops", "deviation", "within_tolerance", "phi_low", "phi_high", "why")


@dataclass(frozen=True)
class FamilyResult:
    """The members (each with its spec), the official fit for mode `official`, the files written, and
    `warnings`: what speaks against the coefficients (their `caveats`: an incomplete grid, a choice within
    noise), recorded in run.yaml."""

    base: NetworkSpec
    coefficients: Coefficients
    mode: str
    members: list[FamilyMember]
    fits: list[PresetFit]
    elapsed_s: float
    files: dict[str, Path] = field(default_factory=dict)
    member_files: dict[str, Path] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        return list(self.coefficients.caveats)

    def rows(self) -> list[dict[str, Any]]:
        return [{**m.row(), "path": str(self.member_files.get(m.name, ""))} for m in self.members]


@holding_run_dirs()
def export_family(base: NetworkSpec, coefficients: Coefficients, *, phis: tuple[float, ...] = DEFAULT_PHIS,
                  mode: str = "compound", run_dir: str | Path | None = None,
                  settings: dict[str, Any] | None = None, force: bool = False) -> FamilyResult:
    """Grow `base` into its family: `compound` (member phi at depth alpha^phi, width beta^phi, resolution
    gamma^phi), `match-flops` (for each k in `phis`, the phi whose measured FLOPs come closest to
    2^k x the base's) or `official` (the TensorFlow reference's B1-B7, each with the phi that best explains
    it). With `run_dir`, write one spec per member, family.csv, family.png and run.yaml (`settings` goes
    into it beside the mode and coefficients); `force` lets `run_dir` hold files effnet did not write."""
    started = time.perf_counter()
    if mode not in MODES:
        raise InputError(f"family mode must be one of {', '.join(MODES)}, got {mode!r}")
    if run_dir is not None:
        claim_run_dir(run_dir, "export-family", force)
    fits: list[PresetFit] = []
    if mode == "official":
        members, fits = official_family(base, coefficients)
    elif mode == "match-flops":
        members = match_flops_family(base, coefficients, phis)
    else:
        members = compound_family(base, coefficients, phis)
    result = FamilyResult(base=base, coefficients=coefficients, mode=mode, members=members, fits=fits,
                          elapsed_s=time.perf_counter() - started)
    if run_dir is None:
        return result
    folder = Path(run_dir)
    for member in members:
        result.member_files[member.name] = dump_spec(member.spec, folder / f"{member.name}.yaml")
    columns = CSV_COLUMNS + (MATCH_COLUMNS if mode == "match-flops" else ())
    result.files["csv"] = write_csv(folder / "family.csv", columns, result.rows())
    if fits:
        result.files["fit_csv"] = write_csv(folder / "official_fit.csv", tuple(fits[0].row()), [f.row() for f in fits])
    from effnet.scaling.plots import plot_family

    result.files["plot"] = plot_family(members, folder / "family.png", f"{base.name} family ({mode})")
    result.files["run"] = write_run_record(
        folder, "export-family", {**(settings or {}), "mode": mode, "coefficients": coefficients.as_dict()},
        {"members": [m.name for m in members], "warnings": result.warnings,
         "seconds": round(time.perf_counter() - started, 3)})
    return result

