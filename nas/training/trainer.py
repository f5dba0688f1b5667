"""`train_network`: one spec trained to a real accuracy with the paper's recipe, resumable, single process or DDP.

The job wires the parts: the data at the run's resolution, the spec as trained (the data's classes and
channels), the run directory and its checkpoint to resume, the settled `Recipe`, the weights to start from,
the `torchrun` process group, the epochs (`effnet.nas.training.loop`), and run.yaml before and after.
"""

from __future__ import annotations

from pathlib import Path

from effnet.nas import checks
from effnet.nas.data.sources import DataSplits, data_record, is_builtin, training_data
from effnet.nas.errors import InputError
from effnet.nas.memory import check_loader_workers
from effnet.nas.net.limits import check_memory
from effnet.nas.net.spec import InvalidSpec, NetworkSpec
from effnet.nas.net.spec_file import spec_from_dict, spec_to_dict
from effnet.nas.outputs import claim_run_dir, holding_run_dirs
from effnet.nas.progress import Progress, ProgressCallback
from effnet.nas.record import RUN_RECORD, write_run_record
from effnet.nas.training.checkpoint import BEST_NAME
from effnet.nas.training.distributed import distributed_from_env, distributed_session
from effnet.nas.training.job import TrainConfig, TrainResult
from effnet.nas.training.loop import CHECKPOINT_NAME, METRICS_NAME, check_run, init_record, open_run, train
from effnet.nas.training.recipe import Recipe, default_warmup_epochs, paper_lr
from effnet.nas.training.runtime import resolve_device
from effnet.nas.training.weights import initial_weights

TRAIN_FILES = (RUN_RECORD, CHECKPOINT_NAME, BEST_NAME, METRICS_NAME)
"""The files a training writes in its run directory."""


def training_spec(spec: NetworkSpec, data: DataSplits, resolution: int) -> NetworkSpec:
    """The spec as trained: the data's classes and channels at `resolution`, validated again."""
    source = f"{spec.name} at {resolution} px"
    try:
        changed = spec.replace(resolution=resolution, num_classes=data.num_classes, in_channels=data.in_channels)
    except InvalidSpec as err:
        raise InputError(f"{source}: {err}") from None
    return spec_from_dict(spec_to_dict(changed), source)


@holding_run_dirs()
def train_network(config: TrainConfig, on_progress: ProgressCallback | None = None) -> TrainResult | None:
    """Train `config.spec` with the paper's recipe, checkpointing every epoch into the run directory and
    writing run.yaml; under `torchrun` each process trains its share and only rank 0 writes files and
    returns the result (the others return None).

    On rank 0 `on_progress` first gets the run described (what is trained on what data, the learning rate,
    the resume or the weights started from) as the status of a `preparing` event, then the epochs' progress
    (`train` in `effnet.nas.training.loop`: steps, and each epoch's record as `metrics`)."""
    checks.instance("config", config, TrainConfig, "a TrainConfig (effnet.TrainConfig(spec, data=...))")
    dist = distributed_from_env()
    device = resolve_device(config.device)
    check_loader_workers(config.loader_workers)
    size = config.spec.resolution if config.resolution is None else config.resolution
    images = training_data(config.data, size, config.seed)
    augment = config.augment if config.augment != "auto" else "none" if is_builtin(config.data) else "paper"
    trained = training_spec(config.spec, images, size)
    if device.type == "cpu":  # a GPU's memory is its own: CUDA's out-of-memory error names it
        check_memory(trained, "train", batch=config.batch_size)
    run_dir = config.directory
    if dist.is_main and not config.resume:  # held before the check for an earlier run's checkpoint: no race
        claim_run_dir(run_dir, "train", config.force, writes=TRAIN_FILES)
    checkpoint = open_run(run_dir, config.resume)
    if dist.is_main and config.resume:  # the checkpoint read as effnet's own: effnet may replace it
        claim_run_dir(run_dir, "train", config.force, own=(CHECKPOINT_NAME,), writes=TRAIN_FILES)
    warmup = config.warmup_epochs
    if warmup is None:
        warmup = default_warmup_epochs(config.epochs)
        stored = checkpoint["settings"].get("warmup_epochs") if checkpoint is not None else None
        if isinstance(stored, (int, float)) and not isinstance(stored, bool):
            warmup = float(stored)
    data = config.data if is_builtin(config.data) else str(Path(config.data).expanduser().resolve())
    recipe = Recipe(
        data=data,
        resolution=size,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=paper_lr(config.batch_size) if config.lr is None else config.lr,
        warmup_epochs=warmup,
        seed=config.seed,
        weight_decay=config.weight_decay,
        label_smoothing=config.label_smoothing,
        ema_decay=config.ema_decay,
        precise_bn_batches=config.precise_bn,
        augment=augment,
    )
    check_run(trained, images, recipe, checkpoint, run_dir / CHECKPOINT_NAME, dist)
    init = initial_weights(config.init, trained) if config.init is not None else None
    started_from = init_record(init, checkpoint)
    recorded = recipe.as_dict() | {
        "compile": config.compiled,
        "decode": config.decode,  # a resumed run may switch
        "init": started_from,
    }
    if dist.is_main:
        write_run_record(run_dir, "train", {**recorded, "spec": spec_to_dict(trained)})
        if on_progress is not None:
            classes = (
                f"num_classes {config.spec.num_classes} → {trained.num_classes} from the data"
                if config.spec.num_classes != trained.num_classes
                else f"{trained.num_classes} classes"
            )
            if config.spec.in_channels != trained.in_channels:
                classes += f"; in_channels {config.spec.in_channels} → {trained.in_channels} from the data"
            on_progress(
                Progress(
                    0,
                    None,
                    preparing=True,
                    status=(
                        f"{config.spec.name} @ {size} px on {images.name} ({len(images.train)} train, "
                        f"{len(images.val)} val images; {classes}; augment {augment}); lr {recipe.lr:g}"
                        f"{' (0.256·batch/4096)' if config.lr is None else ''}, warm-up {recipe.warmup_epochs:g} "
                        f"epochs"
                        + (f"; resuming after epoch {checkpoint['epoch']}" if checkpoint else "")
                        + (
                            f"; starting from {config.init} ({init.record['library']} {init.record['weights']}: "
                            f"{len(init.record['loaded'])} layers loaded, not loaded: "
                            f"{', '.join(init.record['not_loaded']) or 'none'})"
                            if init is not None
                            else ""
                        )
                    ),
                )
            )
    with distributed_session(dist, config.device):
        result = train(
            trained,
            images,
            recipe,
            run_dir,
            device=config.device,
            checkpoint=checkpoint,
            on_progress=on_progress if dist.is_main else None,
            dist=dist,
            compiled=config.compiled,
            loader_workers=config.loader_workers,
            decode=config.decode,
            init=init,
        )
    if not dist.is_main:
        return None
    listed = data_record(images)  # the split sizes as listed; the images trained and validated on are fewer by
    skipped_train = len(result.skipped) - result.skipped_val  # the files that did not decode
    data_section = {
        **listed,
        "train_images": listed["train_images"] - skipped_train,
        "val_images": listed["val_images"] - result.skipped_val,
        "skipped": len(result.skipped),
        "skipped_files": list(result.skipped[:20]),
    }
    write_run_record(
        run_dir, "train", {**recorded, "spec": spec_to_dict(trained), "data": data_section}, result.as_dict()
    )
    return result
