"""The latency measurement on the command line: the options `describe`, `grid-scale` and `export-family` share,
the check that they come with --latency, and the words for a measurement and a latency table's prediction."""

from __future__ import annotations

from typing import Any

import typer

from effnet.nas.choices import LATENCY_RUNTIMES
from effnet.nas.latency.settings import MAX_BATCH, NOISY_CV, SCALING_REPEATS, SCALING_WARMUP

RUNTIME = typer.Option(
    None,
    "--runtime",
    help=f"With --latency, what runs the network: {' | '.join(LATENCY_RUNTIMES)} (default folded: BatchNorm "
    "folded into the convs, channels_last; torch: the eval model as built; onnxruntime: the folded ONNX "
    "export, needs effnet\\[onnx]).",
    autocompletion=lambda: list(LATENCY_RUNTIMES),
)
BATCH = typer.Option(None, "--batch", help=f"With --latency, images per timed run (default 1, at most {MAX_BATCH}).")
THREADS_HELP = (
    "With --latency, CPU threads (torch's intra-op threads, onnxruntime's too; default: torch's, one per core). "
    "Set the threads the network will have where it is deployed."
)
THREADS = typer.Option(None, "--threads", help=THREADS_HELP)


def settings_given(latency: bool, flags: dict[str, Any]) -> None:
    """Refuse a latency setting (flag -> value, None where not given) without --latency, naming the flag."""
    from effnet.nas.errors import InputError

    given = [flag for flag, value in flags.items() if value is not None]
    if given and not latency:
        raise InputError(f"{given[0]} is a setting of the latency measurement; add --latency")


def noise_warning(latency: Any) -> str:
    return (
        f"the {latency.repeats} timed runs varied by a coefficient of variation of {latency.cv:.3f}, above "
        f"{NOISY_CV:.2f}: other work likely shared the {latency.device}, which lifts the median too; close other "
        "programs and measure again, or give more --repeats"
    )


def milliseconds(seconds: float | None) -> str:
    """A latency cell: `12.34 ms`, or `-` where there is none."""
    return "-" if seconds is None else f"{1000 * seconds:.2f} ms"


def table_command(spec: Any, latency: Any) -> str:
    """The `effnet latency-table` command that builds a table holding `spec`'s parts for the settings `latency`
    was measured with: the space a search recorded in the spec's provenance where it is a shipped one (a space
    file's name is not its path), else a placeholder."""
    from effnet.nas.space.load import shipped_spaces

    space = spec.provenance.get("space")
    words = [
        "effnet latency-table",
        f"--space {space if space in shipped_spaces() else 'SPACE'}",
        f"--resolution {spec.resolution}",
        f"--classes {spec.num_classes}",
        f"--runtime {latency.runtime}",
        f"--batch {latency.batch}",
        f"--threads {latency.threads}",
    ]
    if not latency.device.startswith("cpu"):
        words.append(f"--device {latency.device}")
    return " ".join(words)


def prediction(spec: Any, latency: Any, cache_dir: Any) -> tuple[float | None, str | None]:
    """This machine's latency table's prediction for `spec` under the settings `latency` was measured with, and
    a warning when a table exists but lacks parts of `spec` (None, None: no table was built for them)."""
    from effnet.nas.latency.table import TableSettings, find_table

    settings = TableSettings(latency.runtime, latency.device, latency.batch, latency.threads)
    table = find_table(settings, cache_dir)
    if table is None:
        return None, None
    missing = table.missing(spec)
    if missing:
        return None, (
            f"the latency table {table.path} lacks {len(missing)} of {spec.name}'s parts (first: {missing[0]}), "
            f"so nothing is predicted; build it for this network's space: {table_command(spec, latency)}"
        )
    return table.predict(spec), None


def scaling_help(each: str, where: str) -> str:
    """The --latency help of a command that measures many networks (grid-scale, export-family)."""
    return (
        f"Also measure the latency of {each} on this machine's CPU: the median of {SCALING_REPEATS} timed runs after "
        f"{SCALING_WARMUP} untimed ones, batch 1 by default (few runs: B7 at 600 px takes seconds a run on a "
        f"CPU; describe --latency measures one network with more). A latency column in the table, latency_ms, "
        f"latency_p90_ms and latency_cv in {where}."
    )


def scaling_repeats(flag: str) -> Any:
    """The timed runs per network of a command that measures many (its --repeats may name something else)."""
    return typer.Option(
        None,
        flag,
        help=f"With --latency, timed runs per network after {SCALING_WARMUP} untimed ones (default "
        f"{SCALING_REPEATS}: few, as B7 at 600 px takes seconds a run on a CPU).",
    )


def scaling_settings(
    runtime: str | None,
    batch: int | None,
    threads: int | None,
    repeats: int | None,
    settings_named: dict[str, str] | None = None,
) -> Any:
    """The latency settings of grid-scale and export-family, checked before any work; a bad one is refused as
    the setting `settings_named` maps it to (grid-scale's --threads and --repeats are its study's)."""
    from effnet.nas.errors import SettingError
    from effnet.scaling.latency import LatencySettings

    try:
        return LatencySettings(
            runtime="folded" if runtime is None else runtime,
            batch=1 if batch is None else batch,
            threads=threads,
            repeats=SCALING_REPEATS if repeats is None else repeats,
        )
    except SettingError as err:
        raise SettingError((settings_named or {}).get(err.setting, err.setting), err.problem) from None
