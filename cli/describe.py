"""`effnet describe`: a spec's stages, parameters and FLOPs, analytic and (optionally) fvcore."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from effnet.cli import latency_options
from effnet.cli.common import clean_input_errors, console, emit_json, literal, progress_console
from effnet.cli.latency_options import milliseconds, noise_warning, prediction, settings_given
from effnet.nas.latency.settings import REPEATS, WARMUP

PRESETS = ("b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7")
LATENCY_FLAGS = ("--runtime", "--batch", "--threads", "--device", "--repeats", "--cache-dir")


def stage_rows(spec: Any, report: Any) -> list[dict[str, Any]]:
    from effnet.nas.net.layout import plan_network

    plan = plan_network(spec)
    rows = []
    for i, (stage, cost) in enumerate(zip(spec.stages, report.stages, strict=True)):
        blocks = [b for b in plan.blocks if b.stage == i]
        rows.append(
            {
                "stage": i + 1,
                "block": stage.block,
                "repeats": stage.repeats,
                "kernel": stage.kernel,
                "stride": stage.stride,
                "expand": stage.expand,
                "se_ratio": stage.se_ratio,
                "skip": stage.skip,
                "in_channels": blocks[0].in_channels,
                "out_channels": stage.out_channels,
                "out_size": blocks[-1].out_size,
                "params": cost.params,
                "flops": cost.flops,
            }
        )
    return rows


def describe_data(spec: Any, with_fvcore: bool) -> dict[str, Any]:
    from effnet.nas.net.counting import fvcore_count
    from effnet.nas.net.flops import analytic_cost
    from effnet.nas.net.layout import plan_network

    report = analytic_cost(spec)
    data: dict[str, Any] = {
        "name": spec.name,
        "resolution": spec.resolution,
        "num_classes": spec.num_classes,
        "padding": spec.padding,
        "params": report.params,
        "flops": report.flops,
        "flops_by_operator": report.total.by_operator(),
        "stem": {
            "in_channels": spec.in_channels,
            "out_channels": spec.stem.out_channels,
            "kernel": spec.stem.kernel,
            "stride": spec.stem.stride,
            "out_size": plan_network(spec).stem_size,
            "params": report.stem.params,
            "flops": report.stem.flops,
        },
        "stages": stage_rows(spec, report),
        "head": {"out_channels": spec.head.out_channels, "params": report.head.params, "flops": report.head.flops},
        "provenance": dict(spec.provenance),
    }
    if with_fvcore:
        counted = fvcore_count(spec)
        data["fvcore"] = {
            "flops": counted.total,
            "flops_by_operator": counted.by_operator,
            "matches_analytic": counted.by_operator == data["flops_by_operator"],
        }
    return data


def block_label(row: dict[str, Any]) -> str:
    """A stage in one short string, e.g. `mbconv6 k5 s2 se0.25` (`noskip` where the shortcut is off, `poolskip`
    for the pooling shortcut)."""
    label = f"{row['block']}{row['expand'] if row['block'] == 'mbconv' else ''} k{row['kernel']} s{row['stride']}"
    if row["se_ratio"]:
        label += f" se{row['se_ratio']:g}"
    return label + {True: "", False: " noskip", "pool": " poolskip"}[row["skip"]]


def print_description(data: dict[str, Any]) -> None:
    from rich.table import Table

    from effnet.nas.units import format_size

    total = data["flops"]
    padding = ", TensorFlow SAME padding" if data["padding"] == "same" else ""
    table = Table(title=f"{literal(data['name'])} @ {data['resolution']} px, {data['num_classes']} classes{padding}")
    for column in ("stage", "operator", "×", "channels", "size", "params", "FLOPs", "share"):
        left = column in ("operator", "channels")
        table.add_column(column, justify="left" if left else "right", no_wrap=not left)

    def add(label: str, op: str, repeats: str, channels: str, size: str, row: dict[str, Any]) -> None:
        table.add_row(
            label,
            op,
            repeats,
            channels,
            size,
            f"{row['params']:,}",
            format_size(row["flops"]),
            f"{100 * row['flops'] / total:.1f}%",
        )

    stem = data["stem"]
    add(
        "stem",
        f"conv k{stem['kernel']} s{stem['stride']}",
        "1",
        f"{stem['in_channels']}→{stem['out_channels']}",
        f"{stem['out_size']}²",
        stem,
    )
    for r in data["stages"]:
        add(
            str(r["stage"]),
            block_label(r),
            str(r["repeats"]),
            f"{r['in_channels']}→{r['out_channels']}",
            f"{r['out_size']}²",
            r,
        )
    add(
        "head",
        "conv1x1 pool fc",
        "1",
        f"{data['stages'][-1]['out_channels']}→{data['head']['out_channels']}→{data['num_classes']}",
        f"{data['stages'][-1]['out_size']}²",
        data["head"],
    )
    table.add_section()
    table.add_row("total", "", "", "", "", f"{data['params']:,}", format_size(total), "100%")
    console.print(table)

    ops = Table(title="FLOPs by operator (fvcore convention: 1 multiply-add = 1 FLOP)")
    ops.add_column("operator")
    ops.add_column("analytic", justify="right")
    if "fvcore" in data:
        ops.add_column("fvcore", justify="right")
    for op, value in data["flops_by_operator"].items():
        row = [op, f"{value:,}"]
        if "fvcore" in data:
            row.append(f"{data['fvcore']['flops_by_operator'].get(op, 0):,}")
        ops.add_row(*row)
    total_row = ["total", f"{total:,}"]
    if "fvcore" in data:
        total_row.append(f"{data['fvcore']['flops']:,}")
    ops.add_row(*total_row)
    console.print(ops)
    if "fvcore" in data:
        verdict = "agree exactly" if data["fvcore"]["matches_analytic"] else "DISAGREE"
        console.print(f"analytic and fvcore counts {verdict}")


def latency_data(latency: Any, predicted_s: float | None) -> dict[str, Any]:
    """The measured latency as `--json` gives it; `predicted_s` is this machine's latency table's estimate for
    the same runtime, device, batch and threads (None: no such table, or it lacks parts of the network)."""
    return {
        "measured_s": latency.median_s,
        "p90_s": latency.p90_s,
        "predicted_s": predicted_s,
        "runtime": latency.runtime,
        "device": latency.device,
        "batch": latency.batch,
        "threads": latency.threads,
        "repeats": latency.repeats,
        "cv": latency.cv,
    }


def measure(spec: Any, settings: dict[str, Any]) -> Any:
    """The latency, with a spinner on a terminal saying how far the runs are."""
    from effnet.nas.latency.measure import measure_latency

    with progress_console.status("measuring latency", spinner="dots") as status:

        def show(progress: Any) -> None:
            count = "" if progress.preparing else f" {progress.done}/{progress.total}"
            status.update(f"measuring latency: {progress.status}{count}")

        return measure_latency(spec, **settings, on_progress=show)


def print_latency(latency: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="Latency measured here (per batch)")
    for column in ("runtime", "device", "batch", "threads", "median", "p90", "cv", "runs", "predicted"):
        table.add_column(column, justify="left" if column in ("runtime", "device") else "right")
    table.add_row(
        latency["runtime"],
        latency["device"],
        str(latency["batch"]),
        str(latency["threads"]),
        f"{1000 * latency['measured_s']:.2f} ms",
        f"{1000 * latency['p90_s']:.2f} ms",
        f"{latency['cv']:.3f}",
        str(latency["repeats"]),
        milliseconds(latency["predicted_s"]),
    )
    table.caption = "predicted: this machine's latency table (effnet latency-table) for the same settings; - if none"
    console.print(table)


@clean_input_errors()
def describe(
    spec_path: Path | None = typer.Argument(None, metavar="SPEC.yaml", help="A network spec file."),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help=f"Describe an official EfficientNet instead: {', '.join(PRESETS)}.",
        autocompletion=lambda: list(PRESETS),
    ),
    fvcore: bool = typer.Option(False, "--fvcore", help="Also count with fvcore and show both counts."),
    latency: bool = typer.Option(
        False,
        "--latency",
        help="Also measure the network's latency on this machine: the median and 90th percentile time of a "
        "batch of random images at the spec's resolution, beside what this machine's latency table for the same "
        "runtime, device, batch and threads predicts (--json: latency.measured_s, p90_s; predicted_s is null "
        "where no such table was built with effnet latency-table, or it lacks parts of this network).",
    ),
    runtime: str | None = latency_options.RUNTIME,
    batch: int | None = latency_options.BATCH,
    threads: int | None = latency_options.THREADS,
    device: str | None = typer.Option(
        None, "--device", help="With --latency: cpu | cuda | cuda:N | auto (default cpu; CUDA runs timed by events)."
    ),
    repeats: int | None = typer.Option(
        None,
        "--repeats",
        help=f"With --latency, timed runs after {WARMUP} untimed ones (default {REPEATS}); more for a steadier median.",
    ),
    cache_dir: Path | None = typer.Option(
        None,
        "--cache-dir",
        help="With --latency, where the latency tables are looked up (default: $EFFNET_CACHE or ~/.cache/effnet).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Show a spec's stages, parameters and FLOPs (per stage and per operator), and with --latency its measured
    latency."""
    from effnet.nas.errors import InputError
    from effnet.nas.net.spec_file import load_spec
    from effnet.scaling.presets import official_preset

    if (spec_path is None) == (preset is None):
        raise InputError("give either a spec file (effnet describe SPEC.yaml) or --preset b0..b7, not both or neither")
    values = (runtime, batch, threads, device, repeats, cache_dir)
    settings_given(latency, dict(zip(LATENCY_FLAGS, values, strict=True)))
    settings: dict[str, Any] = {
        "runtime": "folded" if runtime is None else runtime,
        "device": "cpu" if device is None else device,
        "batch": 1 if batch is None else batch,
        "threads": threads,
        "repeats": REPEATS if repeats is None else repeats,
    }
    if latency:
        from effnet.nas.latency.measure import check_settings

        check_settings(warmup=WARMUP, **settings)  # refused before the spec is loaded or the spinner starts
    spec = load_spec(spec_path) if spec_path is not None else official_preset(str(preset))
    data = describe_data(spec, fvcore)
    if latency:
        measured = measure(spec, settings)
        predicted_s, lacking = prediction(spec, measured, cache_dir)
        data["latency"] = latency_data(measured, predicted_s)
        data["warnings"] = [noise_warning(measured)] if measured.noisy else []
        data["warnings"] += [lacking] if lacking else []
        for warning in data["warnings"]:
            progress_console.print(f"[yellow]warning:[/] {literal(warning)}", soft_wrap=True)
    if as_json:
        emit_json(data)
    else:
        print_description(data)
        if latency:
            print_latency(data["latency"])
