"""Training checkpoints: written atomically, read back with `torch.load(..., weights_only=True)`.

A checkpoint holds only what the restricted unpickler accepts: tensors, dicts, lists, tuples,
numbers, strings, booleans and None. A crash while saving leaves the previous checkpoint whole:
the new one goes to a temporary file in the same directory, is flushed to disk, then renamed
over the old one.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Mapping
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


def save_checkpoint(
    state: dict[str, Any], path: str | os.PathLike[str], format: str = FORMAT, version: int = VERSION
) -> Path:
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
        with warnings.catch_warnings():  # torch warns of pickle protocols and sparse tensors: the checks below say
            warnings.simplefilter("ignore")  # what is wrong with such a file, on one line
            return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # torch's unpickler meets arbitrary bytes with KeyError, IndexError and others too
        reason = (
            (" ".join(str(err).split())[:160] or type(err).__name__)
            if _is_zip(source)
            else "not a file torch.save wrote: a plain pickle or other bytes"
        )
        raise InputError(f"{source}: not a readable {what} ({reason}); {fix}") from None


def _is_zip(source: Path) -> bool:
    try:
        return zipfile.is_zipfile(source)
    except OSError:
        return False


def check_state(
    state: Mapping[str, Any], source: str, fix: str, reference: Mapping[str, torch.Tensor] | None = None
) -> None:
    """Refuse weights a model cannot take as they are, naming the first offending tensor: one that is not a
    tensor, not dense (sparse, quantized, on the meta device), not of a real number type, or not finite; and,
    given the model's own state dict `reference`, one it lacks or has of another shape or kind (floating point
    or integer). An `InputError` ending in `fix`."""
    for name, tensor in state.items():
        problem = tensor_problem(tensor, None if reference is None else reference.get(name, _MISSING))
        if problem is not None:
            raise InputError(f"{source}: tensor {name!r} {problem}; {fix}")
    if reference is not None:
        missing = next((name for name in reference if name not in state), None)
        if missing is not None:
            raise InputError(f"{source}: tensor {missing!r} is missing; {fix}")


_MISSING = object()


def tensor_problem(tensor: Any, reference: Any = None) -> str | None:
    """What is wrong with `tensor` as a weight (see `check_state`), or None; `reference` the model's own tensor
    of that name (None: no model to compare with, `_MISSING`: the model has none)."""
    if reference is _MISSING:
        return "is not one of the model's"
    if not isinstance(tensor, torch.Tensor):
        return f"is a {type(tensor).__name__}, not a tensor"
    if tensor.layout != torch.strided or tensor.is_quantized:
        return f"is stored as {tensor.layout if tensor.layout != torch.strided else 'quantized'}, not dense"
    if tensor.is_meta:
        return "holds no values (a meta tensor)"
    if tensor.is_complex() or tensor.dtype == torch.bool:
        return f"is of type {tensor.dtype}, not real numbers"
    if reference is not None:
        if tuple(tensor.shape) != tuple(reference.shape):
            return f"has shape {list(tensor.shape)}, the model's {list(reference.shape)}"
        if tensor.is_floating_point() != reference.is_floating_point():
            return f"is of type {tensor.dtype}, the model's {reference.dtype}"
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        count = int((~torch.isfinite(tensor)).sum())
        return f"holds {count:,} NaN or infinite value{'s' if count > 1 else ''}"
    return None


def is_checkpoint(state: Any, format: str = FORMAT) -> bool:
    return isinstance(state, dict) and state.get("format") == format


def check_version(state: dict[str, Any], source: Path, version: int = VERSION) -> dict[str, Any]:
    if state.get("version") != version:
        raise InputError(
            f"{source}: checkpoint format version {state.get('version')!r}, this effnet reads "
            f"{version}; finish the run with the effnet that wrote it or start over"
        )
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
