"""What every command shares: clean exits on bad input, consoles, JSON output."""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console

from effnet.nas.errors import InputError

console = Console(highlight=False)
"""Tables and summaries; commands print none of them under `--json`, which owns stdout."""

progress_console = Console(stderr=True, highlight=False)
"""Progress bars and notes go to stderr, so they never mix into `--json` output."""

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> "typer.Exit":
    """Print one line naming the problem and the fix; the caller raises the returned Exit(2)."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    return typer.Exit(2)


def clean_input_errors(fn: F) -> F:
    """Turn `InputError` into one line on stderr and exit code 2, with no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as err:
            raise fail(str(err)) from None

    return wrapper  # type: ignore[return-value]


_run_dir: list[Path] = []


def set_run_dir(path: Path) -> None:
    """Where a crash log goes if the command fails unexpectedly."""
    _run_dir[:] = [path]


def write_crash_log() -> Path:
    """Save the current exception's traceback in the run directory (or the temp dir); return its path."""
    folder = _run_dir[0] if _run_dir else Path(tempfile.gettempdir())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "error.log"
        path.write_text(traceback.format_exc(), encoding="utf-8")
    except OSError:
        path = Path(tempfile.gettempdir()) / f"effnet-error-{os.getpid()}.log"
        path.write_text(traceback.format_exc(), encoding="utf-8")
    return path


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()
