"""Image folders: `PATH/train/<class>/...` and `PATH/val/<class>/...`, or `PATH/<class>/...` to be split.

`index_folder` lists the files (no decoding) and checks the layout: every class folder holds images,
train/ and val/ hold the same classes. `split_per_class` draws a deterministic, per-class split
from a seed: MnasNet held out 50,000 ImageNet training images as its search-time validation set and
trained candidates on the rest; `held_out_split` does the same for any folder.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from effnet.nas.data.images import IMAGE_SUFFIXES, ImageSet
from effnet.nas.errors import InputError, SettingError

VAL_FRACTION = 0.2
"""Share of a folder without val/ (or of the training images, for a proxy) held out for validation."""
MAX_HELD_OUT = 50_000
"""At most this many images held out by default: MnasNet's search-time validation set on ImageNet."""


def _class_folders(root: Path) -> dict[str, list[str]]:
    """Class name -> sorted image file names, for every non-hidden subfolder of `root`."""
    if not root.exists():
        raise InputError(f"{root}: no such data folder; give digits, synthetic or a path to an image folder")
    if not root.is_dir():
        raise InputError(f"{root}: not a directory; data is digits, synthetic or a folder of class folders")
    classes: dict[str, list[str]] = {}
    with os.scandir(root) as entries:
        folders = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    for name in folders:
        with os.scandir(root / name) as entries:
            files = sorted(e.name for e in entries if e.is_file() and not e.name.startswith(".")
                           and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"{root / name}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                             "add images or remove the folder")
        classes[name] = files
    if not classes:
        raise InputError(f"{root}: no class folders found; put images in {root}/<class>/ "
                         f"or {root}/train/<class>/ and {root}/val/<class>/")
    if len(classes) < 2:
        raise InputError(f"{root}: only one class ({next(iter(classes))}); a classifier needs at least two "
                         "class folders")
    return classes


def _image_set(name: str, root: Path, prefix: str, classes: dict[str, list[str]], names: list[str]) -> ImageSet:
    paths = [os.fsencode(os.path.join(prefix, c, f)) for c in names for f in classes[c]]
    labels = np.array([i for i, c in enumerate(names) for _ in classes[c]], dtype=np.int64)
    return ImageSet(name, tuple(names), labels, root=root, paths=np.array(paths, dtype=np.bytes_))


def index_folder(path: str | Path) -> tuple[ImageSet, ImageSet | None]:
    """The folder's training images and its validation images (None when it has no val/)."""
    root = Path(path).expanduser().resolve()
    train_dir, val_dir = root / "train", root / "val"
    if train_dir.is_dir() or val_dir.is_dir():
        if not (train_dir.is_dir() and val_dir.is_dir()):
            raise InputError(f"{root}: has only one of train/ and val/; add the other, "
                             "or put the class folders directly under the data folder")
        train, val = _class_folders(train_dir), _class_folders(val_dir)
        if set(train) != set(val):
            only_train = sorted(set(train) - set(val))
            only_val = sorted(set(val) - set(train))
            raise InputError(f"{root}: train/ and val/ hold different classes (only in train: "
                             f"{', '.join(only_train) or '-'}; only in val: {', '.join(only_val) or '-'}); "
                             "give both the same class folders")
        names = sorted(train)
        return (_image_set(root.name, root, "train", train, names),
                _image_set(root.name, root, "val", val, names))
    classes = _class_folders(root)
    return _image_set(root.name, root, "", classes, sorted(classes)), None


def split_per_class(labels: np.ndarray, counts: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """Disjoint index sets of `counts` images each, drawn per class in proportion to its size (largest
    remainders settle the rounding), shuffled by `seed`; each set sorted. Deterministic for a seed."""
    classes, sizes = np.unique(labels, return_counts=True)
    rng = np.random.default_rng([seed, 0x5EED])
    shuffled = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    taken = {c: 0 for c in classes}
    parts = []
    for count in counts:
        free = np.array([len(shuffled[c]) - taken[c] for c in classes])
        share = count * free / max(1, free.sum())
        whole = np.floor(share).astype(int)
        for k in np.argsort(-(share - whole), kind="stable")[: count - whole.sum()]:
            whole[k] += 1
        chosen = []
        for c, n in zip(classes, np.minimum(whole, free)):
            chosen.append(shuffled[c][taken[c]:taken[c] + n])
            taken[c] += n
        parts.append(np.sort(np.concatenate(chosen)))
    return parts


def default_held_out(total: int) -> int:
    """The validation images held out of `total` by default: 20 %, rounded up, at most 50,000."""
    return min(MAX_HELD_OUT, math.ceil(VAL_FRACTION * total))


def held_out_split(images: ImageSet, seed: int, val_images: int | None = None,
                   train_images: int | None = None) -> tuple[ImageSet, ImageSet]:
    """(train, validation) drawn from `images` per class: `val_images` held out (default
    `default_held_out`), `train_images` from the rest (default all of it)."""
    total = len(images)
    if val_images is None and train_images is None and default_held_out(total) < images.num_classes:
        raise InputError(f"{images.name}: {total} images of {images.num_classes} classes are too few to hold out "
                         "a validation image per class and train on the rest; add images")
    val = default_held_out(total) if val_images is None else val_images
    if val < images.num_classes or val >= total:
        raise SettingError("proxy_val_images", f"must lie in [{images.num_classes}, {total - 1}] for "
                                               f"{total} images of {images.num_classes} classes, got {val}")
    train = total - val if train_images is None else train_images
    if train < 2 or train > total - val:
        raise SettingError("proxy_train_images", f"must lie in [2, {total - val}] ({total} images, {val} "
                                                 f"held out), got {train}")
    val_idx, train_idx = split_per_class(images.labels, (val, train), seed)
    return images.subset(train_idx), images.subset(val_idx)
