"""Training checkpoints: written atomically, read back with `torch.load(..., weights_only=True)`.

A checkpoint holds only what the restricted unpickler accepts: tensors, dicts, lists, tuples,
numbers, strings, booleans and None. A crash while saving leaves the previous checkpoint whole:
the new one goes to a temporary file in the same directory, is flushed to disk, then renamed
over the old one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from effnet.nas.errors import InputError
from effnet.nas.files import atomic_write

FORMAT = "effnet-train-checkpoint"
VERSION = 1
BEST_NAME = "best.pt"
"""A training run directory's epoch whose raw or EMA weights scored best on validation (no optimizer state), beside
the last epoch's checkpoint; what export and predict take from a run directory."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str], format: str = FORMAT,
                    version: int = VERSION) -> Path:
    """`format` names what kind of checkpoint this is (a training's, a supernet's), so one is never read as the
    other."""
    target = atomic_write(path, lambda fh: torch.save({"format": format, "version": version, **state}, fh))
    _sync_directory(target.parent)
    return target


def load_checkpoint(path: str | os.PathLike[str], format: str = FORMAT, version: int = VERSION) -> dict[str, Any]:
    """Read a checkpoint of `format` onto the CPU; anything unreadable or foreign is an `InputError`."""
    source = Path(path)
    if not source.is_file():
        raise InputError(f"{source}: no checkpoint to resume from; start a new training instead")
    state = read_torch_file(source, "checkpoint", "delete it to start over or choose another run directory")
    if not is_checkpoint(state, format):
        what = "an effnet training checkpoint" if format == FORMAT else f"an {format}"
        raise InputError(f"{source}: not {what}; choose another run directory")
    return check_version(state, source, version)


def read_torch_file(source: Path, what: str, fix: str) -> Any:
    """`torch.load(weights_only=True)` onto the CPU: tensors and plain data only, never arbitrary objects; a file
    it refuses or cannot read is an `InputError` naming `what` was expected and the `fix`."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # torch's unpickler meets arbitrary bytes with KeyError, IndexError and others too
        reason = " ".join(str(err).split())[:160] or type(err).__name__
        raise InputError(f"{source}: not a readable {what} ({reason}); {fix}") from None


def is_checkpoint(state: Any, format: str = FORMAT) -> bool:
    return isinstance(state, dict) and state.get("format") == format


def check_version(state: dict[str, Any], source: Path, version: int = VERSION) -> dict[str, Any]:
    if state.get("version") != version:
        raise InputError(f"{source}: checkpoint format version {state.get('version')!r}, this effnet reads "
                         f"{version}; finish the run with the effnet that wrote it or start over")
    return state


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); platforms without directory handles skip it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
