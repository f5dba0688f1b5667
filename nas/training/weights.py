"""Weights in files: read an effnet training checkpoint or a state dict of effnet, timm or torchvision into a
spec's model, and save a model's weights as a state dict any of the three loads.

Every file is read with `torch.load(weights_only=True)` (tensors and plain data, never arbitrary objects) and
written atomically. Which library wrote a state dict is told by its first layer's name (`stem.0.weight`,
`conv_stem.weight`, `features.0.0.weight`); `nas.net.interop` maps the names and refuses a file built for
another network at the first layer that differs. A training checkpoint gives its EMA weights, the ones the
reference evaluates, unless asked for its raw weights or the ones that scored best on validation (`WEIGHTS`),
and the spec it was trained as (its resolution and classes), its class names and its evaluation view. A training
run directory stands for its `best.pt`. A training run starts from a file's weights with `initial_weights`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from effnet.nas import checks
from effnet.nas.choices import WEIGHTS
from effnet.nas.data.transforms import EvalView
from effnet.nas.errors import InputError, SettingError
from effnet.nas.files import atomic_write
from effnet.nas.inputs import parse_yaml
from effnet.nas.net.interop import LIBRARIES, to_effnet, to_foreign
from effnet.nas.net.model import Network, build_model
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.net.spec_file import spec_from_dict
from effnet.nas.training.checkpoint import BEST_NAME, check_state, check_version, is_checkpoint, read_torch_file

FIRST_LAYER = {"stem.0.weight": "effnet", "conv_stem.weight": "timm", "features.0.0.weight": "torchvision"}
"""The name of the stem conv's weight in each library's state dict."""
WRAPPERS = ("state_dict_ema", "state_dict", "model")
"""Keys under which training scripts nest the state dict, the first present taken: timm's train.py saves its
EMA weights as state_dict_ema beside state_dict, and the EMA weights are the ones to start from, as for effnet's
own checkpoints."""


@dataclass(frozen=True)
class WeightsFile:
    """A file's weights under the library's own names, what wrote them, and (for an effnet training checkpoint)
    the spec as trained."""

    path: Path
    state: dict[str, torch.Tensor]
    library: str
    """effnet, timm or torchvision."""
    kind: str
    """"checkpoint EMA" or "checkpoint raw" (an effnet training checkpoint's weights) or "state dict"."""
    trained_spec: NetworkSpec | None = None
    classes: tuple[str, ...] | None = None
    """A training checkpoint's class names in index order (None: a state dict, or a checkpoint from before they
    were recorded)."""
    view: EvalView | None = None
    """A training checkpoint's evaluation view: how its validation images were prepared."""

    @property
    def which(self) -> str:
        """ema or raw for a training checkpoint's weights, else "state dict"."""
        return {"checkpoint EMA": "ema", "checkpoint raw": "raw"}.get(self.kind, self.kind)

    @property
    def description(self) -> str:
        return f"{self.path} ({self.library} {self.kind})"


@dataclass(frozen=True)
class LoadedLayers:
    """Which of a model's layers (modules holding tensors) took weights from a file, and which kept their own."""

    loaded: tuple[str, ...]
    not_loaded: tuple[str, ...]

    def as_dict(self) -> dict[str, list[str]]:
        return {"loaded": list(self.loaded), "not_loaded": list(self.not_loaded)}


def weights_path(path: str | os.PathLike[str]) -> Path:
    """The file `path` names: itself, or for a training run directory its best.pt."""
    source = Path(path)
    if source.is_dir():
        if not (source / BEST_NAME).is_file():
            raise InputError(
                f"{source}: a directory without {BEST_NAME}; give a training run directory or a checkpoint file"
            )
        return source / BEST_NAME
    if not source.is_file():
        raise InputError(f"{source}: no such weights file; check the path")
    return source


def read_weights(path: str | os.PathLike[str], weights: str | None = None) -> WeightsFile:
    """The weights a file (or a training run directory's best.pt) holds; anything else (a missing or unreadable
    file, another kind of object) is an `InputError`. `weights` picks a training checkpoint's (`WEIGHTS`); None
    takes its EMA weights. A state dict holds one set of weights: `best` takes them, `ema` and `raw` are refused."""
    if weights is not None and weights not in WEIGHTS:
        raise SettingError("weights", f"must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    source = weights_path(checks.path("path", path))
    data = read_torch_file(source, "weights file", "give an effnet checkpoint or a state dict saved with torch.save")
    if is_checkpoint(data):
        return _checkpoint_weights(data, source, weights)
    if weights in ("ema", "raw"):
        raise SettingError(
            "weights",
            f"{weights} picks an effnet training checkpoint's weights; {source} is a state "
            "dict with one set of weights: leave the choice out",
        )
    for key in WRAPPERS:
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    state = _tensors(data, source)
    library = next((name for layer, name in FIRST_LAYER.items() if layer in state), None)
    if library is None:
        raise InputError(
            f"{source}: a state dict of none of effnet, timm or torchvision's EfficientNet (it has no "
            f"{', '.join(FIRST_LAYER)}); give one of theirs or an effnet checkpoint"
        )
    return WeightsFile(source, state, library, "state dict")


def _checkpoint_weights(data: dict[str, Any], source: Path, weights: str | None) -> WeightsFile:
    check_version(data, source)
    ema = data.get("ema", {}).get("weights") if isinstance(data.get("ema"), dict) else None
    if weights == "best":
        best = data.get("best")
        weights = best.get("weights") if isinstance(best, dict) else None
        if weights not in ("ema", "raw"):
            raise InputError(f"{source}: the checkpoint records no best weights; choose ema or raw")
    if weights == "ema" and ema is None:
        raise InputError(f"{source}: the checkpoint holds no EMA weights; choose raw")
    use_ema = ema is not None and weights != "raw"
    state = _tensors(ema if use_ema else data.get("model"), source)
    trained = spec_from_dict(parse_yaml(str(data.get("spec", "")), str(source)), f"{source}: spec")
    classes = data.get("classes")
    if classes is not None and not (
        isinstance(classes, list)
        and len(classes) == trained.num_classes
        and all(isinstance(name, str) for name in classes)
    ):
        raise InputError(
            f"{source}: the recorded class names do not match the checkpoint's "
            f"{trained.num_classes} classes; train it again"
        )
    view = EvalView.from_dict(data["transform"], str(source)) if data.get("transform") is not None else None
    return WeightsFile(
        source,
        state,
        "effnet",
        "checkpoint EMA" if use_ema else "checkpoint raw",
        trained,
        tuple(classes) if classes is not None else None,
        view,
    )


def _tensors(data: Any, source: Path) -> dict[str, torch.Tensor]:
    if (
        not isinstance(data, dict)
        or not data
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items())
    ):
        raise InputError(
            f"{source}: not an effnet checkpoint or a state dict (names to tensors); give one saved "
            "with torch.save(model.state_dict(), path)"
        )
    check_state(
        data, str(source), "give the weights of a trained model, saved with torch.save(model.state_dict(), path)"
    )
    return data


def load_weights(model: Network, weights: WeightsFile, *, replace_classifier: bool = False) -> LoadedLayers:
    """Copy `weights` into `model` (a network `build_model` made from its spec), by name, refusing weights of
    another network at the first layer that differs. With `replace_classifier` a classifier of another shape
    (another number of classes) keeps the model's own initialisation instead."""
    checks.instance("model", model, Network, "a network effnet.build_model made")
    checks.instance("weights", weights, WeightsFile, "the WeightsFile effnet.read_weights returns")
    reference = model.state_dict()
    state = to_effnet(
        weights.state, reference, model.spec, weights.library, weights.description, skip_classifier=replace_classifier
    )
    check_state(state, weights.description, "use weights trained for this spec", {key: reference[key] for key in state})
    model.load_state_dict(state, strict=False)
    layers = list(dict.fromkeys(key.rpartition(".")[0] for key in reference))
    taken = {key.rpartition(".")[0] for key in state}
    return LoadedLayers(
        tuple(layer for layer in layers if layer in taken), tuple(layer for layer in layers if layer not in taken)
    )


def state_dict_for(model: Network, library: str) -> dict[str, torch.Tensor]:
    """`model`'s weights under `library`'s names (effnet, timm or torchvision), in its order, on the CPU: what that
    library's `load_state_dict(..., strict=True)` takes."""
    checks.instance("model", model, Network, "a network effnet.build_model made")
    if library not in LIBRARIES:
        raise InputError(f"library must be one of {', '.join(LIBRARIES)}, got {library!r}")
    return {key: tensor.detach().cpu() for key, tensor in to_foreign(model.state_dict(), model.spec, library).items()}


def save_state_dict(model: Network, library: str, path: str | os.PathLike[str]) -> Path:
    """`state_dict_for(model, library)` saved with `torch.save`, atomically."""
    state = state_dict_for(model, library)
    return atomic_write(path, lambda fh: torch.save(state, fh))


@dataclass(frozen=True)
class InitialWeights:
    """Weights a fresh run starts from: the tensors (effnet's names) and what run.yaml and the checkpoint record
    of them: the file, its library, which weights, the layers loaded and the layers not loaded."""

    state: dict[str, torch.Tensor]
    record: dict[str, Any]


def initial_weights(path: Path, spec: NetworkSpec) -> InitialWeights:
    """The weights in `path` (an effnet checkpoint or a timm or torchvision state dict) for `spec` as trained, by
    name; a classifier for another number of classes is left out, so the run trains a new one from the
    initialisation."""
    weights = read_weights(path)
    with torch.random.fork_rng(devices=[]):  # the caller's random state as it was
        model = build_model(spec)
    layers = load_weights(model, weights, replace_classifier=True)
    loaded = set(layers.loaded)
    state = {key: tensor for key, tensor in model.state_dict().items() if key.rpartition(".")[0] in loaded}
    return InitialWeights(
        state, {"file": str(path), "library": weights.library, "weights": weights.kind, **layers.as_dict()}
    )
