"""A trained network back from its checkpoint, with what using it takes: its class names in index order, its input
resolution, the evaluation view its validation images were prepared with, and which weights it holds.

`load_model` builds the network as trained (`read_weights(...).trained_spec`: its own classifier) in eval mode;
`eval_transform` is the torchvision transform of the recorded view (`effnet.nas.data.transforms`, the one training's
evaluation uses), decoded RGB image in, normalised float tensor out. Exported files carry the same record as
string metadata (`METADATA_KEYS`): an ONNX file in its `metadata_props`, a TorchScript file as `_extra_files`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from effnet.nas import checks
from effnet.nas.data.transforms import EvalView, Transform, eval_view, normalised_transform
from effnet.nas.errors import InputError
from effnet.nas.net.model import build_model
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.training.weights import WeightsFile, load_weights, read_weights

METADATA_KEYS = ("effnet.classes", "effnet.transform", "effnet.resolution", "effnet.spec", "effnet.weights")
"""The exported files' metadata: the class names (a JSON list), the evaluation view (a JSON object: resize, crop,
interpolation, mean, std), the input resolution, the spec's name and which weights (ema, raw, or where they came
from when not a training checkpoint). All strings, as ONNX's metadata_props and TorchScript's extra files hold."""


@dataclass(frozen=True)
class ModelInfo:
    """What a trained network needs beside its weights: `classes[i]` names output `i`; images go in as
    `transform` prepares them, `resolution` pixels square."""

    name: str
    """The spec's name."""
    classes: tuple[str, ...]
    resolution: int
    transform: EvalView
    weights: str
    """ema or raw: which of the training's weights."""
    source: Path

    def metadata(self) -> dict[str, str]:
        """The record as an exported file's metadata (`METADATA_KEYS`)."""
        return {
            "effnet.classes": json.dumps(list(self.classes)),
            "effnet.transform": json.dumps(self.transform.as_dict()),
            "effnet.resolution": str(self.resolution),
            "effnet.spec": self.name,
            "effnet.weights": self.weights,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "spec": self.name,
            "classes": list(self.classes),
            "resolution": self.resolution,
            "transform": self.transform.as_dict(),
            "weights": self.weights,
            "source": str(self.source),
        }


def model_info(weights: WeightsFile) -> ModelInfo:
    """The record of a training checkpoint's weights; a file without one is an `InputError` saying what to give."""
    spec = weights.trained_spec
    if spec is None or weights.classes is None or weights.view is None:
        what = "a state dict" if spec is None else "a checkpoint from an effnet that recorded no class names"
        raise InputError(
            f"{weights.path}: {what}, without class names or input transform; give an effnet training "
            "checkpoint (or its run directory) written by this effnet"
        )
    return ModelInfo(spec.name, weights.classes, spec.resolution, weights.view, weights.which, weights.path)


def load_model(checkpoint: str | os.PathLike[str], weights: str = "best") -> tuple[nn.Module, ModelInfo]:
    """The network a training checkpoint (or a run directory: its best.pt) holds, in eval mode with its own
    classifier, and its `ModelInfo`. `weights`: best (the ones that scored best on validation), ema or raw."""
    source = read_weights(checks.path("checkpoint", checkpoint), weights)
    info = model_info(source)
    assert source.trained_spec is not None  # model_info refused a file without one
    model = build_model(source.trained_spec)
    load_weights(model, source)
    return model.eval(), info


def eval_transform(info: ModelInfo) -> Transform:
    """The transform that prepares an image for the network `info` describes: a decoded RGB image (PIL, or a uint8
    (3, H, W) tensor) in, the normalised float32 (3, r, r) tensor out, exactly as its validation images were."""
    checks.instance("info", info, ModelInfo, "the ModelInfo that effnet.load_model returns")
    return normalised_transform(info.transform)


def export_metadata(spec: NetworkSpec, source: WeightsFile | None) -> dict[str, str]:
    """The metadata of a file exported from `spec` with the weights of `source`: a training checkpoint's whole
    record; otherwise the resolution, the spec, the reference's evaluation view at it, and no class names (there
    are none to record)."""
    if source is not None and source.classes is not None and source.view is not None:
        return model_info(source).metadata()
    weights = "initialisation" if source is None else f"{source.library} {source.kind}"
    return {
        "effnet.transform": json.dumps(eval_view(spec.resolution, "files").as_dict()),
        "effnet.resolution": str(spec.resolution),
        "effnet.spec": spec.name,
        "effnet.weights": weights,
    }


def info_from_metadata(metadata: Mapping[str, str], source: Path) -> ModelInfo:
    """The record an exported file carries; a file without it is an `InputError` naming what to give instead."""
    missing = [key for key in ("effnet.classes", "effnet.transform", "effnet.resolution") if not metadata.get(key)]
    if missing:
        raise InputError(
            f"{source}: no effnet metadata ({', '.join(missing)} missing); give a file exported by "
            "`effnet export-model --checkpoint` from a training checkpoint, or the checkpoint itself"
        )
    try:
        classes = json.loads(metadata["effnet.classes"])
        view = json.loads(metadata["effnet.transform"])
        resolution = int(metadata["effnet.resolution"])
    except ValueError:
        raise InputError(
            f"{source}: unreadable effnet metadata; export the model again with effnet export-model"
        ) from None
    if not (isinstance(classes, list) and classes and all(isinstance(name, str) for name in classes)):
        raise InputError(f"{source}: effnet.classes is not a list of class names; export the model again")
    return ModelInfo(
        metadata.get("effnet.spec", ""),
        tuple(classes),
        resolution,
        EvalView.from_dict(view, str(source)),
        metadata.get("effnet.weights", ""),
        source,
    )
