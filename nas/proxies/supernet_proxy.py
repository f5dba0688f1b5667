"""The `supernet` proxy: a candidate scored with the weights it inherits from the trained supernet.

For each candidate: the builder's network of its spec holding its path's weights (`Supernet.standalone`),
BatchNorm statistics recomputed on the same few training batches for every candidate (the precise BN of the
`train` proxy: the supernet's shared running statistics describe no path in particular), then validation
top-1. No gradient step is taken and the supernet is left as it is. The calibration and validation images are
read once and kept (on the device, on CUDA) and scored in batches of at least `SCORING_BATCH[device]` images:
on CUDA, enough to keep the device busy at proxy sizes, where a training batch would leave it idle.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from effnet.nas.data.sources import DataSplits
from effnet.nas.errors import InputError
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.proxies.batches import ProxyBatches
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.supernet_training import SupernetSetup, load_supernet
from effnet.nas.proxies.train import CALIBRATION_BATCHES
from effnet.nas.training.evaluate import top1_accuracy
from effnet.nas.training.precise_bn import recompute_batch_norm
from effnet.nas.training.runtime import cpu_threads, place_model

SCORING_BATCH = {"cuda": 1024}
"""Images per forward when scoring, by device type (elsewhere the proxy's batch size)."""


class SupernetProxy:
    """Scores candidates of the space with the supernet trained for `setup` (`train_supernet`), BatchNorm
    statistics recomputed on `calibration_batches` training batches (the `train` proxy's count by default)."""

    name = "supernet"

    def __init__(
        self,
        data: DataSplits,
        config: ProxyConfig,
        runtime: ProxyRuntime,
        setup: SupernetSetup,
        calibration_batches: int = CALIBRATION_BATCHES,
    ):
        self.runtime = runtime
        batches = ProxyBatches(data, config, runtime)
        self.device = batches.device
        self.normalize = batches.normalize
        self.supernet = place_model(load_supernet(setup, config, data, runtime.seed), self.device)
        size = max(batches.batch, SCORING_BATCH.get(self.device.type, 0))
        batches.sampler.set_epoch(0)  # views no training epoch (1 ... supernet_epochs) drew
        calibration = [b.images for _, b in zip(range(calibration_batches), batches.train_loader, strict=False)]
        self.calibration = torch.cat(calibration).to(self.device).split(size)
        val = [(b.images, b.labels) for b in batches.val_loader]
        self.val = list(
            zip(
                torch.cat([x for x, _ in val]).to(self.device).split(size),
                torch.cat([y for _, y in val]).split(size),
                strict=True,
            )
        )

    def score(
        self, spec: NetworkSpec, report: Callable[[int, float], None] | None = None, seed: int | None = None
    ) -> float:
        """Validation top-1 of `spec` with its inherited weights; `seed` must be the one the supernet was trained
        with (its weights are that seed's)."""
        if seed is not None and seed != self.runtime.seed:
            raise InputError(f"the supernet was trained with seed {self.runtime.seed}, not {seed}")
        with cpu_threads(self.runtime.threads):
            model = place_model(self.supernet.standalone(spec), self.device)
            recompute_batch_norm(model, (self.normalize(x) for x in self.calibration), self.device)
            return top1_accuracy(model, ((self.normalize(x), y) for x, y in self.val), self.device)
