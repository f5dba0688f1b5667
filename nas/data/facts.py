"""What a data source is like, known before any image is decoded: its class count and its images' median size.

The size is read from image headers only (PIL opens a file without decoding its pixels), on a seeded sample of
at most `SIZE_SAMPLE` files, so it costs milliseconds on any folder. It serves two decisions: the base network's
default resolution (`fitted_resolution`: never more than the images hold) and export-family's warning when a
family member asks for more pixels than the images have.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from effnet.nas import checks
from effnet.nas.data.builtin import (
    BUILTIN_SOURCES,
    DIGITS_CLASSES,
    SYNTHETIC_CLASSES,
    SYNTHETIC_PER_CLASS,
    SYNTHETIC_SIZE,
)
from effnet.nas.data.folder import index_folder
from effnet.nas.data.images import BadImage, ImageSet, open_image
from effnet.nas.errors import SettingError

SIZE_SAMPLE = 256
"""Files whose headers are read for the median image size (a seeded sample of the folder's training images)."""
RESOLUTION_STEP = 16
"""The derived resolution is a multiple of this (a whole number of 16-px cells, like 224 = 14 x 16)."""
MIN_FITTED_RESOLUTION = 32
"""The derived resolution is never below this (the shipped spaces' total stride: one pixel of final feature map)."""
MAX_UPSAMPLING = 8
"""A proxy resolution at most this many times the images' median short side: beyond it upsampling adds only cost
(a cache of 4096 px squares from 40 px images is 65 MiB an image)."""
RESOLUTION_RULE = (
    f"the search space's own resolution (224 px for the shipped spaces, ImageNet's), lowered for "
    f"an image folder to its median image short side rounded down to a multiple of "
    f"{RESOLUTION_STEP} (never below {MIN_FITTED_RESOLUTION} px); synthetic data: its 32 px; "
    "digits: the space's (its 8 px images are upsampled, as before)"
)


@dataclass(frozen=True)
class ImageSize:
    """The median width, height and short side of a sample of the source's images, in pixels."""

    width: int
    height: int
    short_side: int
    sampled: int
    """How many headers the medians are taken over."""

    def record(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "short_side": self.short_side, "sampled": self.sampled}

    @classmethod
    def from_record(cls, record: Any) -> ImageSize | None:
        """The size a spec's provenance recorded, or None where it holds none (or not in this form)."""
        if not isinstance(record, dict):
            return None
        values = [record.get(key) for key in ("width", "height", "short_side", "sampled")]
        counts = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 0]
        return cls(*counts) if len(counts) == len(values) else None


@dataclass(frozen=True)
class DataFacts:
    """A source's class count and (where it has one) its images' median size."""

    source: str
    classes: int
    image_size: ImageSize | None
    builtin: bool

    def record(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "classes": self.classes,
            "median_image_size": self.image_size.record() if self.image_size else None,
        }


def median_image_size(images: ImageSet, seed: int, sample: int = SIZE_SAMPLE) -> ImageSize | None:
    """Median size over the headers of at most `sample` of the files (drawn by `seed`); files that do not open
    are passed over (the data layer names them when it decodes). None when no file opens."""
    rng = np.random.default_rng([seed, 0x512E])
    count = len(images)
    picked = np.sort(rng.choice(count, size=min(sample, count), replace=False))
    widths, heights = [], []
    for index in picked:
        try:
            with open_image(images.file(int(index))) as image:
                width, height = image.size
        except BadImage:
            continue
        widths.append(width)
        heights.append(height)
    if not widths:
        return None
    return ImageSize(
        width=int(statistics.median_low(widths)),
        height=int(statistics.median_low(heights)),
        short_side=int(statistics.median_low(min(w, h) for w, h in zip(widths, heights, strict=True))),
        sampled=len(widths),
    )


def fitted_resolution(space_resolution: int, size: ImageSize | None) -> int:
    """The default resolution of a search's base network (`RESOLUTION_RULE`): the space's, capped by the images'
    median short side rounded down to a multiple of `RESOLUTION_STEP`, never below `MIN_FITTED_RESOLUTION`."""
    if size is None:
        return space_resolution
    cap = max(MIN_FITTED_RESOLUTION, size.short_side // RESOLUTION_STEP * RESOLUTION_STEP)
    return min(space_resolution, cap)


def data_facts(source: str, seed: int = 0) -> DataFacts:
    """The source's class count and median image size (a folder's training images, headers only; synthetic's own
    32 px; none for digits, whose 8 px images are always upsampled). Neither torch nor any pixel is loaded, so a
    search refuses what it must refuse in a moment; a missing or malformed folder is an `InputError`."""
    checks.instance("data", source, (str, os.PathLike), "digits, synthetic or the path of an image folder")
    if source in BUILTIN_SOURCES:
        if source == "digits":
            return DataFacts(source, DIGITS_CLASSES, None, builtin=True)
        side, count = SYNTHETIC_SIZE, SYNTHETIC_CLASSES * SYNTHETIC_PER_CLASS
        return DataFacts(source, SYNTHETIC_CLASSES, ImageSize(side, side, side, count), builtin=True)
    train, _ = index_folder(Path(source).expanduser())
    return DataFacts(train.name, train.num_classes, median_image_size(train, seed), builtin=False)


def check_proxy_resolution(resolution: int, size: ImageSize | None) -> None:
    """Refuse a proxy resolution more than `MAX_UPSAMPLING` times the images' median short side (a folder's; the
    built-in data has no `size` here)."""
    if size is None or resolution <= MAX_UPSAMPLING * size.short_side:
        return
    raise SettingError(
        "proxy_resolution",
        f"is {resolution} px, {resolution / size.short_side:.0f}x the data's median image short side "
        f"({size.short_side} px): upsampling adds no detail, only time, memory and cache; use at most "
        f"{MAX_UPSAMPLING * size.short_side} ({MAX_UPSAMPLING}x the images)",
    )
