"""The built-in data sets, small enough to hold in memory as uint8 images at the size they are asked for.

- ``digits``: scikit-learn's bundled handwritten digits, 1,797 real 8x8 grey images in 10 classes,
  installed with the tool. Each is upsampled bilinearly to the requested size and repeated over
  three channels, so every spec with ``in_channels: 3`` trains on it unchanged.
- ``synthetic``: a tiny deterministic set for tests: class k brightens quadrant k (of 4) under noise,
  80 images per class.

Both go through the same data layer as image folders (`effnet.nas.data.loader`); being prepared at
their final size, their evaluation view is the image itself.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from effnet.nas.data.images import ArrayImages, ImageSet

BUILTIN_SOURCES = ("digits", "synthetic")
SYNTHETIC_CLASSES = 4
SYNTHETIC_PER_CLASS = 80


def _set(name: str, classes: tuple[str, ...], images: np.ndarray, labels: np.ndarray) -> ImageSet:
    return ImageSet(name, classes, labels.astype(np.int64), images=ArrayImages(array=np.ascontiguousarray(images)))


def digits(size: int) -> ImageSet:
    """All 1,797 digits at `size` pixels, uint8 (N, 3, size, size)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    grey = torch.from_numpy(data.images.astype(np.float32) / 16.0).unsqueeze(1)
    grey = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False)
    images = (grey * 255).round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).numpy()
    return _set("digits", tuple(str(d) for d in range(10)), images, data.target)


def synthetic(size: int, seed: int) -> ImageSet:
    """80 images per class, shuffled by `seed`; class k brightens quadrant k by 64 levels over noise of 32
    levels (standard deviation) around mid-grey."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(SYNTHETIC_CLASSES).repeat_interleave(SYNTHETIC_PER_CLASS)
    labels = labels[torch.randperm(len(labels), generator=generator)]
    images = 128 + 32 * torch.randn(len(labels), 3, size, size, generator=generator)
    half = max(1, size // 2)
    for k in range(SYNTHETIC_CLASSES):
        rows = slice(0, half) if k < 2 else slice(half, None)
        cols = slice(0, half) if k % 2 == 0 else slice(half, None)
        images[labels == k, :, rows, cols] += 64
    images = images.round().clamp(0, 255).to(torch.uint8).numpy()
    return _set("synthetic", tuple(f"quadrant{k}" for k in range(SYNTHETIC_CLASSES)), images, labels.numpy())
