"""Per-image transforms (torchvision's `transforms.v2`), as the reference trains and evaluates.

Every transform takes a decoded image (a PIL image from a file, or a uint8 (3, H, W) tensor from an
array) and returns a uint8 (3, r, r) tensor: images travel as bytes and are normalised on the device.

- evaluation: resize the short side to round(r / 0.875) and take the centre r x r (at 224 px this is
  the TensorFlow reference's crop, 224 / (224 + 32) = 0.875), bicubic as the reference resizes; an
  image is never squashed to a square. How images are stored decides what is left to do (`STORED`):
  `files` get all of it; a cache holds them `prepared` (`prepare_transform`: short side resized, centre
  square), so only the centre crop is left; the built-in sets are small `square` images (8 x 8 digits),
  resized to r x r (upsampled bilinearly as the digits always were), which no crop would leave whole.
- training, `--augment`: `none` is the evaluation view; `light` is RandomResizedCrop (scale 0.08-1,
  aspect ratio 3/4-4/3) and a horizontal flip; `paper` adds AutoAugment's ImageNet policy (Cubuk et
  al. 2019) as the EfficientNet paper trained, filling with grey 128 as the TensorFlow reference does.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torchvision.transforms import v2

AUGMENTS = ("none", "light", "paper")
STORED = ("files", "prepared", "square")
EVAL_CROP = 0.875
FILL = 128
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
BICUBIC = v2.InterpolationMode.BICUBIC

Transform = Callable[[Any], torch.Tensor]


def eval_size(resolution: int) -> int:
    """The short side an image is resized to before its centre r x r is taken."""
    return int(round(resolution / EVAL_CROP))


class _Uint8Tensor:
    """The steps, then a plain uint8 (3, H, W) tensor (picklable, for any DataLoader start method)."""

    def __init__(self, steps: list):
        self.compose = v2.Compose([*steps, v2.ToImage(), v2.ToDtype(torch.uint8, scale=True)])

    def __call__(self, image: Any) -> torch.Tensor:
        return self.compose(image).as_subclass(torch.Tensor)


def _as_tensor(steps: list) -> Transform:
    return _Uint8Tensor(steps)


def prepare_transform(size: int) -> Transform:
    """What an array of prepared images stores: short side resized to `size`, the centre `size` square."""
    return _as_tensor([v2.Resize(size, interpolation=BICUBIC, antialias=True), v2.CenterCrop(size)])


def eval_transform(resolution: int, stored: str) -> Transform:
    """The evaluation view at `resolution` of images `stored` as files, prepared or square (see `STORED`)."""
    if stored == "prepared":
        return _as_tensor([v2.CenterCrop(resolution)])
    if stored == "square":
        return _as_tensor([v2.Resize((resolution, resolution), interpolation=v2.InterpolationMode.BILINEAR,
                                     antialias=True)])
    return _as_tensor([v2.Resize(eval_size(resolution), interpolation=BICUBIC, antialias=True),
                       v2.CenterCrop(resolution)])


def train_transform(resolution: int, augment: str, stored: str) -> Transform:
    """The training view at `resolution` under `augment` (none, light, paper) of images `stored` as files,
    prepared or square."""
    if augment == "none":
        return eval_transform(resolution, stored)
    steps: list = [v2.RandomResizedCrop(resolution, scale=RRC_SCALE, ratio=RRC_RATIO, interpolation=BICUBIC,
                                        antialias=True),
                   v2.RandomHorizontalFlip()]
    if augment == "paper":
        steps.append(v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, fill=FILL))
    return _as_tensor(steps)
