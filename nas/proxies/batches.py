"""The batches a proxy learns and scores from, shared by the proxies that train (`train`, `supernet`).

uint8 images from DataLoaders over the proxy's splits, whose worker processes persist across candidates,
normalised on the device: the training split with the proxy's transforms (the order and crops drawn from
the seed and the epoch, `EpochSampler`), the validation split in its evaluation view, in training-sized
batches so that memory peaks in training whatever the size of the validation set.
"""

from __future__ import annotations

from effnet.nas.data.loader import EpochSampler, Normalize, TransformedImages, default_loader_workers, make_loader
from effnet.nas.data.sources import DataSplits
from effnet.nas.data.transforms import eval_transform, train_transform
from effnet.nas.errors import InputError
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.training.runtime import resolve_device


class ProxyBatches:
    """The proxy's loaders, their sampler (its `seed` and epoch choose the training order) and `normalize`."""

    def __init__(
        self, data: DataSplits, config: ProxyConfig, runtime: ProxyRuntime, sampler: EpochSampler | None = None
    ):
        if len(data.train) < 2:
            raise InputError("the training split needs at least two images")
        self.device = resolve_device(runtime.device)
        self.batch = min(config.batch_size, len(data.train))
        self.max_steps = config.max_train_batches
        self.images = len(data.train)
        workers = default_loader_workers(data.train) if runtime.loader_workers is None else runtime.loader_workers
        pin = self.device.type == "cuda"
        self.sampler = sampler or EpochSampler(len(data.train), seed=runtime.seed, shuffle=True)
        train = TransformedImages(data.train, train_transform(data.resolution, config.augmentation, data.stored))
        self.train_loader = make_loader(train, self.sampler, self.batch, workers, pin, drop_last=True)
        val = TransformedImages(data.val, eval_transform(data.resolution, data.stored))
        self.val_loader = make_loader(val, EpochSampler(len(data.val)), self.batch, workers, pin, drop_last=False)
        self.normalize = Normalize(self.device)

    def steps_per_epoch(self) -> int:
        """Whole batches of the training split, at most `max_train_batches`."""
        steps = self.images // self.batch
        return min(steps, self.max_steps) if self.max_steps else steps
