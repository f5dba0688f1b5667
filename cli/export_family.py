"""`effnet export-family`: grow a base network into its compound-scaled family, B1-B7 by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from effnet.cli import latency_options, options
from effnet.cli.common import (
    ProgressBar,
    clean_input_errors,
    console,
    emit_json,
    literal,
    progress_console,
    set_run_dir,
)
from effnet.cli.latency_options import milliseconds, scaling_help, scaling_settings, settings_given
from effnet.nas.resources import reference_b0_path

PRESETS = ("official",)


def resolve_coefficients(
    coefficients_path: Path | None, alpha: float | None, beta: float | None, gamma: float | None, official: bool
) -> tuple[Any, str]:
    """The coefficients and where they came from; the official preset alone may fall back to the paper's."""
    from effnet.nas.errors import InputError
    from effnet.scaling.compound import Coefficients
    from effnet.scaling.family import load_coefficients
    from effnet.scaling.official import PAPER_COEFFICIENTS

    flags = {"--alpha": alpha, "--beta": beta, "--gamma": gamma}
    given = [name for name, value in flags.items() if value is not None]
    if coefficients_path is not None and given:
        raise InputError(f"give --coefficients FILE or --alpha/--beta/--gamma, not both (got {given[0]} too)")
    if coefficients_path is not None:
        return load_coefficients(coefficients_path), str(coefficients_path)
    if alpha is not None and beta is not None and gamma is not None:
        return Coefficients(alpha, beta, gamma), "command line"
    if given:
        missing = [name for name in flags if name not in given]
        raise InputError(
            f"{' and '.join(missing)} missing: give all of --alpha, --beta and --gamma, "
            "or --coefficients coefficients.yaml"
        )
    if official:
        return PAPER_COEFFICIENTS, "the paper's (none given)"
    raise InputError(
        "no scaling coefficients: give --coefficients coefficients.yaml (from effnet grid-scale) "
        "or all of --alpha, --beta and --gamma (the paper's: --alpha 1.2 --beta 1.1 --gamma 1.15)"
    )


def family_table(members: list[Any], coefficients: Any, title: str, latency: dict[str, Any] | None = None) -> Any:
    """Measured FLOPs ÷ B0 beside the ideal: 2^φ and the formula's (αβ²γ²)^φ, or the target 2^k
    and the miss under --match-flops (the formula then is in the CSV and JSON); with `latency` (by name), each
    member's median latency."""
    from rich import box
    from rich.table import Table

    from effnet.nas.units import format_size

    matching = any(m.match for m in members)
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    ideal = ["2^k", "off"] if matching else ["2^φ", "formula"]
    timed = ["latency"] if latency is not None else []
    for column in ["name", "φ", "depth", "width", "res", "params", "FLOPs", "÷B0", *ideal, "drop", *timed]:
        table.add_column(column, justify="left" if column == "name" else "right", no_wrap=True)
    for m in members:
        if matching:
            off = f"{m.deviation:+.1%}" if m.within_tolerance else f"[red]{m.deviation:+.1%}[/]"
            ideal_cells = [f"{2.0**m.match.step:.4g}x", off]
        else:
            ideal_cells = [f"{m.doubling_ratio:.4g}x", f"{m.ideal_ratio:.2f}x"]
        table.add_row(
            literal(m.name),
            f"{m.phi:.4g}",
            f"{m.depth:.2f}",
            f"{m.width:.2f}",
            str(m.resolution),
            format_size(m.params),
            format_size(m.flops),
            f"{m.flops_ratio:.2f}x",
            *ideal_cells,
            f"{m.dropout:g}",
            *([milliseconds(latency[m.name].median_s)] if latency is not None else []),
        )
    table.caption = (
        f"formula = (αβ²γ²)^φ with α={coefficients.alpha:g} β={coefficients.beta:g} "
        f"γ={coefficients.gamma:g} (αβ²γ² = {coefficients.flops_factor:.4g}); "
        "FLOPs: fvcore convention, 1 multiply-add = 1 FLOP"
    )
    return table


def print_misses(members: list[Any]) -> None:
    from effnet.scaling.family import MATCH_TOLERANCE

    for m in members:
        if m.match is not None and m.match.why:
            console.print(
                f"[red]{literal(m.name)}[/]: no network within {MATCH_TOLERANCE:.0%} of "
                f"{2.0**m.match.step:.4g}x B0; nearest {m.deviation:+.1%}: {literal(m.match.why)}"
            )


def fit_table(fits: list[Any], coefficients: Any) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"φ that best explains each official preset under α={coefficients.alpha:g} "
        f"β={coefficients.beta:g} γ={coefficients.gamma:g} (least squares on logs)",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
    )
    for column in ("preset", "φ", "depth", "α^φ", "off", "width", "β^φ", "off", "res/224", "γ^φ", "off"):
        table.add_column(column, justify="left" if column == "preset" else "right", no_wrap=True)
    for f in fits:
        r = f.row()
        table.add_row(
            f.name,
            f"{f.phi:.3f}",
            f"{f.depth:g}",
            f"{f.depth_model:.3f}",
            f"{r['depth_off']:+.1%}",
            f"{f.width:g}",
            f"{f.width_model:.3f}",
            f"{r['width_off']:+.1%}",
            f"{f.resolution_ratio:.3f}",
            f"{f.resolution_model:.3f}",
            f"{r['resolution_off']:+.1%}",
        )
    return table


@clean_input_errors()
def export_family(
    base_path: Path = typer.Option(
        reference_b0_path(),
        "--base",
        help="Base spec (B0) to grow (default: the reference EfficientNet-B0).",
        show_default=False,
    ),
    coefficients_path: Path | None = typer.Option(
        None, "--coefficients", help="coefficients.yaml with alpha, beta, gamma (grid-scale writes it)."
    ),
    alpha: float | None = typer.Option(None, "--alpha", help="Depth coefficient (>= 1)."),
    beta: float | None = typer.Option(None, "--beta", help="Width coefficient (>= 1)."),
    gamma: float | None = typer.Option(None, "--gamma", help="Resolution coefficient (>= 1)."),
    phi: str | None = typer.Option(None, "--phi", help="Comma list of positive φ values (default: 1,2,3,4,5,6,7)."),
    match_flops: bool = typer.Option(
        False, "--match-flops", help="For each k in --phi, the φ whose measured FLOPs come closest to 2^k x B0."
    ),
    preset: str | None = typer.Option(
        None, "--preset", help="'official': the TensorFlow reference's own B1-B7 and the φ that fits each."
    ),
    classes: str | None = options.BASE_CLASSES,
    data: str | None = typer.Option(
        None,
        "--data",
        help="The data the family is for (an image folder, digits or synthetic): members whose "
        "resolution exceeds its median image short side are warned about (default: the data "
        "the base's search recorded).",
    ),
    run_dir: Path = typer.Option(Path("runs/family"), "--run-dir", help="Where the specs, family.csv and the plot go."),
    latency: bool = typer.Option(
        False, "--latency", help=scaling_help("each member", "--json's members and family.csv (run.yaml too)")
    ),
    runtime: str | None = latency_options.RUNTIME,
    batch: int | None = latency_options.BATCH,
    threads: int | None = latency_options.THREADS,
    repeats: int | None = latency_options.scaling_repeats("--repeats"),
    force: bool = options.FORCE,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Emit the compound-scaled family of a base spec: one YAML spec per member, family.csv, family.png.

    Member φ: depth α^φ, width β^φ, resolution γ^φ (reference rounding); dropout base + 0.1·ceil((φ-1)/2), at most 0.5.
    """
    from effnet.nas.errors import InputError
    from effnet.nas.net.spec_file import load_spec
    from effnet.scaling.export import FamilyConfig
    from effnet.scaling.export import export_family as run_export
    from effnet.scaling.family import DEFAULT_PHIS, MATCH_TOLERANCE, parse_phi_list

    set_run_dir(run_dir)
    if preset is not None and preset not in PRESETS:
        raise InputError(f"--preset {preset!r} is not known; the only preset is 'official'")
    official = preset == "official"
    if official and (match_flops or phi is not None):
        raise InputError("--preset official emits the reference's fixed B1-B7; drop --phi and --match-flops")
    settings_given(latency, {"--runtime": runtime, "--batch": batch, "--threads": threads, "--repeats": repeats})
    timing = scaling_settings(runtime, batch, threads, repeats) if latency else None
    phis = parse_phi_list(phi) if phi is not None else DEFAULT_PHIS
    base = load_spec(base_path)  # first: a base that is not there is the first thing to fix
    coefficients, source = resolve_coefficients(coefficients_path, alpha, beta, gamma, official)
    image_size = None
    if data is not None:
        from effnet.nas.data.facts import data_facts

        image_size = data_facts(data).image_size
    mode = "official" if official else "match-flops" if match_flops else "compound"
    arguments = {
        "base": str(base_path),
        "coefficients": str(coefficients_path) if coefficients_path else None,
        "alpha": alpha,
        "beta": beta,
        "gamma": gamma,
        "phi": phi,
        "match_flops": match_flops,
        "preset": preset,
        "run_dir": str(run_dir),
        "coefficients_source": source,
        "data": data,
    }
    config = FamilyConfig(
        base,
        coefficients,
        phis=phis,
        mode=mode,
        run_dir=run_dir,
        settings=arguments,
        classes=options.whole_number(classes, "--classes"),
        image_size=image_size,
        force=force,
        latency=timing,
    )
    if timing is not None:  # minutes for B7 on a CPU: a bar, and plain lines in a log
        with ProgressBar("family", plain=as_json) as bar:
            result = run_export(config, on_progress=bar)
    else:
        with progress_console.status("sizing the family", spinner="dots") as status:
            result = run_export(config, on_progress=lambda progress: status.update(progress.status))

    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "mode": mode,
        "base": {"path": str(base_path), "name": base.name, "num_classes": result.base.num_classes},
        "median_image_size": result.image_size.record() if result.image_size else None,
        "coefficients": {**coefficients.as_dict(), "flops_factor": coefficients.flops_factor, "source": source},
        "warnings": result.warnings,
        "members": result.rows(),
        "latency": timing.record() if timing is not None else None,
        "removed": result.removed,
        "files": {"csv": str(result.files["csv"]), "plot": str(result.files["plot"]), "run": str(result.files["run"])},
    }
    if match_flops:
        summary["tolerance"] = MATCH_TOLERANCE
    if result.fits:
        summary["official_fit"] = [f.row() for f in result.fits]
        summary["files"]["fit_csv"] = str(result.files["fit_csv"])
    for warning in result.warnings:
        progress_console.print(f"[yellow]warning:[/] {literal(warning)}")
    if result.removed:
        progress_console.print(
            f"removed {literal(', '.join(result.removed))}: the earlier family's in {literal(run_dir)}, "
            "which this one does not replace"
        )
    if as_json:
        emit_json(summary)
        return
    title = f"{literal(base.name)} family ({mode})"
    console.print(family_table(result.members, coefficients, title, result.latency))
    print_misses(result.members)
    if result.fits:
        console.print(fit_table(result.fits, coefficients))
    console.print(
        f"coefficients from {literal(source)}; wrote {len(result.members)} specs, family.csv, family.png and "
        f"run.yaml to {literal(run_dir)}"
    )
