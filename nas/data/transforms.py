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

`EvalView` is the evaluation view as data (resize, crop, interpolation, mean, std): what a checkpoint and an
exported file record, so that `normalised_transform` prepares an image for the trained network exactly as
its validation images were prepared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms import v2

from effnet.nas.errors import InputError

AUGMENTS = ("none", "light", "paper")
STORED = ("files", "prepared", "square")
EVAL_CROP = 0.875
FILL = 128
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
BICUBIC = v2.InterpolationMode.BICUBIC
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
"""The TensorFlow reference's normalisation of RGB values in [0, 1] (ImageNet's channel means and deviations)."""
INTERPOLATIONS = {"bicubic": BICUBIC, "bilinear": v2.InterpolationMode.BILINEAR}

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


@dataclass(frozen=True)
class EvalView:
    """How an image becomes a network's input: its short side resized to `resize` (`interpolation`, antialiased),
    the centre `crop` x `crop` taken, RGB values scaled to [0, 1] and normalised by `mean` and `std`."""

    resize: int
    crop: int
    interpolation: str
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD

    def as_dict(self) -> dict[str, Any]:
        return {
            "resize": self.resize,
            "crop": self.crop,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> EvalView:
        """The view a file recorded (`as_dict`); anything else is an `InputError` naming `where`."""
        try:
            mean: Any = tuple(float(v) for v in data["mean"])  # three values each, checked below
            std: Any = tuple(float(v) for v in data["std"])
            view = cls(int(data["resize"]), int(data["crop"]), str(data["interpolation"]), mean, std)
        except (KeyError, TypeError, ValueError):
            raise InputError(
                f"{where}: the recorded transform is not resize, crop, interpolation, mean and std; "
                "export the model again with this effnet"
            ) from None
        if (
            view.interpolation not in INTERPOLATIONS
            or not 1 <= view.crop <= view.resize
            or len(view.mean) != 3
            or len(view.std) != 3
            or min(view.std) <= 0
        ):
            raise InputError(
                f"{where}: the recorded transform {view.as_dict()} is not one effnet writes; export "
                "the model again with this effnet"
            )
        return view

    def steps(self) -> list:
        """The resize and the crop (uint8 in, uint8 out)."""
        return [
            v2.Resize(self.resize, interpolation=INTERPOLATIONS[self.interpolation], antialias=True),
            v2.CenterCrop(self.crop),
        ]


def eval_view(resolution: int, stored: str) -> EvalView:
    """The evaluation view at `resolution` of images `stored` as files, prepared or square, as a user's image file
    gets it: for files and prepared caches the reference's resize and crop; for the small square built-in images
    the bilinear resize to r x r (short side to r, so the crop takes the whole of a square)."""
    if stored == "square":
        return EvalView(resolution, resolution, "bilinear")
    return EvalView(eval_size(resolution), resolution, "bicubic")


def eval_transform(resolution: int, stored: str) -> Transform:
    """The evaluation view at `resolution` of images `stored` as files, prepared or square (see `STORED`)."""
    if stored == "prepared":
        return _as_tensor([v2.CenterCrop(resolution)])
    return _as_tensor(eval_view(resolution, stored).steps())


class _Normalised:
    """A view's steps, then float32 scaled to [0, 1] and normalised: a decoded image in, the network's input out.
    The steps run on the image as given (a PIL image is resized by PIL, as training's evaluation resizes it)."""

    def __init__(self, view: EvalView):
        self.compose = v2.Compose(
            [
                *view.steps(),
                v2.ToImage(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(list(view.mean), list(view.std)),
            ]
        )

    def __call__(self, image: Any) -> torch.Tensor:
        return self.compose(image).as_subclass(torch.Tensor)


def normalised_transform(view: EvalView) -> Transform:
    """An RGB image (PIL, or a uint8 (3, H, W) tensor) -> the float32 (3, crop, crop) input a network trained
    with `view` evaluates on."""
    return _Normalised(view)


def train_transform(resolution: int, augment: str, stored: str) -> Transform:
    """The training view at `resolution` under `augment` (none, light, paper) of images `stored` as files,
    prepared or square."""
    if augment == "none":
        return eval_transform(resolution, stored)
    steps: list = [
        v2.RandomResizedCrop(resolution, scale=RRC_SCALE, ratio=RRC_RATIO, interpolation=BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(),
    ]
    if augment == "paper":
        steps.append(v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, fill=FILL))
    return _as_tensor(steps)
