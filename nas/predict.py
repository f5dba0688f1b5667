"""Class probabilities for image files from a trained network: an effnet training checkpoint (or its run directory),
or an ONNX or TorchScript file `effnet export-model` wrote (run in onnxruntime or torch.jit).

Every image is prepared by the view the network recorded (`effnet.nas.inference.eval_transform`: the same
torchvision transform its validation images went through). Images are named as files, folders (searched
recursively for image files by extension) or glob patterns. A named path that does not exist, a pattern that
matches nothing, or a folder without images is an `InputError`; a file that does not decode as an image is left
out and reported in `PredictResult.skipped` (as training leaves such files out), and a run in which no image
decodes is an `InputError`.
"""

from __future__ import annotations

import glob
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from effnet.nas import checks
from effnet.nas.choices import WEIGHTS
from effnet.nas.data.images import IMAGE_SUFFIXES, BadImage, decode_image
from effnet.nas.errors import InputError, SettingError
from effnet.nas.inference import METADATA_KEYS, ModelInfo, eval_transform, info_from_metadata, load_model
from effnet.nas.progress import Progress, ProgressCallback
from effnet.nas.training.runtime import resolve_device

BATCH = 32
"""Images decoded and run at a time: memory stays that of one batch, whatever the number of images."""
GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class Prediction:
    """One image's `top` classes, most probable first: (class name, probability)."""

    image: Path
    top: tuple[tuple[str, float], ...]

    def as_dict(self) -> dict[str, Any]:
        return {"image": str(self.image), "top": [{"class": name, "probability": p} for name, p in self.top]}


@dataclass(frozen=True)
class PredictResult:
    model: Path
    format: str
    """checkpoint, onnx or torchscript."""
    info: ModelInfo
    predictions: tuple[Prediction, ...]
    skipped: tuple[str, ...]
    """Files that did not decode as images, each with the reason."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model),
            "format": self.format,
            **self.info.as_dict(),
            "predictions": [p.as_dict() for p in self.predictions],
            "skipped": list(self.skipped),
        }


class Predictor:
    """A network to run on normalised image batches, its record, and the format it came in."""

    def __init__(self, info: ModelInfo, format: str, run: Callable[[torch.Tensor], torch.Tensor]):
        self.info = info
        self.format = format
        self.run = run

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.run(images)
        if logits.ndim != 2 or logits.shape[1] != len(self.info.classes):
            raise InputError(
                f"{self.info.source}: the network gives {tuple(logits.shape)} outputs for "
                f"{len(self.info.classes)} recorded classes; export the model again"
            )
        return logits


def existing_model(path: str | os.PathLike[str]) -> Path:
    """`path` where something is there (what it holds is `open_predictor`'s to check), else the `InputError` that
    names it: a missing model is the first thing to fix, before the images."""
    source = Path(path)
    if not source.exists():
        raise InputError(
            f"{source}: no such checkpoint or model file; give an effnet checkpoint, its run directory, "
            "or an ONNX or TorchScript file from effnet export-model"
        )
    return source


def open_predictor(path: str | os.PathLike[str], weights: str = "best", device: str = "auto") -> Predictor:
    """The network in `path`: a training checkpoint or run directory (its `weights`: best, ema or raw), an ONNX
    file (by its .onnx suffix) or a TorchScript file, on `device` (auto, cpu, cuda, cuda:N)."""
    checks.choice("weights", weights, WEIGHTS)
    source = existing_model(path)
    torch_device = resolve_device(device)
    exported = source.suffix.lower() == ".onnx" or (source.is_file() and _is_torchscript(source))
    if exported and weights != "best":
        raise SettingError(
            "weights",
            f"{weights} picks a training checkpoint's weights; {source} is an exported file "
            "with one set of weights: leave the choice out",
        )
    if source.suffix.lower() == ".onnx":
        return _onnx(source, torch_device)
    if exported:
        return _torchscript(source, torch_device)
    model, info = load_model(source, weights)
    model = model.to(torch_device)

    def run(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(images.to(torch_device)).float().cpu()

    return Predictor(info, "checkpoint", run)


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive holds its code and constants beside the tensors; `torch.save` writes neither."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())


def _onnx(path: Path, device: torch.device) -> Predictor:
    try:
        import onnxruntime
    except ImportError:
        raise InputError("running an ONNX file needs onnxruntime, not installed; pip install 'effnet[onnx]'") from None
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise SettingError(
                "device",
                f"{device}: this onnxruntime has no CUDA provider; use cpu for the ONNX file, "
                "or install onnxruntime-gpu",
            )
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types for files it cannot load
        reason = " ".join(str(err).split())[:160] or type(err).__name__
        raise InputError(f"{path}: not a readable ONNX file ({reason}); give a file from effnet export-model") from None
    info = info_from_metadata(session.get_modelmeta().custom_metadata_map, path)
    name = session.get_inputs()[0].name
    return Predictor(info, "onnx", lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0]))


def _torchscript(path: Path, device: torch.device) -> Predictor:
    import warnings

    extra = dict.fromkeys(METADATA_KEYS, "")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as err:  # torch.jit raises RuntimeError and others for archives it cannot load
        reason = " ".join(str(err).split())[:160] or type(err).__name__
        raise InputError(
            f"{path}: not a readable TorchScript file ({reason}); give a file from effnet export-model"
        ) from None
    metadata = {key: value.decode() if isinstance(value, bytes) else value for key, value in extra.items()}
    info = info_from_metadata(metadata, path)
    module.eval()

    def run(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(images.to(device)).float().cpu()

    return Predictor(info, "torchscript", run)


def image_files(items: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The image files `items` name, in order, each once: files as given, folders searched recursively for files
    with an image suffix, glob patterns expanded (`**` crosses folders)."""
    found: dict[Path, None] = {}
    for item in items:
        text = str(item)
        path = Path(text)
        if path.exists():
            if not (path.is_file() or path.is_dir()):
                raise InputError(f"{text}: not a regular file or folder; give image files")
            matches = [path]
        elif any(c in text for c in GLOB_CHARACTERS):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            if not matches:
                brackets = " (a [ opens a set of characters: write [[] for a [ in a name)" if "[" in text else ""
                raise InputError(f"{text}: no file matches the pattern{brackets}; check it")
        else:
            raise InputError(f"{text}: no such image file or folder; check the path")
        for match in matches:
            found.update(dict.fromkeys(_folder_images(match) if match.is_dir() else [match]))
    if not found:
        raise InputError("no images given; name image files, folders or glob patterns")
    return list(found)


def _folder_images(folder: Path) -> list[Path]:
    """The image files in `folder` and its subfolders but the hidden ones (`.ipynb_checkpoints`, `.git`), which
    an image folder's training leaves out too."""
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [
            Path(root) / name
            for name in names
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
        ]
    if not files:
        raise InputError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder or below it")
    return sorted(files)


def predict(
    model: str | os.PathLike[str],
    images: Sequence[str | os.PathLike[str]],
    *,
    top_k: int = 5,
    weights: str = "best",
    device: str = "auto",
    on_progress: ProgressCallback | None = None,
) -> PredictResult:
    """The `top_k` most probable classes (at most all of them) of each image `images` names, by the network in
    `model` (see `open_predictor`); files that do not decode are left out and listed in `skipped`. One path
    (a str or a Path) for `images` is one image, folder or pattern, not a sequence of characters."""
    checks.whole("top_k", top_k, low=1, high=1_000_000)
    checks.path("model", model)
    if isinstance(images, (str, os.PathLike)):
        items = [images]
    else:
        checks.instance("images", images, Iterable, "a path, or paths, folders or glob patterns")
        items = [checks.path("images", item) for item in images]
    existing_model(model)
    files = image_files(items)
    predictor = open_predictor(model, weights, device)
    info = predictor.info
    k = min(top_k, len(info.classes))
    predictions: list[Prediction] = []
    skipped: list[str] = []
    for done, (paths, batch) in _batches(files, eval_transform(info), skipped):
        probabilities = torch.softmax(predictor(batch).double(), dim=1)
        values, indices = probabilities.topk(k, dim=1)
        predictions.extend(
            Prediction(path, tuple((info.classes[i], float(p)) for p, i in zip(row_p, row_i, strict=True)))
            for path, row_p, row_i in zip(paths, values.tolist(), indices.tolist(), strict=True)
        )
        if on_progress is not None:
            on_progress(Progress(done, len(files), "images"))
    if not predictions:
        raise InputError(f"none of the {len(files)} file(s) decodes as an image ({skipped[0]}); give image files")
    return PredictResult(Path(model), predictor.format, info, tuple(predictions), tuple(skipped))


def _batches(
    files: list[Path], transform: Callable[[Any], torch.Tensor], skipped: list[str]
) -> Iterator[tuple[int, tuple[list[Path], torch.Tensor]]]:
    """(files done, (decoded paths, their normalised batch)) per `BATCH` files; a file that does not decode goes
    to `skipped` with its reason."""
    for start in range(0, len(files), BATCH):
        paths, tensors = [], []
        for path in files[start : start + BATCH]:
            try:
                tensors.append(transform(decode_image(path)))
                paths.append(path)
            except BadImage as err:
                skipped.append(str(err))
        if paths:
            yield min(start + BATCH, len(files)), (paths, torch.stack(tensors))
