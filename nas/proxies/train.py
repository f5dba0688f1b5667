"""The `train` proxy: train a candidate for a few epochs at a small resolution, score its validation top-1.

The whole dataset lives in memory as tensors; one epoch is a seeded permutation gathered once into
a contiguous buffer and cut into batches, so no per-step host work remains but the step itself.
AdamW with a one-cycle schedule; BatchNorm parameters and biases get no weight decay. Model and
batches are channels_last (measured faster on CPU too, `effnet.nas.training.runtime`). On CUDA the epoch
buffer is pinned and copied with non_blocking, the forward runs under bf16 autocast, and the
finite-loss check reads the device once per epoch instead of every step.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from effnet.nas.data.sources import ImageData
from effnet.nas.errors import InputError
from effnet.nas.net.model import build_model
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.proxies import ProxyConfig, ProxyFailure, ProxyRuntime
from effnet.nas.training.evaluate import top1_accuracy
from effnet.nas.training.precise_bn import recompute_batch_norm
from effnet.nas.training.runtime import autocast_for, cpu_threads, place_batch, place_model, resolve_device

CALIBRATION_BATCHES = 8
"""Training batches whose statistics BatchNorm uses at each evaluation (`recompute_batch_norm`)."""


def proxy_network(spec: NetworkSpec, data: ImageData) -> NetworkSpec:
    """The spec as the proxy builds it: the data's resolution, classes and channels."""
    return spec.replace(resolution=data.resolution, num_classes=data.num_classes, in_channels=data.in_channels)


@contextlib.contextmanager
def seeded_proxy_model(spec: NetworkSpec, data: ImageData,
                       runtime: ProxyRuntime) -> Iterator[tuple[nn.Module, torch.device]]:
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

    def __init__(self, data: ImageData, config: ProxyConfig, runtime: ProxyRuntime = ProxyRuntime()):
        if len(data.train_y) < 2:
            raise InputError("the training split needs at least two images")
        self.data = data
        self.config = config
        self.runtime = runtime

    def steps_per_epoch(self) -> int:
        s = self.config
        steps = max(1, len(self.data.train_y) // s.batch_size)
        return min(steps, s.max_train_batches) if s.max_train_batches else steps

    def score(self, spec: NetworkSpec, report: Callable[[int, float], None] | None = None) -> float:
        with seeded_proxy_model(spec, self.data, self.runtime) as (model, device):
            return self._train(model, device, report)

    def _train(self, model: nn.Module, device: torch.device, report: Callable[[int, float], None] | None) -> float:
        s, data = self.config, self.data
        model = place_model(model, device)
        steps = self.steps_per_epoch()
        calibration = min(steps, CALIBRATION_BATCHES)
        batch = min(s.batch_size, len(data.train_y))
        optimizer = torch.optim.AdamW(parameter_groups(model, s.weight_decay), lr=s.lr)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=s.lr, total_steps=s.epochs * steps)
        generator = torch.Generator().manual_seed(self.runtime.seed)
        pinned = device.type == "cuda"
        epoch_x = torch.empty((steps * batch, *data.train_x.shape[1:]), pin_memory=pinned)
        epoch_y = torch.empty((steps * batch,), dtype=torch.int64, pin_memory=pinned)
        losses = torch.empty(steps, device=device)
        check_every = 1 if device.type == "cpu" else steps  # a finite-loss check syncs a GPU
        autocast = autocast_for(device)
        accuracy = 0.0
        for epoch in range(1, s.epochs + 1):
            order = torch.randperm(len(data.train_y), generator=generator)[: steps * batch]
            torch.index_select(data.train_x, 0, order, out=epoch_x)
            torch.index_select(data.train_y, 0, order, out=epoch_y)
            model.train()
            for step in range(steps):
                images = place_batch(epoch_x[step * batch:(step + 1) * batch], device)
                labels = epoch_y[step * batch:(step + 1) * batch].to(device, non_blocking=True)
                with autocast:
                    loss = F.cross_entropy(model(images), labels)
                losses[step] = loss.detach()
                if (step + 1) % check_every == 0:
                    _check_finite(losses, step + 1 - check_every, step + 1, epoch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
            recompute_batch_norm(model, (epoch_x[i * batch:(i + 1) * batch] for i in range(calibration)), device)
            accuracy = top1_accuracy(model, _batches(data.val_x, data.val_y), device)
            if report is not None:
                report(epoch, accuracy)
        return accuracy


def _batches(x: torch.Tensor, y: torch.Tensor, size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(y), size):
        yield x[start:start + size], y[start:start + size]


def _check_finite(losses: torch.Tensor, start: int, stop: int, epoch: int) -> None:
    window = losses[start:stop]
    bad = (~torch.isfinite(window)).nonzero()
    if len(bad):
        step = start + int(bad[0]) + 1
        raise ProxyFailure(f"loss became NaN at epoch {epoch} step {step} "
                           f"(value {losses[step - 1].item()}); lower the learning rate")
