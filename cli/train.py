"""`effnet train`: train a spec to a real accuracy with the paper's recipe, resumable, DDP under torchrun."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import typer

from effnet.cli import options
from effnet.cli.common import (
    ProgressBar,
    clean_input_errors,
    console,
    emit_json,
    literal,
    progress_console,
    say_interrupted,
    set_run_dir,
    stop_signal,
    warn_skipped,
)
from effnet.nas.progress import Progress

TABLE_EPOCHS = 10
"""The end-of-run table shows at most this many of the last epochs."""


class TrainProgress:
    """The library's training `Progress` on the shared progress bar: the run's description as a line of its own,
    then the steps, each epoch's accuracies and loss as its status."""

    def __init__(self, bar: ProgressBar):
        self.bar = bar
        self.started = False

    def __call__(self, progress: Progress) -> None:
        if progress.preparing:
            if self.bar.enabled:
                progress_console.print(literal(progress.status), soft_wrap=True)
        elif progress.metrics is not None:
            record = progress.metrics
            self.bar.update(
                stage=progress.status,
                line=True,
                status=f"top-1 {record['val_top1']:.3f} EMA {record['ema_val_top1']:.3f} "
                f"loss {record['train_loss']:.3f}",
            )
        else:
            self.bar.update(progress.done, progress.total, stage=progress.status, line=not self.started)
            self.started = True


def print_result(history: list[dict[str, float]], data: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"{literal(data['spec'])} on {literal(data['data'])} @ {data['resolution']} px, "
        f"{data['num_classes']} classes"
    )
    for column in ("epoch", "train loss", "top-1", "EMA top-1", "lr", "seconds"):
        table.add_column(column, justify="right")
    for row in history[-TABLE_EPOCHS:]:
        table.add_row(
            f"{row['epoch']:.0f}",
            f"{row['train_loss']:.4f}",
            f"{row['val_top1']:.4f}",
            f"{row['ema_val_top1']:.4f}",
            f"{row['lr']:.3g}",
            f"{row['seconds']:.1f}",
        )
    console.print(table)
    console.print(
        f"top-1 {data['top1']:.4f} (raw), {data['ema_top1']:.4f} (EMA) after {data['epochs']} epochs; "
        f"best {data['best_top1']:.4f} ({data['best_weights']} weights, epoch {data['best_epoch']}); "
        f"{data['seconds']:.0f} s"
    )
    console.print(
        literal(
            f"checkpoint: {data['checkpoint']} (last epoch, --resume)  best: {data['best_checkpoint']} "
            f"(export-model and predict take it from the run directory)  metrics: {data['metrics_csv']}"
        )
    )


@clean_input_errors({"precise_bn_batches": "--precise-bn"})
def train(
    spec_path: str = typer.Argument(..., metavar="SPEC.yaml", help="The network spec to train (a family member, say)."),
    data: str = options.DATA,
    epochs: int = typer.Option(30, "--epochs", help="Epochs to train (the paper: 350); a resumed run may raise it."),
    batch_size: int = typer.Option(64, "--batch-size", help="Global batch, split over torchrun's processes."),
    lr: float | None = typer.Option(
        None, "--lr", help="Peak learning rate (default 0.256·batch/4096, the paper's rule)."
    ),
    resolution: int | None = typer.Option(
        None, "--resolution", help="Image size (default the spec's own; e.g. 32 for digits)."
    ),
    warmup_epochs: float | None = typer.Option(
        None,
        "--warmup-epochs",
        help="Linear warm-up (default 5, or a tenth of a shorter run; on --resume the checkpoint's).",
    ),
    ema_decay: float = typer.Option(
        0.9999, "--ema-decay", help="Decay of the weights' moving average (warmed up as (1+n)/(10+n))."
    ),
    label_smoothing: float = typer.Option(0.1, "--label-smoothing"),
    weight_decay: float = typer.Option(1e-5, "--weight-decay", help="L2 on all weights but BatchNorm's."),
    precise_bn: int = typer.Option(
        10,
        "--precise-bn",
        help="Recompute BatchNorm statistics over this many training batches before each evaluation (PreciseBN); "
        "0 keeps the moving averages.",
    ),
    augment: str = typer.Option(
        "auto",
        "--augment",
        help="none, light (random resized crop, flip), paper (+ AutoAugment's ImageNet policy); "
        "auto: paper for a folder, none for built-in data.",
    ),
    loader_workers: int | None = typer.Option(
        None,
        "--loader-workers",
        help="DataLoader processes per training process (default: from the cores; none for built-in data).",
    ),
    decode: str = typer.Option(
        "workers",
        "--decode",
        help="workers: decode in the DataLoader processes; device: JPEGs in batches on the training device "
        "(nvjpeg on CUDA).",
    ),
    device: str = typer.Option(
        "auto", "--device", help="auto | cpu | cuda | cuda:N (bf16 autocast on CUDA; channels_last on both)."
    ),
    compiled: bool = typer.Option(
        False,
        "--compile",
        help="torch.compile the training step: for long CUDA runs; on CPU it measured slower, after a minute of "
        "compiling.",
    ),
    seed: int = typer.Option(0, "--seed"),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Run directory (default runs/train-<spec name>)."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue from the run directory's checkpoint.pt (the last epoch; best.pt beside it keeps the best one).",
    ),
    force: bool = options.FORCE,
    init: Path | None = typer.Option(
        None,
        "--init",
        help="Start from these weights: an effnet checkpoint (its EMA weights) or a timm or torchvision "
        "EfficientNet state dict; a classifier for another class count is replaced. run.yaml lists the layers "
        "loaded and not.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object instead of tables."),
) -> None:
    """Train a spec with the EfficientNet recipe (RMSProp, warm-up + exponential decay, EMA), checkpointing
    every epoch.

    The spec's num_classes and input channels are replaced by the data's. Under torchrun every process trains its
    share of each batch (DistributedDataParallel); only rank 0 writes files.
    """
    from effnet.nas.net.spec_file import load_spec
    from effnet.nas.training.distributed import distributed_from_env
    from effnet.nas.training.job import TrainConfig
    from effnet.nas.training.loop import CHECKPOINT_NAME
    from effnet.nas.training.runtime import silence_cuda_toolkit_notice
    from effnet.nas.training.trainer import train_network

    config = TrainConfig(
        spec=load_spec(spec_path),
        data=data,
        resolution=resolution,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        warmup_epochs=warmup_epochs,
        ema_decay=ema_decay,
        label_smoothing=label_smoothing,
        weight_decay=weight_decay,
        precise_bn=precise_bn,
        augment=augment,
        loader_workers=loader_workers,
        decode=decode,
        device=device,
        compiled=compiled,
        seed=seed,
        run_dir=run_dir,
        resume=resume,
        init=init,
        force=force,
    )
    if compiled:
        silence_cuda_toolkit_notice()  # the compiler's import of cpp_extension logs it on any GPU-less toolkit box
    main = distributed_from_env().is_main
    if main:
        set_run_dir(config.directory)
    try:
        with ProgressBar("train", enabled=main, plain=as_json) as bar:
            result = train_network(config, on_progress=TrainProgress(bar))
    except KeyboardInterrupt:
        saved = config.directory / CHECKPOINT_NAME
        if main and saved.exists():
            say_interrupted(f"interrupted: {saved} holds the last finished epoch; rerun with --resume to continue")
        elif main:
            say_interrupted("interrupted before the first epoch finished; nothing to resume")
        raise typer.Exit(128 + (stop_signal() or signal.SIGINT)) from None
    if result is None:
        return
    summary = result.as_dict()
    if result.skipped:
        warn_skipped({"skipped": len(result.skipped), "skipped_files": list(result.skipped)})
    if as_json:
        emit_json(summary)
    else:
        print_result(result.history, summary)
