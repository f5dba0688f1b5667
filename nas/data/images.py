"""Labelled images, not decoded: an image folder's files, or an array of uint8 images (built-in data, a cache).

An `ImageSet` holds labels and either file paths relative to a root or a uint8 array (N, 3, H, W),
in memory or memory-mapped read-only from a cache file (opened lazily in each process that reads it,
so a DataLoader worker never receives a copy). Paths are one numpy bytes array, not a Python list:
a million paths cost tens of MB and reading them in forked workers copies nothing.

`decode_image` turns one file into a uint8 RGB image the way a user means it: grayscale and palette
images expanded, CMYK converted, 16-bit images scaled to 8 bits (not clipped), EXIF orientation
applied, and a decompression bomb or an extreme strip refused from its header before any pixel is
decoded. A file that cannot be read raises `BadImage` naming it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_PIXELS = 64_000_000
"""Largest image accepted (width x height): a 64-megapixel photo; beyond it a file is taken for a
decompression bomb (a few KB that would decode to gigabytes)."""
MAX_ASPECT = 100
"""Largest ratio of an image's long side to its short one: resizing the short side of a 1 x 1,000,000 strip
(a 3 KB PNG, well under `MAX_PIXELS`) to 16 px makes 16,000,000 x 16. With it and `MAX_PIXELS`, no side
exceeds 80,000 px and no resize to a short side of s px exceeds 100 s² pixels."""


class BadImage(Exception):
    """A file that does not decode to an image; the message names the file and why."""


@dataclass(frozen=True)
class ArrayImages:
    """uint8 images (N, 3, H, W): in memory (`array`) or in a .npy file memory-mapped read-only (`path`)."""

    array: np.ndarray | None = None
    path: Path | None = None
    _opened: dict[int, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def get(self) -> np.ndarray:
        if self.array is not None:
            return self.array
        pid = os.getpid()  # a memory map is opened once per process, never pickled across
        assert self.path is not None, "ArrayImages holds an array or the path of one"
        if pid not in self._opened:
            self._opened.clear()
            self._opened[pid] = np.load(self.path, mmap_mode="r")
        return self._opened[pid]

    def __getstate__(self) -> dict[str, Any]:
        return {"array": self.array, "path": self.path, "_opened": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)


@dataclass(frozen=True)
class ImageSet:
    """Labelled images: files under `root` (`paths`, relative, as bytes) or `images` (uint8 arrays)."""

    name: str
    classes: tuple[str, ...]
    labels: np.ndarray
    root: Path | None = None
    paths: np.ndarray | None = None
    images: ArrayImages | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_memory(self) -> bool:
        """Held as an array in this process (the built-in data), not files or a memory-mapped cache."""
        return self.images is not None and self.images.array is not None

    def file(self, index: int) -> Path:
        assert self.root is not None and self.paths is not None, "only a set of files has files"
        return self.root / os.fsdecode(self.paths[index])

    def subset(self, indices: np.ndarray) -> ImageSet:
        """The images at `indices` (files only: an array set is subset by building a cache of it)."""
        if self.images is not None:
            array = self.images.get()
            return ImageSet(
                self.name,
                self.classes,
                self.labels[indices],
                images=ArrayImages(array=np.ascontiguousarray(array[indices])),
            )
        assert self.paths is not None, "an ImageSet holds arrays or files"
        return ImageSet(self.name, self.classes, self.labels[indices], root=self.root, paths=self.paths[indices])


# -- decoding -------------------------------------------------------------------------------------


def open_image(path: Path) -> Any:
    """The PIL image of `path`, header read but no pixels decoded; a bomb or an unreadable file is `BadImage`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError:
        raise BadImage(f"{path}: too many pixels to decode safely (a decompression bomb?)") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise BadImage(f"{path}: cannot read the image ({_reason(err)})") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise BadImage(
            f"{path}: {width}x{height} pixels is over the {MAX_PIXELS:,}-pixel limit "
            "(a decompression bomb?); shrink or remove it"
        )
    if min(width, height) < 1 or max(width, height) > MAX_ASPECT * min(width, height):
        image.close()
        raise BadImage(
            f"{path}: {width}x{height} pixels is a strip more than {MAX_ASPECT} times longer than "
            "wide (resizing it would take gigabytes); crop or remove it"
        )
    return image


def to_rgb(image: Any) -> Any:
    """8-bit RGB, as the picture looks: 16-bit greys scaled (not clipped), EXIF orientation applied."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        wide = np.asarray(image).astype(np.int64)
        grey = (np.clip(wide, 0, 65535) >> 8).astype(np.uint8)  # 16-bit to 8-bit: the high byte
        return Image.fromarray(grey).convert("RGB")
    if image.mode == "F":
        raise ValueError("floating-point images are not supported")
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_image(path: Path, draft: int | None = None) -> Any:
    """The image at `path` as an 8-bit RGB PIL image. `draft` (JPEG only) lets the decoder shrink the image
    by a power of two while keeping both sides at least `draft` pixels: faster when it is resized smaller."""
    with open_image(path) as image:
        try:
            if draft is not None and image.format == "JPEG":
                scale = min(image.size) / draft
                if scale >= 2:
                    image.draft("RGB", (image.size[0] / scale, image.size[1] / scale))
            rgb = to_rgb(image)
            rgb.load()
            return rgb
        except (OSError, ValueError, SyntaxError) as err:
            raise BadImage(f"{path}: cannot read the image ({_reason(err)})") from None


def _reason(err: Exception) -> str:
    """Why a file did not decode, in one short line: an operating system's error by its own words (the message
    names the path already), anything else as the library says it."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        return err.strerror
    return " ".join(str(err).split())[:160] or type(err).__name__
