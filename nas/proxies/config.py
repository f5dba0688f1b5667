"""What decides a proxy's scores (`ProxyConfig`, checked as the command line's settings) and where it computes
(`ProxyRuntime`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effnet.nas import checks
from effnet.nas.data.builtin import BUILTIN_SOURCES
from effnet.nas.errors import SettingError
from effnet.nas.proxies.elastic import KERNEL_SHARING
from effnet.nas.proxies.names import PROXY_NAMES

AUGMENTS = ("auto", "none", "light", "paper")
SUPERNET_RECIPES = ("uniform", "sandwich")
OP_SHARING = ("separate", "nested")
SUPERNET_SETTINGS = ("supernet_epochs", "supernet_kernels", "supernet_recipe", "supernet_ops")


@dataclass(frozen=True)
class ProxyConfig:
    """Everything that decides a proxy's scores, but the seed (which the study holds).

    Setting names in errors are the command line's: `proxy`, `proxy_epochs`, `proxy_resolution`, ...
    """

    name: str = "train"
    data: str = "digits"
    """`digits`, `synthetic` or an image-folder path."""
    epochs: int = 3
    resolution: int = 32
    """Proxy image size; the spec's own resolution is replaced by this one."""
    batch_size: int = 64
    lr: float = 0.01
    """Peak learning rate of AdamW's one-cycle schedule. Measured on digits at 32 px, 3 epochs, for the
    reference B0 initialised as the TensorFlow reference does (one seed; val top-1): peak 0.001 -> 0.51,
    0.002 -> 0.69, 0.004 -> 0.76, 0.006 -> 0.69, 0.01 -> 0.86, 0.02 -> 0.85. (With the former He init,
    fan-out over C·k² for depthwise convs too, 0.002 was best and 0.01 stayed near chance.)"""
    weight_decay: float = 0.05
    """AdamW weight decay on conv and linear weights, not on BatchNorm parameters or biases
    (B0 as above, with the former init at lr 0.002: decay 0 -> 0.83, 0.05 -> 0.85, 0.2 -> 0.81)."""
    max_train_batches: int | None = None
    """Cap on training steps per epoch, for tests and benchmarks (None: whole epochs)."""
    train_images: int | None = None
    """Images the proxy trains on, drawn per class from what is not held out (None: all of them)."""
    val_images: int | None = None
    """Training images held out, per class, to score candidates on (None: a fifth, at most 50,000)."""
    augment: str = "auto"
    """Training augmentation: none, light (random resized crop and flip), paper (and AutoAugment);
    auto is light for an image folder and none for the built-in data."""
    supernet_epochs: int = 200
    """Epochs the supernet trains (each step one random path of the FLOPs band), for `supernet`. On digits
    (12 candidates of the 400M band against 8-epoch trainings) 60 epochs left every path near chance and
    ranked no better than chance; 200 ranked at Kendall tau 0.53 (separate kernels, bench/RESULTS.md)."""
    supernet_kernels: str = "separate"
    """How a stage's kernel choices share weights in the supernet: `separate`, each kernel size has its own
    weights; `shared`, a smaller kernel is the centre of the largest (OFA's elastic kernel, without its
    transformation matrices), which ranked worse on digits with `separate` ops (tau -0.08 against 0.53 at 200
    epochs) and is the one that lets a `nested` supernet learn (`bench/bench_supernet_choices.py`);
    `transformed`, the centre of the next larger kernel mapped by a learned matrix per layer and smaller size
    (OFA's, with them)."""
    supernet_recipe: str = "uniform"
    """What a step of the supernet's training trains: `uniform`, one random in-band path on the labels;
    `sandwich`, the band's largest path on the labels and its smallest and two random ones on the largest's
    predictions, one optimizer step (BigNAS; `effnet.nas.proxies.supernet_recipes`)."""
    supernet_ops: str = "separate"
    """How a layer's block-type choices share weights in the supernet: `separate`, an op of its own per block
    type and expand ratio; `nested` (Once-for-All), mbconv's expand ratios above 1 as leading channels of the
    largest one's expansion, dsconv and expand-1 mbconv on one op, conv on its own, identity-capable layers
    starting at zero scale (`effnet.nas.proxies.supernet`). Only where every choice nests (the
    efficientnet-nested space) did a supernet learn on digits (`bench/bench_supernet_choices.py`)."""

    def __post_init__(self) -> None:
        checks.choice("proxy", self.name, PROXY_NAMES)
        if not isinstance(self.data, str) or not self.data:
            raise SettingError("data", f"must be digits, synthetic or an image-folder path, got {self.data!r}")
        checks.whole("proxy_epochs", self.epochs, low=1, high=10_000)
        checks.whole("proxy_resolution", self.resolution, low=8, high=4096)
        checks.whole("batch_size", self.batch_size, low=2, high=65_536)
        checks.number("proxy_lr", self.lr, low=0, low_open=True)
        checks.number("proxy_weight_decay", self.weight_decay, low=0)
        if self.max_train_batches is not None:
            checks.whole("max_train_batches", self.max_train_batches, low=1)
        if self.train_images is not None:
            checks.whole("proxy_train_images", self.train_images, low=2)
        if self.val_images is not None:
            checks.whole("proxy_val_images", self.val_images, low=1)
        checks.choice("augment", self.augment, AUGMENTS)
        checks.whole("supernet_epochs", self.supernet_epochs, low=1, high=10_000)
        checks.choice("supernet_kernels", self.supernet_kernels, KERNEL_SHARING)
        checks.choice("supernet_recipe", self.supernet_recipe, SUPERNET_RECIPES)
        checks.choice("supernet_ops", self.supernet_ops, OP_SHARING)

    @property
    def augmentation(self) -> str:
        """The augmentation in effect (`auto` resolved for the data source)."""
        if self.augment != "auto":
            return self.augment
        return "none" if self.data in BUILTIN_SOURCES else "light"

    def fingerprint(self) -> dict[str, Any]:
        """The settings as a study records them; a data folder by its absolute path. The supernet's settings
        only for the supernet, so studies of the other proxies keep the fingerprint they were created with (and
        its recipe and op sharing only where they are not `uniform` and `separate`, the one way there was before, for
        the same reason)."""
        data = self.data if self.data in BUILTIN_SOURCES else str(Path(self.data).expanduser().resolve())
        settings = {**dataclasses.asdict(self), "data": data, "augment": self.augmentation}
        if self.name != "supernet":
            for key in SUPERNET_SETTINGS:
                del settings[key]
        else:  # a setting at the one value there was before it was a choice is not named: studies resume as they were
            for key, before in (("supernet_recipe", "uniform"), ("supernet_ops", "separate")):
                if settings[key] == before:
                    del settings[key]
        return settings


@dataclass(frozen=True)
class ProxyRuntime:
    """Where and how a proxy computes: `device` (auto, cpu, cuda, cuda:N), the seed of its trainings and
    draws, CPU threads while scoring (None: leave torch's setting alone), DataLoader worker processes
    (None: none for data in memory, else from the cores) and the cache directory (None: the default)."""

    device: str = "cpu"
    seed: int = 0
    threads: int | None = None
    loader_workers: int | None = None
    cache_dir: Path | None = None
