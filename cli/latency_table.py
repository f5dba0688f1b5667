"""`effnet latency-table`: time every part a search space's networks are made of, on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from effnet.cli.common import ProgressBar, clean_input_errors, console, emit_json, literal, print_notes
from effnet.nas.choices import LATENCY_RUNTIMES
from effnet.nas.latency.settings import MAX_BATCH


def build_data(build: Any, reach: Any) -> dict[str, Any]:
    table = build.table
    return {
        "path": str(table.path),
        "runtime": table.runtime,
        "device": table.fingerprint["device"],
        "batch": table.batch,
        "threads": table.threads,
        "fingerprint": dict(table.fingerprint),
        "parts": len(table.parts),
        "measured": build.measured,
        "reused": build.reused,
        "calibrated_now": build.calibrated,
        "seconds": build.seconds,
        "factor": table.factor,
        "calibration_networks": table.calibration_networks,
        "calibration_worst_error": table.calibration_error,
        "noise_cv": table.noise_cv,
        "fastest_s": reach.fastest_s,
        "slowest_s": reach.slowest_s,
        "replaced": build.replaced,
    }


def print_build(data: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"latency table: {data['runtime']}, {data['device']}, batch {data['batch']}, {data['threads']} thread(s)",
        show_header=False,
    )
    table.add_column("", justify="left")
    table.add_column("", justify="right")
    rows = [
        ("parts", f"{data['parts']:,} ({data['measured']:,} timed now, {data['reused']:,} found timed)"),
        ("time", f"{data['seconds']:.1f} s"),
        (
            "calibration factor",
            f"{data['factor']:.3f} (worst error {data['calibration_worst_error']:.1%} on "
            f"{data['calibration_networks']} networks)",
        ),
        ("noise (median cv)", f"{data['noise_cv']:.3f}"),
        ("fastest network", f"{1000 * data['fastest_s']:.2f} ms"),
        ("slowest network", f"{1000 * data['slowest_s']:.2f} ms"),
        ("file", literal(data["path"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


@clean_input_errors()
def latency_table(
    space: str | None = typer.Option(
        None, "--space", help="Search space: efficientnet (default), efficientnet-nested, mnasnet, or a YAML file."
    ),
    resolution: int | None = typer.Option(
        None, "--resolution", help="Time the space's networks at this resolution instead of the space's own."
    ),
    classes: int | None = typer.Option(
        None, "--classes", help="Time the space's networks with this many classes instead of the space's own."
    ),
    runtime: str = typer.Option(
        "folded",
        "--runtime",
        help=f"What runs the networks: {' | '.join(LATENCY_RUNTIMES)} (onnxruntime needs effnet\\[onnx]).",
        autocompletion=lambda: list(LATENCY_RUNTIMES),
    ),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto (CUDA runs timed by events)."),
    batch: int = typer.Option(1, "--batch", help=f"Images per timed run (at most {MAX_BATCH})."),
    threads: int = typer.Option(
        1, "--threads", help="CPU threads (torch's intra-op threads, onnxruntime's too), as where it is deployed."
    ),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Where the tables go (default: $EFFNET_CACHE or ~/.cache/effnet)."
    ),
    rebuild: bool = typer.Option(
        False, "--rebuild", help="Time every part again, replacing this machine's table (one built while busy)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Time every stem, block and head a search space's networks can have, on this machine, and fit the factor
    that turns their sum into a network's latency; kept in the cache and reused (a second run times nothing)."""
    import dataclasses

    from effnet.nas import checks
    from effnet.nas.latency.reach import latency_reach
    from effnet.nas.latency.table import TableSettings, build_table
    from effnet.nas.net.spec import MAX_INTEGER
    from effnet.nas.space.load import load_space

    searched = load_space(space)
    bounds = (("resolution", "resolution", resolution, 4096), ("num_classes", "classes", classes, MAX_INTEGER))
    changes = {
        name: checks.whole(setting, value, low=1, high=high)  # named by its flag, not as the spec's field
        for name, setting, value, high in bounds
        if value is not None
    }
    if changes:
        searched = dataclasses.replace(searched, base=searched.base.replace(**changes))
    settings = TableSettings(runtime, device, batch, threads)
    with ProgressBar("latency-table", plain=as_json) as bar:
        build = build_table(searched, settings, cache_dir, on_progress=bar, rebuild=rebuild)
    data = build_data(build, latency_reach(searched, build.table))
    data["warnings"] = build.notes
    print_notes(data["warnings"])
    if as_json:
        emit_json(data)
    else:
        print_build(data)
