"""The batches one training process sees in an epoch: its shard of the training images, its share of the
validation images, and the first training batches kept to recompute BatchNorm statistics with."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from effnet.nas.data.loader import (
    DeviceDecoder,
    EncodedImages,
    EpochSampler,
    Normalize,
    TransformedImages,
    collate_encoded,
    default_loader_workers,
    make_loader,
)
from effnet.nas.data.sources import DataSplits
from effnet.nas.data.transforms import eval_transform, train_transform
from effnet.nas.errors import InputError
from effnet.nas.training.distributed import Distributed
from effnet.nas.training.recipe import Recipe


class TrainingBatches:
    """This process's batches: its shard of each epoch's training images (random views of (seed, epoch,
    image)), its share of the validation images, and the first training batches of the epoch kept
    (normalised, on the device) to recompute BatchNorm statistics with."""

    def __init__(
        self,
        data: DataSplits,
        recipe: Recipe,
        dist: Distributed,
        device: torch.device,
        workers: int | None,
        decode: str = "workers",
    ):
        self.local_batch = recipe.batch_size // dist.world_size
        workers = default_loader_workers(data.train) if workers is None else workers
        pin = device.type == "cuda"
        self.sampler = EpochSampler(
            len(data.train), recipe.seed, shuffle=True, rank=dist.rank, world=dist.world_size, even=True
        )
        transform = train_transform(data.resolution, recipe.augment, data.stored)
        self.device_decoder: DeviceDecoder | None = None
        if decode == "device" and not data.train.in_memory:
            self.device_decoder = DeviceDecoder(data.train, transform, device)
            self.train = DataLoader(
                EncodedImages(data.train),
                batch_size=self.local_batch,
                sampler=self.sampler,
                num_workers=workers,
                collate_fn=collate_encoded,
                drop_last=True,
                persistent_workers=workers > 0,
                prefetch_factor=4 if workers > 0 else None,
            )
        else:
            train = TransformedImages(data.train, transform)
            self.train = make_loader(train, self.sampler, self.local_batch, workers, pin, drop_last=True)
        val = TransformedImages(data.val, eval_transform(data.resolution, data.stored))
        # evaluated in training-sized batches: memory peaks in training, whatever the size of the validation set
        self.val = make_loader(
            val,
            EpochSampler(len(data.val), rank=dist.rank, world=dist.world_size),
            self.local_batch,
            workers,
            pin,
            drop_last=False,
        )
        self.normalize = Normalize(device)
        self.skipped: dict[str, None] = {}
        """Files left out, each once however many passes met it (a dict as an ordered set)."""
        self.skipped_val: dict[str, None] = {}
        """Those of them from the validation split."""

    def epoch(self, epoch: int, steps: int, keep: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's training batches, normalised on the device; the first `keep` are kept (as the uint8
        pixels they came as, a quarter of the normalised float32) for `calibration_batches`."""
        self.sampler.set_epoch(epoch)
        self.calibration: list[torch.Tensor] = []
        for _, batch in zip(range(steps), self.train, strict=False):
            if self.device_decoder is not None:
                pixels, labels, skipped = self.device_decoder(batch)
            else:
                pixels, labels, skipped = batch.images, batch.labels, batch.skipped
            self.skipped.update(dict.fromkeys(skipped))
            if not len(labels):
                raise InputError(
                    f"a whole batch of training images did not decode ({skipped[0]}, ...); fix or remove the files"
                )
            if len(self.calibration) < keep:
                self.calibration.append(pixels)
            yield self.normalize(pixels), labels

    def calibration_batches(self) -> Iterator[torch.Tensor]:
        return (self.normalize(pixels) for pixels in self.calibration)

    def validation(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The validation batches, normalised on the device; a batch none of whose files decoded is passed over
        (its files are in `skipped`)."""
        for batch in self.val:
            self.skipped.update(dict.fromkeys(batch.skipped))
            self.skipped_val.update(dict.fromkeys(batch.skipped))
            if len(batch.labels):
                yield self.normalize(batch.images), batch.labels
