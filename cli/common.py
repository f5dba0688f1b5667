"""What every command shares: clean exits on bad input, consoles, JSON output."""

from __future__ import annotations

import functools
import json
import sys
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


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()
