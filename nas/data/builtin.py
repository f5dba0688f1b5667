"""The built-in data sets: small square uint8 images held in memory at their own size.

- ``digits``: scikit-learn's bundled handwritten digits, 1,797 real 8x8 grey images in 10 classes,
  installed with the tool, repeated over three channels, so every spec with ``in_channels: 3`` trains
  on them unchanged.
- ``synthetic``: a tiny deterministic set for tests: class k brightens quadrant k (of 4) under noise,
  80 images of 32 x 32 per class.

Both go through the same data layer as image folders (`effnet.nas.data.loader`); stored `square`, each
view resizes them to the resolution asked for (digits upsampled bilinearly), so memory stays the size
of the set whatever the resolution.
"""

from __future__ import annotations

import numpy as np

from effnet.nas.data.images import ArrayImages, ImageSet

BUILTIN_SOURCES = ("digits", "synthetic")
DIGITS_CLASSES = 10
SYNTHETIC_CLASSES = 4
SYNTHETIC_PER_CLASS = 80
SYNTHETIC_SIZE = 32


def _set(name: str, classes: tuple[str, ...], images: np.ndarray, labels: np.ndarray) -> ImageSet:
    return ImageSet(name, classes, labels.astype(np.int64), images=ArrayImages(array=np.ascontiguousarray(images)))


def digits() -> ImageSet:
    """All 1,797 digits, uint8 (N, 3, 8, 8): scikit-learn's 0-16 grey levels scaled to 0-255."""
    from sklearn.datasets import load_digits

    data = load_digits()
    grey = np.round(data.images * (255 / 16)).astype(np.uint8)[:, None]
    return _set("digits", tuple(str(d) for d in range(DIGITS_CLASSES)), np.repeat(grey, 3, axis=1), data.target)


def synthetic(seed: int, size: int = SYNTHETIC_SIZE) -> ImageSet:
    """80 images per class, shuffled by `seed`; class k brightens quadrant k by 64 levels over noise of 32
    levels (standard deviation) around mid-grey."""
    import torch  # here, so the data's facts (class count, size) are known without loading torch

    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(SYNTHETIC_CLASSES).repeat_interleave(SYNTHETIC_PER_CLASS)
    labels = labels[torch.randperm(len(labels), generator=generator)]
    images = 128 + 32 * torch.randn(len(labels), 3, size, size, generator=generator)
    half = max(1, size // 2)
    for k in range(SYNTHETIC_CLASSES):
        rows = slice(0, half) if k < 2 else slice(half, None)
        cols = slice(0, half) if k % 2 == 0 else slice(half, None)
        images[labels == k, :, rows, cols] += 64
    pixels = images.round().clamp(0, 255).to(torch.uint8).numpy()
    return _set("synthetic", tuple(f"quadrant{k}" for k in range(SYNTHETIC_CLASSES)), pixels, labels.numpy())
