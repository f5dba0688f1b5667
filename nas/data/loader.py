"""Batches for training and evaluation: `torch.utils.data.DataLoader` over an `ImageSet`.

- `TransformedImages` decodes one image (or takes it from an array) and transforms it, in a
  DataLoader worker process; an image that cannot be decoded is reported (its path, in the batch's
  `skipped`), never trained on.
- `EpochSampler` yields `(epoch, index)`: the order is a permutation drawn from (seed, epoch), cut into
  disjoint shards for the processes of a distributed run; with the epoch in every item, each image's
  random crop is drawn from (seed, epoch, index) alone, so a run is the same whatever the number of
  loader workers, and a resumed run continues exactly.
- `make_loader` wires them with persistent worker processes, and pinned memory and prefetching on CUDA.
- `Normalize` moves a uint8 batch to the device and normalises it there (channels_last, float):
  images cross the process boundary and the bus as bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from effnet.nas.data.images import BadImage, ImageSet, decode_image
from effnet.nas.data.transforms import Transform

MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
"""The TensorFlow reference's normalisation, on 0-255 pixel values."""


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class TransformedImages(Dataset):
    """`(epoch, index)` -> (uint8 image, label, problem): the image decoded (files) or read (arrays) and
    transformed with the random state of (seed, epoch, index); a file that does not decode gives an empty
    image, label -1 and the reason. `draft` lets a JPEG decoder shrink an image it will resize anyway."""

    def __init__(self, images: ImageSet, transform: Transform, seed: int, draft: int | None = None):
        self.images = images
        self.transform = transform
        self.seed = seed
        self.draft = draft

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int, str | None]:
        epoch, index = item
        label = int(self.images.labels[index])
        if self.images.images is not None:
            image: Any = torch.from_numpy(np.array(self.images.images.get()[index]))
        else:
            try:
                image = decode_image(self.images.file(index), self.draft)
            except BadImage as err:
                return torch.empty(0, dtype=torch.uint8), -1, str(err)
        with torch.random.fork_rng(devices=[]):  # the caller's (or the worker's) random state untouched
            torch.manual_seed(sample_seed(self.seed, epoch, index))
            return self.transform(image), label, None


@dataclass
class Batch:
    images: torch.Tensor
    """uint8 (B, 3, r, r)."""
    labels: torch.Tensor
    skipped: list[str]
    """Why images of this batch were left out (each names its file)."""

    def pin_memory(self) -> "Batch":
        return Batch(self.images.pin_memory(), self.labels.pin_memory(), self.skipped)


def collate(samples: list[tuple[torch.Tensor, int, str | None]]) -> Batch:
    kept = [(image, label) for image, label, problem in samples if problem is None]
    skipped = [problem for _, _, problem in samples if problem is not None]
    if not kept:
        return Batch(torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64), skipped)
    return Batch(torch.stack([image for image, _ in kept]),
                 torch.tensor([label for _, label in kept], dtype=torch.int64), skipped)


class EpochSampler(Sampler):
    """`(epoch, index)` items: all indices in order, or a permutation of (seed, epoch); with `world` > 1,
    shard `rank` of it (the order truncated to a multiple of `world` when `even`, so every process takes as
    many steps; otherwise every index is in exactly one shard)."""

    def __init__(self, size: int, seed: int = 0, shuffle: bool = False, rank: int = 0, world: int = 1,
                 even: bool = False):
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world, self.even = rank, world, even
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> np.ndarray:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.size) if self.shuffle
                 else np.arange(self.size))
        if self.even:
            order = order[: self.size - self.size % self.world]
        return order[self.rank::self.world]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, int(i)) for i in self.indices()])

    def __len__(self) -> int:
        return len(self.indices())


def default_loader_workers(images: ImageSet, processes: int = 1) -> int:
    """Loader workers per process: none for images in memory, else the cores this process's share allows
    (one left for the training itself), between 1 and 8."""
    if images.in_memory:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(8, cores // max(1, processes) - 1))


def make_loader(dataset: TransformedImages, sampler: EpochSampler, batch_size: int, workers: int, pin: bool,
                drop_last: bool) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
                      pin_memory=pin, drop_last=drop_last, persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None)


class Normalize:
    """uint8 batch -> normalised float on `device`, channels_last, moved as bytes."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mean = torch.tensor(MEAN_RGB, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD_RGB, device=device).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).to(dtype=torch.float32, memory_format=torch.channels_last)
        return x.sub_(self.mean).div_(self.std)
