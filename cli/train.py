"""`effnet train`: train a spec to a real accuracy with the paper's recipe, resumable, DDP under torchrun."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from effnet.cli.common import clean_input_errors, console, emit_json, progress_console, set_run_dir
from effnet.cli.options import check_run_dir
from effnet.nas.data.sources import load_data
from effnet.nas.training.runtime import configure_allocator, resolve_device
from effnet.nas.study.report import write_run_record
from effnet.nas.net.spec import NetworkSpec, load_spec, spec_to_dict
from effnet.nas.training.trainer import (CHECKPOINT_NAME, PAPER_BATCH, PAPER_LR, TrainMonitor, TrainResult, TrainSettings,
                                 check_run, default_warmup_epochs, distributed_from_env, distributed_session, open_run,
                                 paper_lr, train as train_spec, training_spec)

TABLE_EPOCHS = 10
"""The end-of-run table shows at most this many of the last epochs."""


class ProgressMonitor(TrainMonitor):
    """A rich progress bar over all steps of the run, with the last epoch's accuracies."""

    def __init__(self, enabled: bool):
        self.progress = Progress(
            TextColumn("[bold]train[/] {task.fields[epoch]}"), BarColumn(bar_width=24), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
            console=progress_console, disable=not enabled,
        )
        self.task = self.progress.add_task("train", total=None, epoch="", status="")
        self.epochs = 0

    def started(self, first_epoch: int, epochs: int, steps_per_epoch: int) -> None:
        self.epochs = epochs
        self.progress.update(self.task, total=epochs * steps_per_epoch, completed=(first_epoch - 1) * steps_per_epoch,
                             epoch=f"epoch {min(first_epoch, epochs)}/{epochs}")

    def step(self) -> None:
        self.progress.advance(self.task)

    def epoch_done(self, record: dict[str, float]) -> None:
        epoch = int(record["epoch"])
        self.progress.update(self.task, epoch=f"epoch {min(epoch + 1, self.epochs)}/{self.epochs}",
                             status=f"top-1 {record['val_top1']:.3f} EMA {record['ema_val_top1']:.3f} "
                                    f"loss {record['train_loss']:.3f}")


def default_run_dir(spec: NetworkSpec) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", spec.name).strip("-.") or "network"
    return Path("runs") / f"train-{safe}"


def summary(spec: NetworkSpec, settings: TrainSettings, result: TrainResult, run_dir: Path,
            world_size: int) -> dict[str, Any]:
    return {
        "spec": spec.name, "run_dir": str(run_dir), "data": settings.data, "num_classes": spec.num_classes,
        "resolution": spec.resolution, "batch_size": settings.batch_size, "lr": settings.lr,
        "warmup_epochs": settings.warmup_epochs, "device": result.device, "world_size": world_size,
        "epochs": result.epochs, "resumed_from": result.resumed_from,
        "top1": result.top1, "ema_top1": result.ema_top1,
        "best_top1": result.best_top1, "best_epoch": result.best_epoch, "best_weights": result.best_weights,
        "checkpoint": str(result.checkpoint), "metrics_csv": str(result.metrics),
        "seconds": round(result.seconds, 2),
    }


def print_result(result: TrainResult, data: dict[str, Any]) -> None:
    table = Table(title=f"{data['spec']} on {data['data']} @ {data['resolution']} px, {data['num_classes']} classes")
    for column in ("epoch", "train loss", "top-1", "EMA top-1", "lr", "seconds"):
        table.add_column(column, justify="right")
    for row in result.history[-TABLE_EPOCHS:]:
        table.add_row(f"{row['epoch']:.0f}", f"{row['train_loss']:.4f}", f"{row['val_top1']:.4f}",
                      f"{row['ema_val_top1']:.4f}", f"{row['lr']:.3g}", f"{row['seconds']:.1f}")
    console.print(table)
    console.print(f"top-1 {data['top1']:.4f} (raw), {data['ema_top1']:.4f} (EMA) after {data['epochs']} epochs; "
                  f"best {data['best_top1']:.4f} ({data['best_weights']} weights, epoch {data['best_epoch']}); "
                  f"{data['seconds']:.0f} s")
    console.print(f"checkpoint: {data['checkpoint']}  metrics: {data['metrics_csv']}")


@clean_input_errors
def train(
    spec_path: str = typer.Argument(..., metavar="SPEC.yaml", help="The network spec to train (a family member, say)."),
    data: str = typer.Option("digits", "--data", help="digits (embedded, real), synthetic, or an image-folder path."),
    epochs: int = typer.Option(30, "--epochs", help="Epochs to train (the paper: 350); a resumed run may raise it."),
    batch_size: int = typer.Option(64, "--batch-size", help="Global batch, split over torchrun's processes."),
    lr: Optional[float] = typer.Option(None, "--lr", help=f"Peak learning rate (default {PAPER_LR}·batch/{PAPER_BATCH}, the paper's rule)."),
    resolution: Optional[int] = typer.Option(None, "--resolution", help="Image size (default the spec's own; e.g. 32 for digits)."),
    warmup_epochs: Optional[float] = typer.Option(None, "--warmup-epochs", help="Linear warm-up (default 5, or a tenth of a shorter run; on --resume the checkpoint's)."),
    ema_decay: float = typer.Option(0.9999, "--ema-decay", help="Decay of the weights' moving average (warmed up as (1+n)/(10+n))."),
    label_smoothing: float = typer.Option(0.1, "--label-smoothing"),
    weight_decay: float = typer.Option(1e-5, "--weight-decay", help="L2 on all weights but BatchNorm's."),
    precise_bn: int = typer.Option(10, "--precise-bn", help="Recompute BatchNorm statistics over this many training batches before each evaluation (PreciseBN); 0 keeps the moving averages."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N (bf16 autocast on CUDA; channels_last on both)."),
    compiled: bool = typer.Option(False, "--compile", help="torch.compile the training step: for long CUDA runs; on CPU it measured slower, after a minute of compiling."),
    seed: int = typer.Option(0, "--seed"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run directory (default runs/train-<spec name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run directory's checkpoint.pt."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object instead of tables."),
) -> None:
    """Train a spec with the EfficientNet recipe (RMSProp, warm-up + exponential decay, EMA), checkpointing every epoch.

    The spec's num_classes and input channels are replaced by the data's. Under torchrun every process trains its share of each batch (DistributedDataParallel); only rank 0 writes files.
    """
    dist = distributed_from_env()
    resolve_device(device)
    configure_allocator()
    spec = load_spec(spec_path)
    size = spec.resolution if resolution is None else resolution
    images = load_data(data, size, seed=seed)
    trained = training_spec(spec, images, size)
    run_dir = run_dir or default_run_dir(spec)
    checkpoint = open_run(run_dir, resume)
    if warmup_epochs is None:
        warmup_epochs = default_warmup_epochs(epochs)
        stored = checkpoint["settings"].get("warmup_epochs") if checkpoint is not None else None
        if isinstance(stored, (int, float)) and not isinstance(stored, bool):
            warmup_epochs = float(stored)
    settings = TrainSettings(
        data=data if data in ("digits", "synthetic") else str(Path(data).expanduser().resolve()),
        resolution=size, epochs=epochs, batch_size=batch_size, lr=paper_lr(batch_size) if lr is None else lr,
        warmup_epochs=warmup_epochs, seed=seed, weight_decay=weight_decay, label_smoothing=label_smoothing,
        ema_decay=ema_decay, precise_bn_batches=precise_bn,
    )
    check_run(trained, images, settings, checkpoint, run_dir / CHECKPOINT_NAME, dist)
    recorded = settings.as_dict() | {"compile": compiled}  # speed only: a resumed run may switch it
    talk = dist.is_main and not as_json
    if dist.is_main:
        set_run_dir(run_dir)
        check_run_dir(run_dir)
        write_run_record(run_dir, "train", recorded, {"spec": spec_to_dict(trained), "result": None})
    if talk:
        classes = (f"num_classes {spec.num_classes} → {trained.num_classes} from the data"
                   if spec.num_classes != trained.num_classes else f"{trained.num_classes} classes")
        progress_console.print(f"{spec.name} @ {size} px on {images.name} ({len(images.train_y)} train, "
                               f"{len(images.val_y)} val images; {classes}); lr {settings.lr:g}"
                               f"{' (0.256·batch/4096)' if lr is None else ''}, warm-up {settings.warmup_epochs:g} "
                               f"epochs" + (f"; resuming after epoch {checkpoint['epoch']}" if checkpoint else ""))
    monitor = ProgressMonitor(enabled=talk)
    try:
        with distributed_session(dist, device), monitor.progress:
            result = train_spec(trained, images, settings, run_dir, device=device, checkpoint=checkpoint,
                                monitor=monitor if dist.is_main else None, dist=dist, compiled=compiled)
    except KeyboardInterrupt:
        saved = run_dir / CHECKPOINT_NAME
        if dist.is_main and saved.exists():
            progress_console.print(f"interrupted: {saved} holds the last finished epoch; "
                                   "rerun with --resume to continue")
        elif dist.is_main:
            progress_console.print("interrupted before the first epoch finished; nothing to resume")
        raise typer.Exit(130) from None
    if not dist.is_main:
        return
    data_out = summary(trained, settings, result, run_dir, dist.world_size)
    write_run_record(run_dir, "train", recorded, {"spec": spec_to_dict(trained), "result": data_out})
    if as_json:
        emit_json(data_out)
    else:
        print_result(result, data_out)
