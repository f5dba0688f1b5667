"""Command-line values and options several commands share: durations, renamed options, the data and study
options, and the configs built from them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TypeVar

import typer

from effnet.nas.choices import DEVICES

T = TypeVar("T")


def parse_duration(text: str, flag: str = "--timeout") -> float | None:
    """`90`, `90s`, `8m`, `2h`, or `none` for no limit; raises `InputError`."""
    from effnet.nas.errors import InputError

    value = text.strip().lower()
    if value in ("none", ""):
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    factor = units.get(value[-1], 1)
    number = value[:-1] if value[-1] in units else value
    try:
        seconds = float(number) * factor
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds > 10 * 365 * 86400:
        raise InputError(f"{flag} {text!r} is not a duration; write it like 480, 90s, 8m, 2h or none")
    if seconds <= 0:
        raise InputError(f"{flag} must be positive (or none), got {text!r}")
    return seconds


LATENCY_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
MIN_LATENCY_S = 1e-6
"""A microsecond: below it no network runs (and a band in milliseconds would show as 0.00-0.00 ms)."""


def parse_latency(text: str, flag: str = "--target-latency") -> float:
    """`12ms`, `0.012s`, `800us` as seconds; raises `InputError` (a bare number has no unit: refused)."""
    from effnet.nas.errors import InputError

    value = text.strip().lower().replace(" ", "")
    unit = next((u for u in sorted(LATENCY_UNITS, key=len, reverse=True) if value.endswith(u)), None)
    try:
        seconds = float(value[: -len(unit)]) * LATENCY_UNITS[unit] if unit else math.nan
    except ValueError:
        seconds = math.nan
    if unit is None or not math.isfinite(seconds) or "_" in value:
        raise InputError(f"{flag} {text!r} is not a latency; write it with its unit, like 12ms, 0.012s or 800us")
    if not MIN_LATENCY_S <= seconds <= 3600:
        raise InputError(
            f"{flag} {text!r} is not a latency a network can have: give one from 1us to 3600s, like 12ms or 800us"
        )
    return seconds


def renamed(new: T | None, old: T | None, new_flag: str, old_flag: str, default: T) -> T:
    """The value of an option renamed this release: the new flag's, or the old (deprecated) one's with a
    note on stderr; both at once must agree."""
    from effnet.cli.common import progress_console
    from effnet.nas.errors import InputError

    if old is None:
        return default if new is None else new
    if new is not None and new != old:
        raise InputError(f"{old_flag} is the old name of {new_flag}; give one of them, not both")
    progress_console.print(f"[yellow]note:[/] {old_flag} is deprecated and will be removed; use {new_flag}")
    return old


# -- options several commands share (one declaration, one help text) ------------------------------

DATA = typer.Option("digits", "--data", help="digits (embedded, real), synthetic, or an image-folder path.")
PROXY_EPOCHS = typer.Option(None, "--proxy-epochs", help="Epochs the train proxy trains each network (default: 3).")
OLD_EPOCHS = typer.Option(None, "--epochs", hidden=True, help="Deprecated name of --proxy-epochs.")
BATCH_SIZE = typer.Option(64, "--batch-size", help="Proxy training batch.")
PROXY_TRAIN_IMAGES = typer.Option(
    None, "--proxy-train-images", help="Images the proxy trains on, per class from what is not held out (default: all)."
)
PROXY_VAL_IMAGES = typer.Option(
    None,
    "--proxy-val-images",
    help="Training images held out to score candidates on (default: a fifth, at most 50,000).",
)
AUGMENT = typer.Option(
    "auto",
    "--augment",
    help="Proxy training augmentation: none, light (random resized crop, flip), paper "
    "(+ AutoAugment); auto: light for a folder, none for built-in data.",
)
LOADER_WORKERS = typer.Option(
    None, "--loader-workers", help="DataLoader processes per worker (default: from the cores; none for built-in data)."
)
CACHE_DIR = typer.Option(
    None, "--cache-dir", help="Where the decoded proxy caches go (default: $EFFNET_CACHE or ~/.cache/effnet)."
)
SUPERNET_EPOCHS = typer.Option(
    200,
    "--supernet-epochs",
    help="Epochs the supernet trains (--proxy supernet), one random in-band path a "
    "step; in a search, their time counts in its --timeout.",
)
SUPERNET_KERNELS = typer.Option(
    "separate",
    "--supernet-kernels",
    help="Supernet kernel choices: separate weights per kernel size; shared (a smaller kernel is the centre "
    "of the largest; ranked worse with separate ops, the one that learns with --supernet-ops nested); or "
    "transformed (the centre of the next larger kernel mapped by a learned matrix per layer, Once-for-All's "
    "elastic kernel).",
)
SUPERNET_RECIPE = typer.Option(
    "uniform",
    "--supernet-recipe",
    help="Supernet training step: uniform (one random in-band path on the labels) or sandwich (the band's "
    "largest path on the labels, its smallest and two random ones distilled from it).",
)
SUPERNET_OPS = typer.Option(
    "separate",
    "--supernet-ops",
    help="Supernet block-type choices: separate weights per block type and expand ratio, or nested (mbconv's "
    "expand ratios above 1 as leading channels of the largest, as Once-for-All; learns on the "
    "efficientnet-nested space with --supernet-kernels shared).",
)
STORAGE = typer.Option(
    None,
    "--storage",
    help="Optuna storage URL (postgresql://…, sqlite:///…, journal:PATH); "
    "default: a journal file in the run directory.",
)
STUDY_RUN_DIR = typer.Option(None, "--run-dir", help="Run directory (default runs/<study>).")
WORKERS = typer.Option(
    1, "--workers", "-w", help="Worker processes on the study (on CUDA, one per visible GPU in turn)."
)
STUDY_DEVICE = typer.Option(
    "auto", "--device", help=f"{' | '.join(DEVICES)} (bf16 autocast and channels_last on CUDA)."
)
THREADS = typer.Option(
    None,
    "--threads",
    help="CPU threads per worker (default: the cores free of other work at start ÷ workers; recorded in run.yaml).",
)
JSON = typer.Option(False, "--json", help="Print one JSON summary object instead of tables.")
FORCE = typer.Option(
    False,
    "--force",
    help="Write into a run directory that holds files effnet did not write (effnet never replaces or deletes them).",
)


CLASSES = typer.Option(None, "--classes", help="Classes of the networks' classifier (default: the data's).")
BASE_CLASSES = typer.Option(None, "--classes", help="Classes of the networks' classifier (default: the base spec's).")


def whole_number(text: str | None, flag: str) -> int | None:
    """A count typed on the command line: `10`, `1e3` (a whole number in any float form), None left as None;
    raises `InputError` for anything else. Its range is the config's to check."""
    from effnet.nas.errors import InputError

    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not value.is_integer():
        raise InputError(f"{flag} {text!r} is not a whole number; write it like 224")
    if abs(value) > 1e15:  # past any range a count has, and where a float stops holding every whole number
        raise InputError(f"{flag} {text!r} is far too large; write a count like 224")
    return int(value)


def proxy_config(
    name: str,
    data: str,
    proxy_epochs: int | None,
    old_epochs: int | None,
    resolution: int,
    batch_size: int,
    train_images: int | None,
    val_images: int | None,
    augment: str,
    **supernet: Any,
) -> Any:
    """The `ProxyConfig` of a command's options (`--epochs`, the old name of `--proxy-epochs`, noted)."""
    from effnet.nas.proxies.config import ProxyConfig

    return ProxyConfig(
        name=name,
        data=data,
        epochs=renamed(proxy_epochs, old_epochs, "--proxy-epochs", "--epochs", 3),
        resolution=resolution,
        batch_size=batch_size,
        train_images=train_images,
        val_images=val_images,
        augment=augment,
        **supernet,
    )


def study_config(
    run_dir: Path,
    name: str,
    storage: str | None,
    workers: int,
    seed: int,
    timeout: str,
    device: str,
    threads: int | None,
    loader_workers: int | None,
    cache_dir: Path | None,
    force: bool = False,
) -> Any:
    """The `StudyConfig` of a command's options."""
    from effnet.nas.study.study_config import StudyConfig

    return StudyConfig(
        run_dir=run_dir,
        name=name,
        storage=storage,
        workers=workers,
        seed=seed,
        timeout_s=parse_duration(timeout),
        device=device,
        threads=threads,
        loader_workers=loader_workers,
        cache_dir=cache_dir,
        force=force,
    )
