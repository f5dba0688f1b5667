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


def resolve_data_path(path: str | os.PathLike[str]) -> Path:
    """The data folder's absolute path, links followed; a link that loops is an `InputError`."""
    try:
        return Path(path).expanduser().resolve()
    except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError on a loop, later ones OSError
        raise InputError(f"{path}: a symbolic link that loops; give the data folder itself") from None


def _entries(folder: Path) -> list[os.DirEntry]:
    """The folder's entries; one that cannot be listed (unreadable, a link that loops) is an `InputError`."""
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError as err:
        raise InputError(
            f"{folder}: cannot list the folder ({err.strerror or err}); make it readable or give another data folder"
        ) from None


def _is_class_folder(entry: os.DirEntry) -> bool:
    if entry.name.startswith("."):
        return False
    try:
        return entry.is_dir()
    except OSError as err:
        raise InputError(f"{entry.path}: cannot read it ({err.strerror or err}); fix or remove it") from None


def _is_image_file(entry: os.DirEntry) -> bool:
    """A non-hidden entry with an image suffix that is a file, or a link that leads to no file (dangling, looping)
    or an entry that cannot be looked at (no permission): listed, so that decoding it fails and names it like any
    other bad file rather than leaving it out unsaid."""
    if entry.name.startswith(".") or os.path.splitext(entry.name)[1].lower() not in IMAGE_SUFFIXES:
        return False
    try:
        return entry.is_file() or entry.is_symlink()
    except OSError:
        return True


def _class_folders(root: Path) -> dict[str, list[str]]:
    """Class name -> sorted image file names, for every non-hidden subfolder of `root`."""
    if not root.exists():
        raise InputError(f"{root}: no such data folder; give digits, synthetic or a path to an image folder")
    if not root.is_dir():
        raise InputError(f"{root}: not a directory; data is digits, synthetic or a folder of class folders")
    classes: dict[str, list[str]] = {}
    folders = sorted(e.name for e in _entries(root) if _is_class_folder(e))
    for name in folders:
        files = sorted(e.name for e in _entries(root / name) if _is_image_file(e))
        if not files:
            nested = any(e.is_dir() and not e.name.startswith(".") for e in _entries(root / name))
            where = "; its subfolders are not read: put the images directly in it" if nested else ""
            raise InputError(
                f"{root / name}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)}){where}; "
                "add images or remove the folder"
            )
        classes[name] = files
    if not classes:
        raise InputError(
            f"{root}: no class folders found; put images in {root}/<class>/ "
            f"or {root}/train/<class>/ and {root}/val/<class>/"
        )
    if len(classes) < 2:
        raise InputError(
            f"{root}: only one class ({next(iter(classes))}); a classifier needs at least two class folders"
        )
    return classes


def _image_set(name: str, root: Path, prefix: str, classes: dict[str, list[str]], names: list[str]) -> ImageSet:
    paths = [os.fsencode(os.path.join(prefix, c, f)) for c in names for f in classes[c]]
    labels = np.array([i for i, c in enumerate(names) for _ in classes[c]], dtype=np.int64)
    return ImageSet(name, tuple(names), labels, root=root, paths=np.array(paths, dtype=np.bytes_))


def index_folder(path: str | Path) -> tuple[ImageSet, ImageSet | None]:
    """The folder's training images and its validation images (None when it has no val/)."""
    root = resolve_data_path(path)
    train_dir, val_dir = root / "train", root / "val"
    if train_dir.is_dir() or val_dir.is_dir():
        if not (train_dir.is_dir() and val_dir.is_dir()):
            one = "train" if train_dir.is_dir() else "val"
            beside = sorted(
                p.name for p in root.iterdir() if p.is_dir() and p.name != one and not p.name.startswith(".")
            )
            named = (
                f"; if {one} is one of your classes (beside {', '.join(beside[:3])}), rename its folder: effnet reads "
                "train/ and val/ as the data's split; if those are splits, name the held-out one val/"
                if beside
                else ""
            )
            raise InputError(
                f"{root}: has only one of train/ and val/; add the other, "
                f"or put the class folders directly under the data folder{named}"
            )
        train, val = _class_folders(train_dir), _class_folders(val_dir)
        if set(train) != set(val):
            only_train = sorted(set(train) - set(val))
            only_val = sorted(set(val) - set(train))
            raise InputError(
                f"{root}: train/ and val/ hold different classes (only in train: "
                f"{', '.join(only_train) or '-'}; only in val: {', '.join(only_val) or '-'}); "
                "give both the same class folders"
            )
        names = sorted(train)
        return (_image_set(root.name, root, "train", train, names), _image_set(root.name, root, "val", val, names))
    classes = _class_folders(root)
    return _image_set(root.name, root, "", classes, sorted(classes)), None


def check_decodable(images: ImageSet, split: str = "") -> None:
    """Refuse a class none of whose files decodes (what training would otherwise skip, every epoch, without a
    word; or what validation would leave out of its accuracy): the first file of each class that decodes ends the
    look at it, so a healthy folder costs one decode per class. `split` names the folder's train/ or val/."""
    from effnet.nas.data.images import BadImage, decode_image

    for label, name in enumerate(images.classes):
        reason = "it holds no files"
        for index in np.flatnonzero(images.labels == label):
            try:
                decode_image(images.file(int(index)), draft=32).close()
                break
            except BadImage as err:
                reason = str(err)
        else:
            where = f"{split}/ " if split else ""
            raise InputError(
                f"{images.root}: {where}class {name!r} has no image that decodes ({reason}); fix or remove its files"
            )


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
        for c, n in zip(classes, np.minimum(whole, free), strict=True):
            chosen.append(shuffled[c][taken[c] : taken[c] + n])
            taken[c] += n
        parts.append(np.sort(np.concatenate(chosen)))
    return parts


def default_held_out(total: int) -> int:
    """The validation images held out of `total` by default: 20 %, rounded up, at most 50,000."""
    return min(MAX_HELD_OUT, math.ceil(VAL_FRACTION * total))


def held_out_split(
    images: ImageSet, seed: int, val_images: int | None = None, train_images: int | None = None
) -> tuple[ImageSet, ImageSet]:
    """(train, validation) drawn from `images` per class: `val_images` held out (default
    `default_held_out`), `train_images` from the rest (default all of it)."""
    total = len(images)
    if val_images is None and train_images is None and default_held_out(total) < images.num_classes:
        raise InputError(
            f"{images.name}: {total} images of {images.num_classes} classes are too few to hold out "
            "a validation image per class and train on the rest; add images"
        )
    val = default_held_out(total) if val_images is None else val_images
    if val < images.num_classes or val >= total:
        raise SettingError(
            "proxy_val_images",
            f"must lie in [{images.num_classes}, {total - 1}] for "
            f"{total} images of {images.num_classes} classes, got {val}",
        )
    train = total - val if train_images is None else train_images
    if train < 2 or train > total - val:
        raise SettingError(
            "proxy_train_images", f"must lie in [2, {total - val}] ({total} images, {val} held out), got {train}"
        )
    val_idx, train_idx = split_per_class(images.labels, (val, train), seed)
    return images.subset(train_idx), images.subset(val_idx)
