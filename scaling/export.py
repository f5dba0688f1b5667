"""`export_family`: the compound-scaled members of a base network, written as specs with their table and plot."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effnet.nas import checks
from effnet.nas.data.facts import ImageSize
from effnet.nas.errors import SettingError
from effnet.nas.files import write_csv
from effnet.nas.latency.measure import Latency
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.net.spec_file import dump_spec
from effnet.nas.outputs import claim_run_dir, earlier_outputs, holding_run_dirs
from effnet.nas.progress import Progress, ProgressCallback
from effnet.nas.record import RUN_RECORD, write_run_record
from effnet.nas.space.fit import MAX_CLASSES
from effnet.scaling.compound import Coefficients
from effnet.scaling.family import DEFAULT_PHIS, FamilyMember, compound_family
from effnet.scaling.latency import LATENCY_COLUMNS, LatencySettings, latency_row, measure_networks
from effnet.scaling.match_flops import match_flops_family
from effnet.scaling.official import PresetFit, official_family

MODES = ("compound", "match-flops", "official")
CSV_COLUMNS = (
    "name",
    "phi",
    "depth",
    "width",
    "resolution",
    "params",
    "params_ratio",
    "flops",
    "flops_ratio",
    "ideal_ratio",
    "doubling_ratio",
    "dropout",
    "path",
)
MATCH_COLUMNS = ("step", "target_ratio", "target_flops", "deviation", "within_tolerance", "phi_low", "phi_high", "why")


def data_image_size(base: NetworkSpec) -> ImageSize | None:
    """The median image size a search recorded in its b0's provenance (None for a spec without one)."""
    fit = base.provenance.get("fit")
    return ImageSize.from_record(fit.get("median_image_size")) if isinstance(fit, dict) else None


def oversized_members(members: list[FamilyMember], size: ImageSize) -> str | None:
    """A warning naming the members whose resolution exceeds the data's median image short side, and by how much
    (None when none does)."""
    over = [m for m in members if m.resolution > size.short_side]
    if not over:
        return None
    each = ", ".join(f"{m.name} {m.resolution} px ({m.resolution / size.short_side:.2f}x)" for m in over)
    return (
        f"{len(over)} of {len(members)} members ask for more pixels than the data's images have: {each}, over "
        f"the median image short side {size.short_side} px (median {size.width}x{size.height} over "
        f"{size.sampled} files); their inputs would be upsampled, costing FLOPs for no detail: stop the family "
        "below them (--phi) or train them on larger images"
    )


@dataclass(frozen=True)
class FamilyResult:
    """The members (each with its spec), the official fit for mode `official`, the files written, and
    `warnings`, recorded in run.yaml: what speaks against the coefficients (their `caveats`: an incomplete grid,
    a choice within noise or tied with the runner-up), and members whose resolution exceeds the data's median
    image size (`image_size`, where known)."""

    base: NetworkSpec
    coefficients: Coefficients
    mode: str
    members: list[FamilyMember]
    fits: list[PresetFit]
    elapsed_s: float
    files: dict[str, Path] = field(default_factory=dict)
    member_files: dict[str, Path] = field(default_factory=dict)
    image_size: ImageSize | None = None
    """The data's median image size: from `export_family`'s argument or the base's provenance (None: unknown)."""
    latency: dict[str, Latency] | None = None
    """Each member's latency on this machine, by name (None: not measured, `FamilyConfig.latency` unset)."""
    removed: list[str] = field(default_factory=list)
    """Files an earlier export into the same run directory wrote that this family does not (its other members,
    its official_fit.csv), removed so that the directory holds one family."""

    @property
    def warnings(self) -> list[str]:
        oversized = oversized_members(self.members, self.image_size) if self.image_size is not None else None
        return list(self.coefficients.caveats) + ([oversized] if oversized else [])

    def rows(self) -> list[dict[str, Any]]:
        """One row per member; with the latency columns (milliseconds) where it was measured."""
        latency = self.latency
        return [
            {
                **m.row(),
                **(latency_row(latency[m.name]) if latency is not None else {}),
                "path": str(self.member_files.get(m.name, "")),
            }
            for m in self.members
        ]


@dataclass(frozen=True)
class FamilyConfig:
    """A family to grow from `base`: `compound` (member phi at depth alpha^phi, width beta^phi, resolution
    gamma^phi for each phi in `phis`), `match-flops` (for each k in `phis`, the phi whose measured FLOPs come
    closest to 2^k x the base's) or `official` (the TensorFlow reference's B1-B7, each with the phi that best
    explains it). With `run_dir`, the specs and files are written there (`settings` goes into run.yaml beside
    the mode and coefficients; `force` lets it hold files effnet did not write). `classes` replaces the base's
    class count (None: the base's, which a search wrote from its data); `image_size` is the data's median image
    size that members are warned against (None: the one the base's provenance records, if any). With `latency`,
    each member's latency is measured on this machine (`effnet.scaling.latency`) and goes into the rows."""

    base: NetworkSpec
    coefficients: Coefficients
    phis: tuple[float, ...] = DEFAULT_PHIS
    mode: str = "compound"
    run_dir: Path | None = None
    settings: dict[str, Any] | None = None
    classes: int | None = None
    image_size: ImageSize | None = None
    force: bool = False
    latency: LatencySettings | None = None

    def __post_init__(self) -> None:
        checks.instance("base", self.base, NetworkSpec, "a NetworkSpec (effnet.load_spec(path))")
        checks.instance("coefficients", self.coefficients, Coefficients, "effnet.Coefficients(alpha, beta, gamma)")
        checks.choice("mode", self.mode, MODES)
        if self.latency is not None:
            checks.instance("latency", self.latency, LatencySettings, "effnet.scaling.latency.LatencySettings()")
        if self.mode != "official" and not self.phis:
            raise SettingError("phis", "must name at least one phi, like (1, 2, 3, 4, 5, 6, 7)")
        if self.classes is not None:
            checks.whole("classes", self.classes, low=2, high=MAX_CLASSES)
            object.__setattr__(self, "base", self.base.replace(num_classes=self.classes))
        if self.run_dir is not None:
            object.__setattr__(self, "run_dir", Path(self.run_dir))


FAMILY_FILES = (RUN_RECORD, "family.csv", "official_fit.csv", "family.png")
"""The files `export_family` writes in its run directory besides one spec per member."""


@holding_run_dirs()
def export_family(config: FamilyConfig, on_progress: ProgressCallback | None = None) -> FamilyResult:
    """Grow `config.base` into its family (see `FamilyConfig`); with `config.run_dir`, write one spec per
    member, family.csv, family.png and run.yaml. `on_progress` hears when the members are sized, as each
    member's latency is measured (with `config.latency`) and as each file is written."""
    started = time.perf_counter()
    report = on_progress or (lambda progress: None)
    base, coefficients, mode, run_dir = config.base, config.coefficients, config.mode, config.run_dir
    image_size = config.image_size or data_image_size(base)
    report(Progress(0, None, "sizing the family", preparing=True))  # no log line yet: a refusal stays one line
    fits: list[PresetFit] = []
    if mode == "official":
        members, fits = official_family(base, coefficients)
    elif mode == "match-flops":
        members = match_flops_family(base, coefficients, config.phis)
    else:
        members = compound_family(base, coefficients, config.phis)
    earlier: frozenset[str] = frozenset()
    if run_dir is not None:  # once the members' names, which the files take, are known; before any is timed
        written = (*FAMILY_FILES, *(f"{m.name}.yaml" for m in members))
        earlier = earlier_outputs(run_dir, "export-family")
        claim_run_dir(run_dir, "export-family", config.force, writes=written)
    latency = None
    if config.latency is not None:
        latency = measure_networks({m.name: m.spec for m in members}, config.latency, report)
    result = FamilyResult(
        base=base,
        coefficients=coefficients,
        mode=mode,
        members=members,
        fits=fits,
        elapsed_s=time.perf_counter() - started,
        image_size=image_size,
        latency=latency,
    )
    if run_dir is None:
        return result
    for done, member in enumerate(members, 1):
        result.member_files[member.name] = dump_spec(member.spec, run_dir / f"{member.name}.yaml", replace=True)
        report(Progress(done, len(members), f"wrote {member.name}.yaml"))
    columns = CSV_COLUMNS + (MATCH_COLUMNS if mode == "match-flops" else ()) + (LATENCY_COLUMNS if latency else ())
    result.files["csv"] = write_csv(run_dir / "family.csv", columns, result.rows())
    if fits:
        result.files["fit_csv"] = write_csv(run_dir / "official_fit.csv", tuple(fits[0].row()), [f.row() for f in fits])
    from effnet.scaling.plots import plot_family

    result.files["plot"] = plot_family(members, run_dir / "family.png", f"{base.name} family ({mode})")
    # an earlier family's files this one does not replace (its b5.yaml beside a b1-b2 family) would describe a
    # family the directory no longer holds: they go
    now = {path.name for path in (*result.files.values(), *result.member_files.values())}
    for name in sorted(earlier - now - {RUN_RECORD}):
        (run_dir / name).unlink(missing_ok=True)
        result.removed.append(name)
    result.files["run"] = write_run_record(
        run_dir,
        "export-family",
        {
            **(config.settings or {}),
            "mode": mode,
            "coefficients": coefficients.as_dict(),
            "classes": base.num_classes,
            "median_image_size": image_size.record() if image_size else None,
            "latency": config.latency.record() if config.latency is not None else None,
        },
        {
            "members": [m.name for m in members],
            **({"latency_ms": {name: 1000 * t.median_s for name, t in latency.items()}} if latency else {}),
            "warnings": result.warnings,
            "removed": result.removed,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    return result
