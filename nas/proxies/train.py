"""The `train` proxy: train a candidate for a few epochs at a small resolution, score its validation top-1.

Batches come from the data layer through `ProxyBatches`: uint8 images from a DataLoader whose worker
processes persist across candidates, normalised on the device. Every candidate sees the same images
in the same order with the same crops (drawn from the seed and the epoch), so scores differ only by
architecture. AdamW with a one-cycle schedule; BatchNorm parameters and biases get no weight decay.
Model and batches are channels_last (measured faster on CPU too, `effnet.nas.training.runtime`). On
CUDA batches are pinned and copied without blocking, the forward runs under bf16 autocast, and the
finite-loss check reads the device once per epoch instead of every step.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from effnet.nas.data.sources import DataSplits
from effnet.nas.net.model import build_model
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.proxies.batches import ProxyBatches
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.proxy import ProxyFailure
from effnet.nas.training.evaluate import top1_accuracy
from effnet.nas.training.precise_bn import recompute_batch_norm
from effnet.nas.training.runtime import autocast_for, cpu_threads, place_model, resolve_device

CALIBRATION_BATCHES = 8
"""Training batches whose statistics BatchNorm uses at each evaluation (`recompute_batch_norm`)."""


def proxy_network(spec: NetworkSpec, data: DataSplits) -> NetworkSpec:
    """The spec as the proxy builds it: the data's resolution, classes and channels."""
    return spec.replace(resolution=data.resolution, num_classes=data.num_classes, in_channels=data.in_channels)


@contextlib.contextmanager
def seeded_proxy_model(
    spec: NetworkSpec, data: DataSplits, runtime: ProxyRuntime
) -> Iterator[tuple[nn.Module, torch.device]]:
    """The proxy network built from the seed, and its device; inside, the thread limit holds and the
    random state is forked, so scoring a candidate neither reads nor moves the caller's generators."""
    device = resolve_device(runtime.device)
    forked = [device.index or 0] if device.type == "cuda" else []
    with cpu_threads(runtime.threads), torch.random.fork_rng(devices=forked):
        torch.manual_seed(runtime.seed)
        yield build_model(proxy_network(spec, data)), device


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv and linear weights only; BatchNorm scales/shifts and biases are left free."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    free = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": free, "weight_decay": 0.0}]


class TrainProxy:
    """Short AdamW + one-cycle training; `score` returns the last epoch's validation accuracy."""

    name = "train"

    def __init__(self, data: DataSplits, config: ProxyConfig, runtime: ProxyRuntime = ProxyRuntime()):
        self.data = data
        self.config = config
        self.runtime = runtime
        self.batches = ProxyBatches(data, config, runtime)

    def steps_per_epoch(self) -> int:
        return self.batches.steps_per_epoch()

    def score(
        self, spec: NetworkSpec, report: Callable[[int, float], None] | None = None, seed: int | None = None
    ) -> float:
        """Train `spec` and score it; `seed` (default the runtime's) seeds its weights, data order and crops."""
        seed = self.runtime.seed if seed is None else seed
        self.batches.sampler.seed = seed
        with seeded_proxy_model(spec, self.data, dataclasses.replace(self.runtime, seed=seed)) as (model, device):
            return self._train(model, device, report)

    def _train(self, model: nn.Module, device: torch.device, report: Callable[[int, float], None] | None) -> float:
        s = self.config
        model = place_model(model, device)
        steps = self.steps_per_epoch()
        optimizer = torch.optim.AdamW(parameter_groups(model, s.weight_decay), lr=s.lr)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=s.lr, total_steps=s.epochs * steps)
        losses = torch.empty(steps, device=device)
        check_every = 1 if device.type == "cpu" else steps  # a finite-loss check syncs a GPU
        autocast = autocast_for(device)
        accuracy = 0.0
        for epoch in range(1, s.epochs + 1):
            self.batches.sampler.set_epoch(epoch)
            calibration: list[torch.Tensor] = []
            model.train()
            for step, batch in zip(range(steps), self.batches.train_loader, strict=False):
                images = self.batches.normalize(batch.images)
                if len(calibration) < CALIBRATION_BATCHES:
                    calibration.append(images)
                labels = batch.labels.to(device, non_blocking=True)
                with autocast:
                    loss = F.cross_entropy(model(images), labels)
                losses[step] = loss.detach()
                if (step + 1) % check_every == 0:
                    check_finite(losses, step + 1 - check_every, step + 1, epoch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
            recompute_batch_norm(model, calibration, device)
            accuracy = top1_accuracy(
                model, ((self.batches.normalize(b.images), b.labels) for b in self.batches.val_loader), device
            )
            if report is not None:
                report(epoch, accuracy)
        return accuracy


def check_finite(losses: torch.Tensor, start: int, stop: int, epoch: int) -> None:
    """Raise `ProxyFailure` naming the first step of `losses[start:stop]` whose loss is not finite."""
    window = losses[start:stop]
    bad = (~torch.isfinite(window)).nonzero()
    if len(bad):
        step = start + int(bad[0]) + 1
        raise ProxyFailure(
            f"loss became NaN at epoch {epoch} step {step} (value {losses[step - 1].item()}); lower the learning rate"
        )
