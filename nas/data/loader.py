"""Batches for training and evaluation: `torch.utils.data.DataLoader` over an `ImageSet`.

- `TransformedImages` decodes one image (or takes it from an array) and transforms it, in a
  DataLoader worker process; an image that cannot be decoded is reported (its path, in the batch's
  `skipped`), never trained on.
- `EpochSampler` yields `(seed, epoch, index)`: the order is a permutation drawn from (seed, epoch), cut
  into disjoint shards for the processes of a distributed run; with seed and epoch in every item, each
  image's random crop is drawn from (seed, epoch, index) alone, so a run is the same whatever the number
  of loader workers, a resumed run continues exactly, and one loader (its worker processes running on)
  serves trainings of several seeds.
- `make_loader` wires them with persistent worker processes, and pinned memory and prefetching on CUDA.
- `Normalize` moves a uint8 batch to the device and normalises it there (channels_last, float):
  images cross the process boundary and the bus as bytes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from effnet.nas.cpus import usable_cores
from effnet.nas.data.images import BadImage, ImageSet, decode_image
from effnet.nas.data.transforms import MEAN, STD, Transform

MEAN_RGB = tuple(m * 255 for m in MEAN)
STD_RGB = tuple(s * 255 for s in STD)
"""The TensorFlow reference's normalisation, on 0-255 pixel values."""


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch's CPU generator (where the transforms draw their crops, flips and operations, whatever device the
    image is on) at `seed` while the block runs, then its state as before: 2 us, where `torch.manual_seed`,
    which seeds every device, costs 70 us, as much as decoding a small JPEG."""
    generator = torch.random.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)


SampleKey = tuple[int, int, int]
"""(seed, epoch, index): which image, and the random state its view is drawn with."""


class TransformedImages(Dataset):
    """`(seed, epoch, index)` -> (uint8 image, label, problem): the image decoded (files) or read (arrays) and
    transformed with the random state of (seed, epoch, index); a file that does not decode gives an empty
    image, label -1 and the reason. `draft` lets a JPEG decoder shrink an image it will resize anyway."""

    def __init__(self, images: ImageSet, transform: Transform, draft: int | None = None):
        self.images = images
        self.transform = transform
        self.draft = draft

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: SampleKey) -> tuple[torch.Tensor, int, str | None]:
        seed, epoch, index = item
        label = int(self.images.labels[index])
        if self.images.images is not None:
            image: Any = torch.from_numpy(np.array(self.images.images.get()[index]))
        else:
            try:
                image = decode_image(self.images.file(index), self.draft)
            except BadImage as err:
                return torch.empty(0, dtype=torch.uint8), -1, str(err)
        with seeded(sample_seed(seed, epoch, index)):  # the caller's (or the worker's) random state untouched
            return self.transform(image), label, None


@dataclass
class Batch:
    images: torch.Tensor
    """uint8 (B, 3, r, r)."""
    labels: torch.Tensor
    skipped: list[str]
    """Why images of this batch were left out (each names its file)."""

    def pin_memory(self) -> Batch:
        return Batch(self.images.pin_memory(), self.labels.pin_memory(), self.skipped)


def collate(samples: list[tuple[torch.Tensor, int, str | None]]) -> Batch:
    kept = [(image, label) for image, label, problem in samples if problem is None]
    skipped = [problem for _, _, problem in samples if problem is not None]
    if not kept:
        return Batch(torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64), skipped)
    return Batch(
        torch.stack([image for image, _ in kept]),
        torch.tensor([label for _, label in kept], dtype=torch.int64),
        skipped,
    )


class EpochSampler(Sampler):
    """`(seed, epoch, index)` items: all indices in order, or a permutation of (seed, epoch); with `world` > 1,
    shard `rank` of it (the order truncated to a multiple of `world` when `even`, so every process takes as
    many steps; otherwise every index is in exactly one shard)."""

    def __init__(
        self, size: int, seed: int = 0, shuffle: bool = False, rank: int = 0, world: int = 1, even: bool = False
    ):
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world, self.even = rank, world, even
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> np.ndarray:
        order = (
            np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
            if self.shuffle
            else np.arange(self.size)
        )
        if self.even:
            order = order[: self.size - self.size % self.world]
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[SampleKey]:
        return iter([(self.seed, self.epoch, int(i)) for i in self.indices()])

    def __len__(self) -> int:
        return len(self.indices())


def default_loader_workers(images: ImageSet, processes: int = 1) -> int:
    """Loader workers per process: none for images in memory, else the cores this process's share allows
    (one left for the training itself), between 1 and 8."""
    if images.in_memory:
        return 0
    return max(1, min(8, usable_cores() // max(1, processes) - 1))


def make_loader(
    dataset: TransformedImages, sampler: EpochSampler, batch_size: int, workers: int, pin: bool, drop_last: bool
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin,
        drop_last=drop_last,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


class Normalize:
    """uint8 batch -> normalised float on `device`, channels_last, moved as bytes."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mean = torch.tensor(MEAN_RGB, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD_RGB, device=device).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).to(dtype=torch.float32, memory_format=torch.channels_last)
        return x.sub_(self.mean).div_(self.std)


# -- decoding on the device (nvjpeg on CUDA) -------------------------------------------------------


class EncodedImages(Dataset):
    """For decoding on the device: `(seed, epoch, index)` -> (payload, label, problem, item, encoded). A JPEG travels
    as its file's bytes (its header checked here, so a decompression bomb is still refused in the worker);
    any other file is decoded here as `TransformedImages` would. The device decodes and transforms."""

    def __init__(self, images: ImageSet):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: SampleKey) -> tuple[torch.Tensor, int, str | None, SampleKey, bool]:
        from torchvision.transforms.v2.functional import pil_to_tensor

        from effnet.nas.data.images import open_image

        index = item[2]
        label, path = int(self.images.labels[index]), self.images.file(index)
        try:
            with open_image(path) as image:
                jpeg = image.format == "JPEG"
            payload = (
                torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
                if jpeg
                else pil_to_tensor(decode_image(path))
            )
        except (BadImage, OSError) as err:
            return torch.empty(0, dtype=torch.uint8), -1, str(err), item, False
        return payload, label, None, item, jpeg


@dataclass
class EncodedBatch:
    payloads: list[torch.Tensor]
    labels: torch.Tensor
    items: list[SampleKey]
    encoded: list[bool]
    skipped: list[str]

    def pin_memory(self) -> EncodedBatch:
        return self


def collate_encoded(samples: list) -> EncodedBatch:
    kept = [s for s in samples if s[2] is None]
    return EncodedBatch(
        [s[0] for s in kept],
        torch.tensor([s[1] for s in kept], dtype=torch.int64),
        [s[3] for s in kept],
        [s[4] for s in kept],
        [s[2] for s in samples if s[2] is not None],
    )


class DeviceDecoder:
    """An `EncodedBatch` -> uint8 (B, 3, r, r) on `device`: JPEGs decoded together in one call (nvjpeg on CUDA),
    then each image transformed on the device with the random state of (seed, epoch, index), as the CPU path
    draws it. A batch the device cannot decode (a CMYK JPEG, say) is decoded image by image on the CPU.

    torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec's (which need FFmpeg's
    libraries on the machine); `torchvision.io.decode_jpeg` is still the batched nvjpeg call of the
    torchvision this project pins, so the warning is silenced here, around that call alone."""

    def __init__(self, images: ImageSet, transform: Transform, device: torch.device):
        self.images, self.transform, self.device = images, transform, device

    def __call__(self, batch: EncodedBatch) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        from torchvision.io import ImageReadMode, decode_jpeg

        jpegs = [p for p, encoded in zip(batch.payloads, batch.encoded, strict=True) if encoded]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                decoded = iter(
                    decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=self.device, apply_exif_orientation=True)
                    if jpegs
                    else []
                )
            except RuntimeError:
                decoded = iter([self._one_on_cpu(jpeg) for jpeg in jpegs])
        views, labels, skipped = [], [], list(batch.skipped)
        for payload, encoded, label, (seed, epoch, index) in zip(
            batch.payloads, batch.encoded, batch.labels, batch.items, strict=True
        ):
            image = next(decoded) if encoded else payload.to(self.device, non_blocking=True)
            if isinstance(image, str):
                skipped.append(f"{self.images.file(index)}: cannot read the image ({image})")
                continue
            with seeded(sample_seed(seed, epoch, index)):
                views.append(self.transform(image))
            labels.append(label)
        if not views:
            return torch.empty(0, dtype=torch.uint8, device=self.device), torch.empty(0, dtype=torch.int64), skipped
        return torch.stack(views), torch.stack(labels), skipped

    def _one_on_cpu(self, jpeg: torch.Tensor) -> torch.Tensor | str:
        """One JPEG decoded on the CPU and moved to the device, or why it cannot be."""
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            return decode_jpeg(jpeg, mode=ImageReadMode.RGB, apply_exif_orientation=True).to(self.device)
        except RuntimeError as err:
            return " ".join(str(err).split())[:160]
