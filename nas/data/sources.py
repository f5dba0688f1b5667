"""Image data for the accuracy proxies, held as normalized tensors in memory.

Three sources, chosen by `load_data(source, ...)`:

- ``digits`` (the default): scikit-learn's bundled handwritten digits, 1,797 real 8x8 grey images
  in 10 classes. They install with the tool and need no download. Each image is upsampled
  bilinearly to the requested resolution and repeated over 3 channels, so every spec with
  ``in_channels: 3`` trains on it unchanged.
- ``synthetic``: a tiny deterministic set of class-dependent patterns plus noise, for tests.
- a path to an image folder, either ``PATH/train/<class>/*`` and ``PATH/val/<class>/*`` or
  ``PATH/<class>/*`` (split by `val_fraction`). Images are decoded with Pillow as RGB and resized
  to the requested resolution. A folder literally named ``digits`` or ``synthetic`` is reached
  with a path such as ``./digits``.

Every source is normalized per channel with the training split's mean and standard deviation,
and splits made here are stratified and seeded. Loaded data is cached per
(source, resolution, seed, val_fraction) in the process, so repeated trials never reload it; the
cached tensors are shared and must not be modified in place.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from effnet.nas.errors import InputError

BUILTIN_SOURCES = ("digits", "synthetic")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

SYNTHETIC_CLASSES = 4
SYNTHETIC_PER_CLASS = 80
"""Synthetic set: 4 classes x 80 images, one bright quadrant per class under Gaussian noise."""


@dataclass(frozen=True, eq=False)
class ImageData:
    name: str
    num_classes: int
    train_x: torch.Tensor  # (N, C, H, W) float32, normalized, at the requested resolution
    train_y: torch.Tensor  # (N,) int64
    val_x: torch.Tensor
    val_y: torch.Tensor

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.train_x.shape[-1])


def load_data(source: str, resolution: int, *, seed: int = 0, val_fraction: float = 0.2) -> ImageData:
    """Load `source` ("digits", "synthetic" or an image-folder path) at `resolution` pixels."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise InputError(f"resolution must be a positive number of pixels, got {resolution!r}")
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"validation fraction must lie strictly between 0 and 1, got {val_fraction}")
    key = str(source) if str(source) in BUILTIN_SOURCES else str(Path(source).expanduser().resolve())
    return _load_cached(key, resolution, seed, float(val_fraction))


@functools.lru_cache(maxsize=8)
def _load_cached(source: str, resolution: int, seed: int, val_fraction: float) -> ImageData:
    if source == "digits":
        return _digits(resolution, seed, val_fraction)
    if source == "synthetic":
        return _synthetic(resolution, seed)
    return _image_folder(Path(source), resolution, seed, val_fraction)


# -- assembling a split -------------------------------------------------------------------------

def _normalized(name: str, num_classes: int, train_x: torch.Tensor, train_y: torch.Tensor,
                val_x: torch.Tensor, val_y: torch.Tensor) -> ImageData:
    """Normalize both splits per channel with the training split's statistics."""
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return ImageData(
        name=name,
        num_classes=num_classes,
        train_x=((train_x - mean) / std).float().contiguous(),
        train_y=train_y.long(),
        val_x=((val_x - mean) / std).float().contiguous(),
        val_y=val_y.long(),
    )


def _stratified_split(labels: np.ndarray, val_fraction: float, seed: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of indices (scikit-learn's: the validation set has ceil(f * N) items)."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    try:
        train, val = train_test_split(indices, test_size=val_fraction, random_state=seed, stratify=labels)
    except ValueError as err:
        raise InputError(f"{where}: cannot split {len(labels)} images into train and validation "
                         f"stratified by class ({err}); add images or give train/ and val/ folders") from None
    return np.sort(train), np.sort(val)


# -- digits -------------------------------------------------------------------------------------

def _digits(resolution: int, seed: int, val_fraction: float) -> ImageData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
    images = images.expand(-1, 3, -1, -1)
    labels = digits.target.astype(np.int64)
    train, val = _stratified_split(labels, val_fraction, seed, "digits")
    y = torch.from_numpy(labels)
    train, val = torch.from_numpy(train), torch.from_numpy(val)
    return _normalized("digits", 10, images[train], y[train], images[val], y[val])


# -- synthetic ----------------------------------------------------------------------------------

def _synthetic(resolution: int, seed: int) -> ImageData:
    """Class k brightens quadrant k (of 4) by 1.0 under N(0, 0.5) noise; 64 train, 16 val per class."""
    generator = torch.Generator().manual_seed(seed)
    n_val = SYNTHETIC_PER_CLASS // 5

    def balanced(per_class: int) -> torch.Tensor:
        labels = torch.arange(SYNTHETIC_CLASSES).repeat_interleave(per_class)
        return labels[torch.randperm(len(labels), generator=generator)]

    labels = torch.cat([balanced(n_val), balanced(SYNTHETIC_PER_CLASS - n_val)])
    images = 0.5 * torch.randn(len(labels), 3, resolution, resolution, generator=generator)
    half = max(1, resolution // 2)
    for k in range(SYNTHETIC_CLASSES):
        rows = slice(0, half) if k < 2 else slice(half, None)
        cols = slice(0, half) if k % 2 == 0 else slice(half, None)
        images[labels == k, :, rows, cols] += 1.0
    split = n_val * SYNTHETIC_CLASSES
    return _normalized("synthetic", SYNTHETIC_CLASSES, images[split:], labels[split:], images[:split], labels[:split])


# -- image folders ------------------------------------------------------------------------------

def _class_folders(root: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files, for every non-hidden subfolder of `root`."""
    if not root.exists():
        raise InputError(f"{root}: no such data folder; give digits, synthetic or a path to an image folder")
    if not root.is_dir():
        raise InputError(f"{root}: not a directory; data is digits, synthetic or a folder of class folders")
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.iterdir()
                       if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"{folder}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                             "add images or remove the folder")
        classes[folder.name] = files
    if not classes:
        raise InputError(f"{root}: no class folders found; put images in {root}/<class>/ "
                         f"or {root}/train/<class>/ and {root}/val/<class>/")
    if len(classes) < 2:
        raise InputError(f"{root}: only one class ({next(iter(classes))}); a classifier needs at least two "
                         "class folders")
    return classes


def _decode(files: list[Path], resolution: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    array = np.empty((len(files), resolution, resolution, 3), dtype=np.uint8)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as image:
                array[i] = np.asarray(image.convert("RGB").resize((resolution, resolution), Image.BILINEAR))
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise InputError(f"{path}: cannot read the image ({err}); fix or remove the file") from None
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255.0)


def _flatten(classes: dict[str, list[Path]], names: list[str]) -> tuple[list[Path], np.ndarray]:
    files = [f for name in names for f in classes[name]]
    labels = np.array([i for i, name in enumerate(names) for _ in classes[name]], dtype=np.int64)
    return files, labels


def _image_folder(root: Path, resolution: int, seed: int, val_fraction: float) -> ImageData:
    if (root / "train").is_dir() or (root / "val").is_dir():
        if not ((root / "train").is_dir() and (root / "val").is_dir()):
            raise InputError(f"{root}: has only one of train/ and val/; add the other, "
                             "or put the class folders directly under the data folder")
        train_classes = _class_folders(root / "train")
        val_classes = _class_folders(root / "val")
        if set(train_classes) != set(val_classes):
            only_train = sorted(set(train_classes) - set(val_classes))
            only_val = sorted(set(val_classes) - set(train_classes))
            raise InputError(f"{root}: train/ and val/ hold different classes (only in train: "
                             f"{', '.join(only_train) or '-'}; only in val: {', '.join(only_val) or '-'}); "
                             "give both the same class folders")
        names = sorted(train_classes)
        train_files, train_y = _flatten(train_classes, names)
        val_files, val_y = _flatten(val_classes, names)
        train_x, val_x = _decode(train_files, resolution), _decode(val_files, resolution)
    else:
        classes = _class_folders(root)
        names = sorted(classes)
        files, labels = _flatten(classes, names)
        train_idx, val_idx = _stratified_split(labels, val_fraction, seed, str(root))
        images = _decode(files, resolution)
        train_x, val_x = images[torch.from_numpy(train_idx)], images[torch.from_numpy(val_idx)]
        train_y, val_y = labels[train_idx], labels[val_idx]
    return _normalized(root.name, len(names), train_x, torch.from_numpy(train_y),
                       val_x, torch.from_numpy(val_y))
