"""The epochs of one run of the recipe (`effnet.nas.training.recipe`), resumable, single process or DDP.

Before each evaluation the BatchNorm statistics of both models are recomputed with their current
weights over the first `precise_bn_batches` training batches of the epoch (PreciseBN, Wu & Johnson
2021, "Rethinking Batch in BatchNorm"). Running statistics never enter a training step, so this
changes what is evaluated and saved, not how the weights train. The reference's moving averages
(decay 0.99) are fine over 350 ImageNet epochs, but a short run's lag far behind its weights:
EfficientNet-B0 on digits at 32 px after 6 epochs scored 0.10 (chance) with them and 0.86 (raw) /
0.91 (EMA) with statistics recomputed over 10 batches of 64.

Model and batches are channels_last on CPU as on CUDA (measured 1.6x faster B0 training at 224 px
on CPU, bench/RESULTS.md); on CUDA the forward runs under bf16 autocast.

Randomness is reseeded at every epoch from (seed, epoch) for the data order and (seed, epoch,
rank) for dropout and stochastic depth, so a run resumed from an epoch's checkpoint continues
exactly as the uninterrupted run would, whatever process it runs in, with no generator state
carried in the checkpoint.

Under `torchrun` (`effnet.nas.training.distributed`) every process trains a shard of each global batch
and only rank 0 writes files. The recipe's batch is the global batch: it sets the learning rate, and each
of the N processes takes batch / N images per step.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effnet.nas.data.loader import sample_seed
from effnet.nas.data.sources import DataSplits
from effnet.nas.data.transforms import eval_view
from effnet.nas.errors import InputError, SettingError
from effnet.nas.files import write_csv
from effnet.nas.net.model import build_model
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.net.spec_file import dump_spec_text
from effnet.nas.progress import Progress, ProgressCallback
from effnet.nas.training.batches import TrainingBatches
from effnet.nas.training.checkpoint import BEST_NAME, check_state, load_checkpoint, save_checkpoint
from effnet.nas.training.distributed import Distributed, broadcast_buffers, mean_over_ranks, process_device
from effnet.nas.training.ema import WeightEma
from effnet.nas.training.evaluate import top1_accuracy
from effnet.nas.training.job import TrainResult
from effnet.nas.training.precise_bn import recompute_batch_norm
from effnet.nas.training.recipe import Recipe, lr_multiplier, make_optimizer
from effnet.nas.training.runtime import autocast_for, compile_model, place_model
from effnet.nas.training.weights import InitialWeights

CHECKPOINT_NAME = "checkpoint.pt"
"""The last finished epoch, with the optimizer's state: what --resume continues (best.pt: `BEST_NAME`)."""
METRICS_NAME = "metrics.csv"
METRICS_COLUMNS = ("epoch", "train_loss", "val_top1", "ema_val_top1", "lr", "seconds")
CHECKPOINT_KEYS = ("spec", "settings", "epoch", "model", "ema", "optimizer", "scheduler", "best", "history")

RESUMABLE_CHANGES = ("epochs",)
"""Settings a resumed run may change: more epochs continue the same schedule."""


def deployment_record(data: DataSplits) -> dict[str, Any]:
    """What a checkpoint and run.yaml record for using the trained network: the class names in index order, the
    input resolution and the evaluation view (how a validation image was prepared)."""
    return {
        "classes": list(data.train.classes),
        "resolution": data.resolution,
        "transform": eval_view(data.resolution, data.stored).as_dict(),
    }


def init_record(init: InitialWeights | None, checkpoint: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a run started from: this run's `init`, or for a resumed run what its checkpoint recorded."""
    if init is not None:
        return init.record
    return checkpoint.get("init") if checkpoint is not None else None


def open_run(run_dir: Path, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None for a fresh run (which must not overwrite one)."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if resume:
        checkpoint = load_checkpoint(path)
        missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
        if missing:
            raise InputError(f"{path}: checkpoint lacks {', '.join(missing)}; delete it to start over")
        if not (
            isinstance(checkpoint["settings"], dict)
            and isinstance(checkpoint["epoch"], int)
            and isinstance(checkpoint["history"], list)
            and isinstance(checkpoint["spec"], str)
        ):
            raise InputError(f"{path}: checkpoint fields have unexpected types; delete it to start over")
        return checkpoint
    if path.exists():
        raise InputError(
            f"{path} holds an earlier run's checkpoint; resume it (--resume) or choose another run directory"
        )
    return None


def check_resumable(checkpoint: dict[str, Any], spec: NetworkSpec, recipe: Recipe, path: Path) -> None:
    """A checkpoint resumes only the run that wrote it: same spec, same recipe but for `epochs`. The recipe is
    compared first: other data (or resolution) changes the spec too, and is what to name."""
    theirs, mine = checkpoint["settings"], recipe.as_dict()
    for key, value in mine.items():
        if key not in RESUMABLE_CHANGES and theirs.get(key) != value:
            raise SettingError(
                key,
                f"was {theirs.get(key)} in the run that wrote {path}, this run asks for "
                f"{value}; resume with the same settings or choose another run directory",
            )
    if checkpoint["spec"] != dump_spec_text(spec):
        raise InputError(
            f"{path} was written for a different spec than {spec.name!r} at {spec.resolution} px "
            f"with {spec.num_classes} classes; resume with the same spec, data and resolution, "
            "or choose another run directory"
        )
    done = int(checkpoint["epoch"])
    if recipe.epochs < done:
        raise SettingError("epochs", f"must be {done} or more to resume {path}, which has trained {done}")


def check_run(
    spec: NetworkSpec,
    data: DataSplits,
    recipe: Recipe,
    checkpoint: dict[str, Any] | None,
    checkpoint_path: Path,
    dist: Distributed,
) -> int:
    """Everything that can be checked before training starts; returns the steps per epoch."""
    if checkpoint is not None:
        check_resumable(checkpoint, spec, recipe, checkpoint_path)
    if recipe.batch_size % dist.world_size:
        raise SettingError(
            "batch_size",
            f"{recipe.batch_size} does not split evenly over {dist.world_size} "
            "processes; use a multiple of the process count",
        )
    steps = len(data.train) // recipe.batch_size
    if steps == 0:
        raise SettingError("batch_size", f"{recipe.batch_size} exceeds the {len(data.train)} training images; lower it")
    return steps


def train(
    spec: NetworkSpec,
    data: DataSplits,
    recipe: Recipe,
    run_dir: str | os.PathLike[str],
    *,
    device: str = "auto",
    checkpoint: dict[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
    dist: Distributed | None = None,
    compiled: bool = False,
    loader_workers: int | None = None,
    decode: str = "workers",
    init: InitialWeights | None = None,
) -> TrainResult:
    """Train `spec` (already `training_spec`) on `data`; checkpoint every epoch under `run_dir`.

    `checkpoint` (from `open_run`) resumes that run. Under a distributed `dist` the caller has
    started the process group (`distributed_session`). `compiled` runs the training forward and
    backward through `torch.compile` (evaluation, precise BN and checkpoints use the plain module,
    which shares its parameters); it changes speed, not results, so a resumed run may switch it.
    `decode` is where training images are decoded: `workers` (the DataLoader's processes) or `device`
    (JPEGs in batches on the training device: nvjpeg on CUDA; it changes speed, not what is trained on,
    up to the resizing's rounding). `init` (`initial_weights`) replaces the initialisation of the layers it
    holds in a fresh run; the checkpoint keeps its record. The caller's random state and cuDNN settings are as
    they were when it returns.

    `on_progress` counts training steps of all the epochs, its status "epoch k/N" for the epoch in hand: as
    each epoch starts (or once, for a finished run resumed), after each step, and as each epoch ends, with
    that epoch's record (epoch, train_loss, val_top1, ema_val_top1, lr, seconds) as `metrics`.
    """
    dist = dist or Distributed()
    torch_device = process_device(device, dist)
    with (
        torch.random.fork_rng(devices=[torch_device.index or 0] if torch_device.type == "cuda" else []),
        cudnn_autotuner(torch_device.type == "cuda"),
    ):
        batches = TrainingBatches(data, recipe, dist, torch_device, loader_workers, decode)
        return _train(
            spec, data, recipe, Path(run_dir), torch_device, checkpoint, on_progress, dist, compiled, batches, init
        )


@contextlib.contextmanager
def cudnn_autotuner(enabled: bool) -> Iterator[None]:
    """cuDNN's autotuner on (for fixed-size batches) while the block runs, then as it was."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled or previous
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def _train(
    spec: NetworkSpec,
    data: DataSplits,
    recipe: Recipe,
    run_dir: Path,
    torch_device: torch.device,
    checkpoint: dict[str, Any] | None,
    on_progress: ProgressCallback | None,
    dist: Distributed,
    compiled: bool,
    batches: TrainingBatches,
    init: InitialWeights | None = None,
) -> TrainResult:
    checkpoint_path, metrics_path, best_path = run_dir / CHECKPOINT_NAME, run_dir / METRICS_NAME, run_dir / BEST_NAME
    steps = check_run(spec, data, recipe, checkpoint, checkpoint_path, dist)
    torch.manual_seed(recipe.seed)
    model = build_model(spec)
    if init is not None:
        model.load_state_dict(init.state, strict=False)
    started_from = init_record(init, checkpoint)
    model = place_model(model, torch_device)
    ema = WeightEma(model, recipe.ema_decay)
    optimizer = make_optimizer(model, recipe)
    warmup_steps = round(recipe.warmup_epochs * steps)
    decay_steps = max(1, round(recipe.decay_epochs * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, warmup_steps, decay_steps, recipe.decay_rate)
    )
    first_epoch, history = 1, []
    best: dict[str, Any] = {"top1": 0.0, "epoch": 0, "weights": "raw"}
    if checkpoint is not None:
        _restore(checkpoint, checkpoint_path, model, ema, optimizer, scheduler)
        first_epoch = int(checkpoint["epoch"]) + 1
        history = [dict(row) for row in checkpoint["history"]]
        best = dict(checkpoint["best"])
    net: nn.Module = model
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[torch_device.index] if torch_device.type == "cuda" else None
        )
    net = compile_model(net, compiled)

    def report(epoch: int, done: int, metrics: dict[str, float] | None = None) -> None:
        if on_progress is not None:
            on_progress(Progress(done, recipe.epochs * steps, f"epoch {epoch}/{recipe.epochs}", metrics=metrics))

    started = time.perf_counter()
    if first_epoch > recipe.epochs:  # a finished run resumed: nothing left to train
        report(recipe.epochs, recipe.epochs * steps)
    for epoch in range(first_epoch, recipe.epochs + 1):
        report(epoch, (epoch - 1) * steps)
        epoch_start = time.perf_counter()
        torch.manual_seed(sample_seed(recipe.seed, epoch, dist.rank))
        net.train()
        loss_sum = torch.zeros((), device=torch_device)
        for step, (x, labels) in enumerate(batches.epoch(epoch, steps, recipe.precise_bn_batches), 1):
            y = labels.to(torch_device, non_blocking=True)
            with autocast_for(torch_device):
                loss = F.cross_entropy(net(x), y, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            ema.update(model)
            loss_sum += loss.detach().float()
            report(epoch, (epoch - 1) * steps + step)
        train_loss = mean_over_ranks(loss_sum, steps, dist)
        if not math.isfinite(train_loss):
            raise InputError(
                f"the training loss became {train_loss} in epoch {epoch}; lower the learning rate "
                f"(now {recipe.lr:g}) or lengthen the warm-up"
            )
        for network in (model, ema.average):
            recompute_batch_norm(network, batches.calibration_batches(), torch_device)
            if dist.enabled:
                broadcast_buffers(network)
        top1 = top1_accuracy(model, batches.validation(), torch_device, all_reduce=dist.enabled)
        ema_top1 = top1_accuracy(ema.average, batches.validation(), torch_device, all_reduce=dist.enabled)
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_top1": top1,
            "ema_val_top1": ema_top1,
            "lr": lr,
            "seconds": time.perf_counter() - epoch_start,
        }
        history.append(record)
        improved = False
        for weights, accuracy in (("raw", top1), ("ema", ema_top1)):
            if accuracy > best["top1"] or best["epoch"] == 0:
                best, improved = {"top1": accuracy, "epoch": epoch, "weights": weights}, True
        if dist.is_main:
            state = {
                "spec": dump_spec_text(spec),
                "settings": recipe.as_dict(),
                "epoch": epoch,
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "best": best,
                "history": history,
                "world_size": dist.world_size,
                "init": started_from,
                **deployment_record(data),
            }
            if improved:  # before the last epoch's checkpoint: a resume redoes an epoch whose best.pt may be missing
                save_checkpoint(state, best_path)
            save_checkpoint(
                {**state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, checkpoint_path
            )
            write_metrics(history, metrics_path)
        report(epoch, epoch * steps, dict(record))

    last = history[-1]
    return TrainResult(
        spec=spec,
        recipe=recipe,
        epochs=int(last["epoch"]),
        top1=last["val_top1"],
        ema_top1=last["ema_val_top1"],
        best_top1=best["top1"],
        best_epoch=int(best["epoch"]),
        best_weights=str(best["weights"]),
        history=history,
        checkpoint=checkpoint_path,
        best_checkpoint=best_path,
        metrics=metrics_path,
        seconds=time.perf_counter() - started,
        resumed_from=first_epoch - 1,
        steps_per_epoch=steps,
        device=str(torch_device),
        world_size=dist.world_size,
        skipped=tuple(batches.skipped),
        skipped_val=len(batches.skipped_val),
        init=started_from,
        deployment=deployment_record(data),
    )


def write_metrics(history: list[dict[str, float]], path: Path) -> Path:
    rows = [{"epoch": int(row["epoch"]), **{c: f"{row[c]:.6g}" for c in METRICS_COLUMNS[1:]}} for row in history]
    return write_csv(path, METRICS_COLUMNS, rows)


def _restore(
    checkpoint: dict[str, Any],
    path: Path,
    model: nn.Module,
    ema: WeightEma,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    fix = "delete the checkpoint to start over"
    reference = {key: tensor.cpu() for key, tensor in model.state_dict().items()}
    for part, state in (("model", checkpoint["model"]), ("EMA", (checkpoint.get("ema") or {}).get("weights"))):
        if not isinstance(state, dict):
            raise InputError(f"{path}: the checkpoint holds no {part} weights; {fix}")
        check_state(state, f"{path} ({part} weights)", fix, reference)
    try:
        model.load_state_dict(checkpoint["model"])
        ema.load_state_dict(checkpoint["ema"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise InputError(
            f"{path}: the stored state does not fit the spec ({reason}); delete the checkpoint to start over"
        ) from None
