"""What `train_network` takes and gives: `TrainConfig`, a caller's request, and `TrainResult`, a finished run."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effnet.nas import checks
from effnet.nas.data.transforms import AUGMENTS
from effnet.nas.errors import SettingError
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.training.recipe import Recipe, check_recipe_numbers


@dataclass(frozen=True)
class TrainConfig:
    """`train_network`'s settings: the spec (its classes and input channels are replaced by the data's),
    the data at `resolution` (None: the spec's), the paper's recipe with `lr` None meaning
    0.256 * batch / 4096 and `warmup_epochs` None meaning 5 (a tenth of a shorter run; a resumed run's
    own), the device (auto, cpu, cuda, cuda:N), and the run directory (None: runs/train-<spec name>).
    The run settles these into its `Recipe`."""

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
        checks.instance("spec", self.spec, NetworkSpec, "a NetworkSpec (effnet.load_spec(path))")
        checks.seed("seed", self.seed)
        check_recipe_numbers(
            self.epochs,
            self.batch_size,
            self.lr,
            self.warmup_epochs,
            self.ema_decay,
            self.label_smoothing,
            self.weight_decay,
            self.precise_bn,
        )
        if self.resolution is not None:
            checks.whole("resolution", self.resolution, low=1, high=4096)
        checks.choice("augment", self.augment, ("auto", *AUGMENTS))
        if self.loader_workers is not None:
            checks.whole("loader_workers", self.loader_workers, low=0, high=256)
        checks.choice("decode", self.decode, ("workers", "device"))
        if self.init is not None and self.resume:
            raise SettingError(
                "init",
                "starts a new run from weights; a resumed run continues from its own "
                "checkpoint: drop one of --init and --resume",
            )

    @property
    def directory(self) -> Path:
        if self.run_dir is not None:
            return Path(self.run_dir)
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", self.spec.name).strip("-.") or "network"
        return Path("runs") / f"train-{safe}"


@dataclass(frozen=True)
class TrainResult:
    """A finished training run: the spec as trained with its recipe, what the epochs measured, and the files in
    the run directory."""

    spec: NetworkSpec
    recipe: Recipe
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
    world_size: int
    skipped: tuple[str, ...] = ()
    """Files that did not decode (left out, each named with the reason)."""
    skipped_val: int = 0
    """How many of them are validation images."""
    init: dict[str, Any] | None = None
    """Where the weights started from (`InitialWeights.record`), None for the initialisation."""
    deployment: dict[str, Any] = dataclasses.field(default_factory=dict)
    """`deployment_record`: class names, resolution and evaluation view."""

    def as_dict(self) -> dict[str, Any]:
        recipe = self.recipe
        return {
            "spec": self.spec.name,
            "run_dir": str(self.checkpoint.parent),
            "data": recipe.data,
            "num_classes": self.spec.num_classes,
            "resolution": self.spec.resolution,
            "batch_size": recipe.batch_size,
            "lr": recipe.lr,
            "warmup_epochs": recipe.warmup_epochs,
            "device": self.device,
            "world_size": self.world_size,
            "epochs": self.epochs,
            "resumed_from": self.resumed_from,
            "top1": self.top1,
            "ema_top1": self.ema_top1,
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "best_weights": self.best_weights,
            "checkpoint": str(self.checkpoint),
            "best_checkpoint": str(self.best_checkpoint),
            "metrics_csv": str(self.metrics),
            "seconds": round(self.seconds, 2),
            "augment": recipe.augment,
            "skipped_files": len(self.skipped),
            "init": None
            if self.init is None
            else {
                **{k: self.init[k] for k in ("file", "library", "weights")},
                "layers_loaded": len(self.init["loaded"]),
                "layers_not_loaded": self.init["not_loaded"],
            },
            **self.deployment,
        }
