"""Full training of one spec with the EfficientNet paper's recipe, resumable, single process or DDP.

The recipe (Tan & Le 2019, section 5.2, and the TensorFlow reference's defaults):

- RMSProp with decay 0.9 and momentum 0.9, as `torch.optim.RMSprop(alpha=0.9, momentum=0.9,
  eps=sqrt(1e-3))`. TensorFlow adds its epsilon (1e-3) inside the square root, ``g / sqrt(ms + eps)``;
  torch adds it outside, ``g / (sqrt(ms) + eps)``. With torch's eps = sqrt(1e-3) ~ 0.0316 both
  denominators tend to sqrt(ms) where ms >> 1e-3, both tend to 0.0316 where ms << 1e-3, and they
  never differ by more than a factor sqrt(2). TensorFlow starts the mean square at 1, torch at 0
  (whose first steps are sign-like, up to about 3x the learning rate per weight), so the optimizer's
  state is created at 1 here. One difference remains: TensorFlow multiplies the learning rate into
  the momentum buffer, torch applies the current rate to the whole buffer, which only matters
  while the rate changes (warm-up, each 3 % decay).
- Learning rate 0.256 for a batch of 4096, scaled linearly with the batch: ``0.256 * batch / 4096``;
  linear warm-up over the first epochs, then staircase decay by 0.97 every 2.4 epochs, both counted
  in steps from the start of training, as the reference does.
- L2 weight decay 1e-5 on every weight but BatchNorm's (torch's `weight_decay` adds ``wd * w`` to
  the gradient, the gradient of the reference's ``wd * sum(w**2) / 2``).
- The spec's dropout and stochastic depth, label smoothing 0.1, and an exponential moving average
  of the weights (`WeightEma`, decay 0.9999 with the reference's warm-up of the decay). Both the raw
  and the averaged weights are evaluated every epoch.

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

Under `torchrun` (RANK / WORLD_SIZE / LOCAL_RANK in the environment) every process trains a
shard of each global batch in DistributedDataParallel (NCCL on CUDA, Gloo on CPU) and only rank 0
writes files. `--batch-size` is the global batch: it sets the learning rate, and each of the N
processes takes batch / N images per step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn

from effnet.nas.training.checkpoint import BEST_NAME, check_state, load_checkpoint, save_checkpoint
from torch.utils.data import DataLoader

from effnet.nas.data.loader import (DeviceDecoder, EncodedImages, EpochSampler, Normalize, TransformedImages,
                                    collate_encoded, default_loader_workers, make_loader, sample_seed)
from effnet.nas.data.sources import DataSplits
from effnet.nas.data.transforms import AUGMENTS, eval_transform, eval_view, train_transform
from effnet.nas.training.ema import WeightEma
from effnet.nas.training.evaluate import top1_accuracy
from effnet.nas import checks
from effnet.nas.errors import InputError, SettingError
from effnet.nas.files import write_csv
from effnet.nas.memory import check_loader_workers
from effnet.nas.outputs import claim_run_dir, holding_run_dirs
from effnet.nas.net.model import build_model
from effnet.nas.training.precise_bn import recompute_batch_norm
from effnet.nas.training.runtime import autocast_for, compile_model, place_model, resolve_device
from effnet.nas.net.spec import InvalidSpec, NetworkSpec
from effnet.nas.net.spec_file import dump_spec_text, spec_from_dict, spec_to_dict

PAPER_LR = 0.256
PAPER_BATCH = 4096
PAPER_WARMUP_EPOCHS = 5.0

CHECKPOINT_NAME = "checkpoint.pt"
"""The last finished epoch, with the optimizer's state: what --resume continues (best.pt: `BEST_NAME`)."""
METRICS_NAME = "metrics.csv"
METRICS_COLUMNS = ("epoch", "train_loss", "val_top1", "ema_val_top1", "lr", "seconds")
CHECKPOINT_KEYS = ("spec", "settings", "epoch", "model", "ema", "optimizer", "scheduler", "best", "history")

RESUMABLE_CHANGES = ("epochs",)
"""Settings a resumed run may change: more epochs continue the same schedule."""


def paper_lr(batch_size: int) -> float:
    """The paper's 0.256 per 4096 images, scaled linearly to `batch_size`."""
    return PAPER_LR * batch_size / PAPER_BATCH


def default_warmup_epochs(epochs: int) -> float:
    """The paper's 5 epochs, or a tenth of a run shorter than 50 epochs."""
    return min(PAPER_WARMUP_EPOCHS, epochs / 10)


@dataclass(frozen=True)
class TrainSettings:
    data: str
    resolution: int
    epochs: int
    batch_size: int
    """The global batch over all processes."""
    lr: float
    warmup_epochs: float
    seed: int = 0
    decay_rate: float = 0.97
    decay_epochs: float = 2.4
    weight_decay: float = 1e-5
    label_smoothing: float = 0.1
    ema_decay: float = 0.9999
    rmsprop_decay: float = 0.9
    momentum: float = 0.9
    rmsprop_epsilon: float = 1e-3
    """TensorFlow's epsilon (inside the square root); torch gets its square root, see the module notes."""
    precise_bn_batches: int = 10
    """Training batches (per process) to recompute BatchNorm statistics over before each evaluation; 0: off."""
    augment: str = "paper"
    """none, light (random resized crop and flip) or paper (and AutoAugment's ImageNet policy)."""

    def __post_init__(self) -> None:
        checks.whole("epochs", self.epochs, low=1, high=100_000)
        checks.whole("batch_size", self.batch_size, low=1, high=1_000_000)
        checks.number("lr", self.lr, low=0, low_open=True)
        checks.number("warmup_epochs", self.warmup_epochs, low=0)
        checks.number("ema_decay", self.ema_decay, low=0, high=1, high_open=True)
        checks.number("label_smoothing", self.label_smoothing, low=0, high=1, high_open=True)
        checks.number("weight_decay", self.weight_decay, low=0)
        checks.number("decay_rate", self.decay_rate, low=0, high=1, low_open=True)
        checks.number("decay_epochs", self.decay_epochs, low=0, low_open=True)
        checks.whole("precise_bn_batches", self.precise_bn_batches, low=0, high=100_000)
        checks.choice("augment", self.augment, AUGMENTS)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Distributed:
    """This process's place in a `torchrun` job; world size 1 is a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_from_env(environ: dict[str, str] | None = None) -> Distributed:
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return Distributed()
    try:
        rank, world, local = int(env.get("RANK", "0")), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0"))
    except ValueError:
        raise InputError("RANK, WORLD_SIZE and LOCAL_RANK must be integers; start the job with torchrun") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise InputError(f"inconsistent torchrun environment: RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local}")
    return Distributed(rank=rank, world_size=world, local_rank=local)


def deployment_record(data: DataSplits) -> dict[str, Any]:
    """What a checkpoint and run.yaml record for using the trained network: the class names in index order, the
    input resolution and the evaluation view (how a validation image was prepared)."""
    return {"classes": list(data.train.classes), "resolution": data.resolution,
            "transform": eval_view(data.resolution, data.stored).as_dict()}


def training_spec(spec: NetworkSpec, data: DataSplits, resolution: int) -> NetworkSpec:
    """The spec as trained: the data's classes and channels at `resolution`, validated again."""
    source = f"{spec.name} at {resolution} px"
    try:
        changed = spec.replace(resolution=resolution, num_classes=data.num_classes, in_channels=data.in_channels)
    except InvalidSpec as err:
        raise InputError(f"{source}: {err}") from None
    return spec_from_dict(spec_to_dict(changed), source)


def open_run(run_dir: Path, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None for a fresh run (which must not overwrite one)."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if resume:
        checkpoint = load_checkpoint(path)
        missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
        if missing:
            raise InputError(f"{path}: checkpoint lacks {', '.join(missing)}; delete it to start over")
        if not (isinstance(checkpoint["settings"], dict) and isinstance(checkpoint["epoch"], int)
                and isinstance(checkpoint["history"], list) and isinstance(checkpoint["spec"], str)):
            raise InputError(f"{path}: checkpoint fields have unexpected types; delete it to start over")
        return checkpoint
    if path.exists():
        raise InputError(f"{path} holds an earlier run's checkpoint; resume it or choose another run directory")
    return None


def check_resumable(checkpoint: dict[str, Any], spec: NetworkSpec, settings: TrainSettings, path: Path) -> None:
    """A checkpoint resumes only the run that wrote it: same spec, same settings but for `epochs`."""
    if checkpoint["spec"] != dump_spec_text(spec):
        raise InputError(f"{path} was written for a different spec than {spec.name!r} at {spec.resolution} px "
                         f"with {spec.num_classes} classes; resume with the same spec, data and resolution, "
                         "or choose another run directory")
    theirs, mine = checkpoint["settings"], settings.as_dict()
    for key, value in mine.items():
        if key not in RESUMABLE_CHANGES and theirs.get(key) != value:
            raise SettingError(key, f"was {theirs.get(key)} in the run that wrote {path}, this run asks for "
                                    f"{value}; resume with the same settings or choose another run directory")
    done = int(checkpoint["epoch"])
    if settings.epochs < done:
        raise SettingError("epochs", f"must be {done} or more to resume {path}, which has trained {done}")


def check_run(spec: NetworkSpec, data: DataSplits, settings: TrainSettings, checkpoint: dict[str, Any] | None,
              checkpoint_path: Path, dist: Distributed) -> int:
    """Everything that can be checked before training starts; returns the steps per epoch."""
    if checkpoint is not None:
        check_resumable(checkpoint, spec, settings, checkpoint_path)
    if settings.batch_size % dist.world_size:
        raise SettingError("batch_size", f"{settings.batch_size} does not split evenly over {dist.world_size} "
                                         "processes; use a multiple of the process count")
    steps = len(data.train) // settings.batch_size
    if steps == 0:
        raise SettingError("batch_size", f"{settings.batch_size} exceeds the {len(data.train)} training images; "
                                         "lower it")
    return steps


class TrainMonitor:
    """Progress hooks; the library itself never prints. The default does nothing."""

    def describe(self, text: str) -> None:
        """One line on what is about to be trained (data, classes, learning rate, resume)."""

    def started(self, first_epoch: int, epochs: int, steps_per_epoch: int) -> None:
        pass

    def step(self) -> None:
        pass

    def epoch_done(self, record: dict[str, float]) -> None:
        pass


@dataclass(frozen=True)
class TrainResult:
    epochs: int
    top1: float
    ema_top1: float
    best_top1: float
    best_epoch: int
    best_weights: str
    """"raw" or "ema": which weights reached `best_top1`."""
    history: list[dict[str, float]]
    checkpoint: Path
    best_checkpoint: Path
    metrics: Path
    seconds: float
    resumed_from: int
    steps_per_epoch: int
    device: str
    skipped: tuple[str, ...] = ()
    """Files that did not decode (left out, each named with the reason)."""


def lr_multiplier(step: int, warmup_steps: int, decay_steps: int, decay_rate: float) -> float:
    """Linear warm-up to 1 over `warmup_steps`, then `decay_rate` per `decay_steps` (staircase, from step 0)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return decay_rate ** (step // decay_steps)


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.RMSprop:
    batch_norm = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters(recurse=False)}
    decayed = [p for p in model.parameters() if id(p) not in batch_norm]
    free = [p for p in model.parameters() if id(p) in batch_norm]
    groups = [{"params": decayed, "weight_decay": settings.weight_decay}, {"params": free, "weight_decay": 0.0}]
    optimizer = torch.optim.RMSprop(groups, lr=settings.lr, alpha=settings.rmsprop_decay, momentum=settings.momentum,
                                    eps=math.sqrt(settings.rmsprop_epsilon))
    for p in model.parameters():  # TensorFlow's start (ms = 1); torch fills in state only where there is none
        optimizer.state[p] = {"step": torch.zeros(()), "square_avg": torch.ones_like(p),
                              "momentum_buffer": torch.zeros_like(p)}
    return optimizer


def train(spec: NetworkSpec, data: DataSplits, settings: TrainSettings, run_dir: str | os.PathLike[str], *,
          device: str = "auto", checkpoint: dict[str, Any] | None = None, monitor: TrainMonitor | None = None,
          dist: Distributed | None = None, compiled: bool = False, loader_workers: int | None = None,
          decode: str = "workers", init: InitialWeights | None = None) -> TrainResult:
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
    """
    dist = dist or Distributed()
    torch_device = _device(device, dist)
    with torch.random.fork_rng(devices=[torch_device.index or 0] if torch_device.type == "cuda" else []), \
            cudnn_autotuner(torch_device.type == "cuda"):
        loaders = _Loaders(data, settings, dist, torch_device, loader_workers, decode)
        return _train(spec, data, settings, Path(run_dir), torch_device, checkpoint, monitor or TrainMonitor(), dist,
                      compiled, loaders, init)


@contextlib.contextmanager
def cudnn_autotuner(enabled: bool) -> Iterator[None]:
    """cuDNN's autotuner on (for fixed-size batches) while the block runs, then as it was."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled or previous
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


class _Loaders:
    """This process's batches: its shard of each epoch's training images (random views of (seed, epoch,
    image)), its share of the validation images, and the first training batches of the epoch kept
    (normalised, on the device) to recompute BatchNorm statistics with."""

    def __init__(self, data: DataSplits, settings: TrainSettings, dist: Distributed, device: torch.device,
                 workers: int | None, decode: str = "workers"):
        self.local_batch = settings.batch_size // dist.world_size
        workers = default_loader_workers(data.train) if workers is None else workers
        pin = device.type == "cuda"
        self.sampler = EpochSampler(len(data.train), settings.seed, shuffle=True, rank=dist.rank,
                                    world=dist.world_size, even=True)
        transform = train_transform(data.resolution, settings.augment, data.stored)
        self.device_decoder: DeviceDecoder | None = None
        if decode == "device" and not data.train.in_memory:
            self.device_decoder = DeviceDecoder(data.train, transform, device)
            self.train = DataLoader(EncodedImages(data.train), batch_size=self.local_batch, sampler=self.sampler,
                                    num_workers=workers, collate_fn=collate_encoded, drop_last=True,
                                    persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)
        else:
            train = TransformedImages(data.train, transform)
            self.train = make_loader(train, self.sampler, self.local_batch, workers, pin, drop_last=True)
        val = TransformedImages(data.val, eval_transform(data.resolution, data.stored))
        # evaluated in training-sized batches: memory peaks in training, whatever the size of the validation set
        self.val = make_loader(val, EpochSampler(len(data.val), rank=dist.rank, world=dist.world_size),
                               self.local_batch, workers, pin, drop_last=False)
        self.normalize = Normalize(device)
        self.skipped: dict[str, None] = {}
        """Files left out, each once however many passes met it (a dict as an ordered set)."""

    def epoch(self, epoch: int, steps: int, keep: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's training batches, normalised on the device; the first `keep` are kept (as the uint8
        pixels they came as, a quarter of the normalised float32) for `calibration_batches`."""
        self.sampler.set_epoch(epoch)
        self.calibration: list[torch.Tensor] = []
        for _, batch in zip(range(steps), self.train):
            if self.device_decoder is not None:
                pixels, labels, skipped = self.device_decoder(batch)
            else:
                pixels, labels, skipped = batch.images, batch.labels, batch.skipped
            self.skipped.update(dict.fromkeys(skipped))
            if not len(labels):
                raise InputError(f"a whole batch of training images did not decode ({skipped[0]}, ...); "
                                 "fix or remove the files")
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
            if len(batch.labels):
                yield self.normalize(batch.images), batch.labels


def _train(spec: NetworkSpec, data: DataSplits, settings: TrainSettings, run_dir: Path, torch_device: torch.device,
           checkpoint: dict[str, Any] | None, monitor: TrainMonitor, dist: Distributed, compiled: bool,
           loaders: _Loaders, init: InitialWeights | None = None) -> TrainResult:
    checkpoint_path, metrics_path, best_path = run_dir / CHECKPOINT_NAME, run_dir / METRICS_NAME, run_dir / BEST_NAME
    steps = check_run(spec, data, settings, checkpoint, checkpoint_path, dist)
    torch.manual_seed(settings.seed)
    model = build_model(spec)
    if init is not None:
        model.load_state_dict(init.state, strict=False)
    started_from = init_record(init, checkpoint)
    model = place_model(model, torch_device)
    ema = WeightEma(model, settings.ema_decay)
    optimizer = make_optimizer(model, settings)
    warmup_steps = round(settings.warmup_epochs * steps)
    decay_steps = max(1, round(settings.decay_epochs * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, warmup_steps, decay_steps, settings.decay_rate))
    first_epoch, history, best = 1, [], {"top1": 0.0, "epoch": 0, "weights": "raw"}
    if checkpoint is not None:
        _restore(checkpoint, checkpoint_path, model, ema, optimizer, scheduler)
        first_epoch = int(checkpoint["epoch"]) + 1
        history = [dict(row) for row in checkpoint["history"]]
        best = dict(checkpoint["best"])
    net: nn.Module = model
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[torch_device.index] if torch_device.type == "cuda" else None)
    net = compile_model(net, compiled)

    started = time.perf_counter()
    monitor.started(first_epoch, settings.epochs, steps)
    for epoch in range(first_epoch, settings.epochs + 1):
        epoch_start = time.perf_counter()
        torch.manual_seed(sample_seed(settings.seed, epoch, dist.rank))
        net.train()
        loss_sum = torch.zeros((), device=torch_device)
        for x, labels in loaders.epoch(epoch, steps, settings.precise_bn_batches):
            y = labels.to(torch_device, non_blocking=True)
            with autocast_for(torch_device):
                loss = F.cross_entropy(net(x), y, label_smoothing=settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            ema.update(model)
            loss_sum += loss.detach().float()
            monitor.step()
        train_loss = _mean_over_ranks(loss_sum, steps, dist)
        if not math.isfinite(train_loss):
            raise InputError(f"the training loss became {train_loss} in epoch {epoch}; lower the learning rate "
                             f"(now {settings.lr:g}) or lengthen the warm-up")
        for network in (model, ema.average):
            recompute_batch_norm(network, loaders.calibration_batches(), torch_device)
            if dist.enabled:
                _broadcast_buffers(network)
        top1 = top1_accuracy(model, loaders.validation(), torch_device, all_reduce=dist.enabled)
        ema_top1 = top1_accuracy(ema.average, loaders.validation(), torch_device, all_reduce=dist.enabled)
        record = {"epoch": epoch, "train_loss": train_loss, "val_top1": top1, "ema_val_top1": ema_top1,
                  "lr": lr, "seconds": time.perf_counter() - epoch_start}
        history.append(record)
        improved = False
        for weights, accuracy in (("raw", top1), ("ema", ema_top1)):
            if accuracy > best["top1"] or best["epoch"] == 0:
                best, improved = {"top1": accuracy, "epoch": epoch, "weights": weights}, True
        if dist.is_main:
            state = {"spec": dump_spec_text(spec), "settings": settings.as_dict(), "epoch": epoch,
                     "model": model.state_dict(), "ema": ema.state_dict(), "best": best, "history": history,
                     "world_size": dist.world_size, "init": started_from, **deployment_record(data)}
            if improved:  # before the last epoch's checkpoint: a resume redoes an epoch whose best.pt may be missing
                save_checkpoint(state, best_path)
            save_checkpoint({**state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                            checkpoint_path)
            write_metrics(history, metrics_path)
        monitor.epoch_done(record)

    last = history[-1]
    return TrainResult(
        epochs=int(last["epoch"]), top1=last["val_top1"], ema_top1=last["ema_val_top1"], best_top1=best["top1"],
        best_epoch=int(best["epoch"]), best_weights=str(best["weights"]), history=history,
        checkpoint=checkpoint_path, best_checkpoint=best_path, metrics=metrics_path,
        seconds=time.perf_counter() - started,
        resumed_from=first_epoch - 1, steps_per_epoch=steps, device=str(torch_device),
        skipped=tuple(loaders.skipped),
    )


@contextlib.contextmanager
def distributed_session(dist: Distributed, device: str) -> Iterator[None]:
    """Join the `torchrun` process group for the duration (nothing to do for one process)."""
    if not dist.enabled:
        yield
        return
    cuda = resolve_device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(_device(device, dist))
    torch_dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield
    finally:
        torch_dist.destroy_process_group()


def write_metrics(history: list[dict[str, float]], path: Path) -> Path:
    rows = [{"epoch": int(row["epoch"]), **{c: f"{row[c]:.6g}" for c in METRICS_COLUMNS[1:]}} for row in history]
    return write_csv(path, METRICS_COLUMNS, rows)


# -- helpers -------------------------------------------------------------------------------------

def _device(name: str, dist: Distributed) -> torch.device:
    """The resolved device; under torchrun on CUDA, this process's GPU cuda:LOCAL_RANK."""
    device = resolve_device(name)
    if device.type != "cuda" or not dist.enabled:
        return device
    if device.index is not None:
        raise SettingError("device", f"{name!r}: under torchrun each process takes cuda:LOCAL_RANK; use cuda "
                         "and choose the GPUs with CUDA_VISIBLE_DEVICES")
    if dist.local_rank >= torch.cuda.device_count():
        raise InputError(f"LOCAL_RANK {dist.local_rank} but only {torch.cuda.device_count()} CUDA GPUs are visible; "
                         "start at most one process per GPU")
    return torch.device("cuda", dist.local_rank)


def _restore(checkpoint: dict[str, Any], path: Path, model: nn.Module, ema: WeightEma,
             optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
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
        raise InputError(f"{path}: the stored state does not fit the spec ({reason}); "
                         "delete the checkpoint to start over") from None


def _mean_over_ranks(total: torch.Tensor, steps: int, dist: Distributed) -> float:
    if dist.enabled:
        total = total.clone()
        torch_dist.all_reduce(total)
    return total.item() / (steps * dist.world_size)


def _broadcast_buffers(module: nn.Module) -> None:
    """Give every process rank 0's BatchNorm statistics, so all evaluate (and save) the same model."""
    for buffer in module.buffers():
        torch_dist.broadcast(buffer, src=0)


# -- the whole job ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainConfig:
    """`train_network`'s settings: the spec (its classes and input channels are replaced by the data's),
    the data at `resolution` (None: the spec's), the paper's recipe with `lr` None meaning
    0.256 * batch / 4096 and `warmup_epochs` None meaning 5 (a tenth of a shorter run; a resumed run's
    own), the device (auto, cpu, cuda, cuda:N), and the run directory (None: runs/train-<spec name>)."""

    spec: NetworkSpec
    data: str = "digits"
    resolution: int | None = None
    epochs: int = 30
    batch_size: int = 64
    lr: float | None = None
    warmup_epochs: float | None = None
    ema_decay: float = 0.9999
    label_smoothing: float = 0.1
    weight_decay: float = 1e-5
    precise_bn: int = 10
    augment: str = "auto"
    """none, light, paper; auto is paper for an image folder and none for the built-in data."""
    device: str = "auto"
    compiled: bool = False
    seed: int = 0
    run_dir: Path | None = None
    resume: bool = False
    init: Path | None = None
    """Weights to start from: an effnet checkpoint or a timm or torchvision state dict (`initial_weights`)."""
    loader_workers: int | None = None
    """DataLoader worker processes per training process (None: from the cores; none for built-in data)."""
    decode: str = "workers"
    """Where training images are decoded: workers (the DataLoader's processes) or device (JPEGs in batches
    on the training device, nvjpeg on CUDA)."""
    force: bool = False
    """Let the run directory hold files effnet did not write (see `effnet.nas.outputs`)."""

    def __post_init__(self) -> None:
        from effnet.nas import checks

        checks.seed("seed", self.seed)
        if self.resolution is not None:
            checks.whole("resolution", self.resolution, low=1, high=4096)
        checks.choice("augment", self.augment, ("auto", *AUGMENTS))
        if self.loader_workers is not None:
            checks.whole("loader_workers", self.loader_workers, low=0, high=256)
        checks.choice("decode", self.decode, ("workers", "device"))
        if self.init is not None and self.resume:
            raise SettingError("init", "starts a new run from weights; a resumed run continues from its own "
                                       "checkpoint: drop one of --init and --resume")

    @property
    def directory(self) -> Path:
        if self.run_dir is not None:
            return Path(self.run_dir)
        import re

        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", self.spec.name).strip("-.") or "network"
        return Path("runs") / f"train-{safe}"


@dataclass(frozen=True)
class TrainOutcome:
    """A finished `train_network`: the spec as trained, the settings, the result (None on ranks other than
    the first of a distributed run) and the run's world size."""

    spec: NetworkSpec
    settings: TrainSettings
    result: TrainResult | None
    world_size: int
    init: dict[str, Any] | None = None
    """Where the weights started from (`initial_weights`'s record), None for the initialisation."""
    deployment: dict[str, Any] = dataclasses.field(default_factory=dict)
    """`deployment_record`: class names, resolution and evaluation view."""

    def as_dict(self) -> dict[str, Any]:
        r, s = self.result, self.settings
        assert r is not None
        return {
            "spec": self.spec.name, "run_dir": str(r.checkpoint.parent), "data": s.data,
            "num_classes": self.spec.num_classes, "resolution": self.spec.resolution, "batch_size": s.batch_size,
            "lr": s.lr, "warmup_epochs": s.warmup_epochs, "device": r.device, "world_size": self.world_size,
            "epochs": r.epochs, "resumed_from": r.resumed_from, "top1": r.top1, "ema_top1": r.ema_top1,
            "best_top1": r.best_top1, "best_epoch": r.best_epoch, "best_weights": r.best_weights,
            "checkpoint": str(r.checkpoint), "best_checkpoint": str(r.best_checkpoint),
            "metrics_csv": str(r.metrics), "seconds": round(r.seconds, 2),
            "augment": s.augment, "skipped_files": len(r.skipped),
            "init": None if self.init is None else {
                **{k: self.init[k] for k in ("file", "library", "weights")},
                "layers_loaded": len(self.init["loaded"]), "layers_not_loaded": self.init["not_loaded"]},
            **self.deployment,
        }


@dataclass(frozen=True)
class InitialWeights:
    """Weights a fresh run starts from: the tensors (effnet's names) and what run.yaml and the checkpoint record
    of them: the file, its library, which weights, the layers loaded and the layers not loaded."""

    state: dict[str, torch.Tensor]
    record: dict[str, Any]


def init_record(init: InitialWeights | None, checkpoint: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a run started from: this run's `init`, or for a resumed run what its checkpoint recorded."""
    if init is not None:
        return init.record
    return checkpoint.get("init") if checkpoint is not None else None


def initial_weights(path: Path, spec: NetworkSpec) -> InitialWeights:
    """The weights in `path` (an effnet checkpoint or a timm or torchvision state dict) for `spec` as trained, by
    name; a classifier for another number of classes is left out, so the run trains a new one from the
    initialisation."""
    from effnet.nas.weights import load_weights, read_weights

    weights = read_weights(path)
    with torch.random.fork_rng(devices=[]):  # the caller's random state as it was
        model = build_model(spec)
    layers = load_weights(model, weights, replace_classifier=True)
    loaded = set(layers.loaded)
    state = {key: tensor for key, tensor in model.state_dict().items() if key.rpartition(".")[0] in loaded}
    return InitialWeights(state, {"file": str(path), "library": weights.library, "weights": weights.kind,
                                  **layers.as_dict()})


@holding_run_dirs()
def train_network(config: TrainConfig, monitor: TrainMonitor | None = None) -> TrainOutcome:
    """Train `config.spec` with the paper's recipe, checkpointing every epoch into the run directory and
    writing run.yaml; under `torchrun` each process trains its share and only rank 0 writes files."""
    from effnet.nas.data.sources import data_record, is_builtin, training_data
    from effnet.nas.record import write_run_record

    monitor = monitor or TrainMonitor()
    dist = distributed_from_env()
    resolve_device(config.device)
    check_loader_workers(config.loader_workers)
    size = config.spec.resolution if config.resolution is None else config.resolution
    images = training_data(config.data, size, config.seed)
    augment = config.augment if config.augment != "auto" else "none" if is_builtin(config.data) else "paper"
    trained = training_spec(config.spec, images, size)
    run_dir = config.directory
    if dist.is_main and not config.resume:  # held before the check for an earlier run's checkpoint: no race
        claim_run_dir(run_dir, "train", config.force)
    checkpoint = open_run(run_dir, config.resume)
    if dist.is_main and config.resume:  # the checkpoint read as effnet's own: effnet may replace it
        claim_run_dir(run_dir, "train", config.force, own=(CHECKPOINT_NAME,))
    warmup = config.warmup_epochs
    if warmup is None:
        warmup = default_warmup_epochs(config.epochs)
        stored = checkpoint["settings"].get("warmup_epochs") if checkpoint is not None else None
        if isinstance(stored, (int, float)) and not isinstance(stored, bool):
            warmup = float(stored)
    data = config.data if config.data in ("digits", "synthetic") else str(Path(config.data).expanduser().resolve())
    settings = TrainSettings(
        data=data, resolution=size, epochs=config.epochs, batch_size=config.batch_size,
        lr=paper_lr(config.batch_size) if config.lr is None else config.lr, warmup_epochs=warmup, seed=config.seed,
        weight_decay=config.weight_decay, label_smoothing=config.label_smoothing, ema_decay=config.ema_decay,
        precise_bn_batches=config.precise_bn, augment=augment)
    check_run(trained, images, settings, checkpoint, run_dir / CHECKPOINT_NAME, dist)
    init = initial_weights(config.init, trained) if config.init is not None else None
    started_from = init_record(init, checkpoint)
    recorded = settings.as_dict() | {"compile": config.compiled, "decode": config.decode,  # a resumed run may switch
                                     "init": started_from}
    if dist.is_main:
        write_run_record(run_dir, "train", {**recorded, "spec": spec_to_dict(trained)})
        classes = (f"num_classes {config.spec.num_classes} → {trained.num_classes} from the data"
                   if config.spec.num_classes != trained.num_classes else f"{trained.num_classes} classes")
        monitor.describe(f"{config.spec.name} @ {size} px on {images.name} ({len(images.train)} train, "
                         f"{len(images.val)} val images; {classes}; augment {augment}); lr {settings.lr:g}"
                         f"{' (0.256·batch/4096)' if config.lr is None else ''}, warm-up {settings.warmup_epochs:g} "
                         f"epochs" + (f"; resuming after epoch {checkpoint['epoch']}" if checkpoint else "")
                         + (f"; starting from {config.init} ({init.record['library']} {init.record['weights']}: "
                            f"{len(init.record['loaded'])} layers loaded, not loaded: "
                            f"{', '.join(init.record['not_loaded']) or 'none'})" if init is not None else ""))
    with distributed_session(dist, config.device):
        result = train(trained, images, settings, run_dir, device=config.device, checkpoint=checkpoint,
                       monitor=monitor if dist.is_main else None, dist=dist, compiled=config.compiled,
                       loader_workers=config.loader_workers, decode=config.decode, init=init)
    outcome = TrainOutcome(spec=trained, settings=settings, result=result if dist.is_main else None,
                           world_size=dist.world_size, init=started_from, deployment=deployment_record(images))
    if dist.is_main:
        data = {**data_record(images), "skipped": len(result.skipped), "skipped_files": list(result.skipped[:20])}
        write_run_record(run_dir, "train", {**recorded, "spec": spec_to_dict(trained), "data": data},
                         outcome.as_dict())
    return outcome
