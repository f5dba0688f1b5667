"""The run record: `run.yaml`, one format for every command's run directory.

command: search              # the stage that wrote it
argv: [...]                  # the process's arguments, passwords redacted
versions: {python, effnet, torch, torchvision, optuna, fvcore}
written: 2026-11-29T12:00:00+00:00
settings: {...}              # everything that decided the result
result: {...}                # what came out (null while a run is in progress)
"""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from effnet.nas.files import dump_yaml
from effnet.nas.redact import redact_argv

RUN_RECORD = "run.yaml"
PACKAGES = ("effnet", "torch", "torchvision", "optuna", "fvcore")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def plain(value: Any) -> Any:
    """Plain YAML data: paths as strings, tuples as lists, mappings and lists converted throughout."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def write_run_record(
    run_dir: str | Path, command: str, settings: dict[str, Any], result: dict[str, Any] | None = None
) -> Path:
    record = {
        "command": command,
        "argv": redact_argv(sys.argv),
        "versions": versions(),
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": plain(settings),
        "result": plain(result),
    }
    return dump_yaml(record, Path(run_dir) / RUN_RECORD)
