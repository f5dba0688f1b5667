"""The architecture language: a network as a tree of frozen dataclasses, checked when it is built.

One spec type flows through every stage of effnet: the search samples it, the builder turns it
into a model, the counters count it, and scaling maps it to a bigger spec. A `NetworkSpec` checks
every field of itself and of its parts when it is made (also by `dataclasses.replace`), so a spec
built in Python meets the rules a spec file does; its YAML form is `effnet.nas.net.spec_file`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from effnet.nas.errors import InputError

BLOCK_TYPES = ("mbconv", "dsconv", "conv")
"""The MnasNet operator set: mobile inverted bottleneck, depthwise-separable conv, regular conv."""

MAX_INTEGER = 10_000_000
"""Largest integer a spec field takes (channels, repeats, resolution, classes): beyond any real network."""

ACTIVATIONS = ("silu", "relu", "relu6", "hardswish")

PADDINGS = ("symmetric", "same")
"""How convolutions pad: `symmetric` (kernel // 2 on every side, PyTorch's way) or `same` (TensorFlow's "SAME":
where a conv strides, the padding a size needs to give ceil(size / stride), the odd pixel at the bottom and
right; the TensorFlow-ported weights, timm's `tf_efficientnet_*`, were trained with it). Both give the same
output sizes, so the same FLOPs."""
DEFAULT_PADDING = "symmetric"

POOL_SKIP: Literal["pool"] = "pool"
Skip = bool | Literal["pool"]
"""MnasNet's SkipOp: `True` (identity residual), `False` (no skip) or `"pool"` (pooling shortcut)."""
SKIP_CHOICES: tuple[Skip, ...] = (True, False, POOL_SKIP)


@dataclass(frozen=True)
class StemSpec:
    out_channels: int = 32
    kernel: int = 3
    stride: int = 2


@dataclass(frozen=True)
class StageSpec:
    """One stage: `repeats` blocks that share every choice; only the first one strides.

    `expand` is the MBConv expansion ratio; depthwise-separable and regular conv blocks have
    none, so it must be 1 for them. `se_ratio` sizes squeeze-excitation from the block's input
    channels (0 turns it off). `skip` is MnasNet's SkipOp: `True` keeps the identity shortcut
    wherever stride is 1 and the channels match; `"pool"` does too, and gives every other block a
    shortcut as well: average pooling (2x2, stride 2) where the block strides, then a 1x1 conv +
    BatchNorm where the channels change (ResNet-D's downsampling shortcut); `False` has none.

    A stage is checked as a part of the `NetworkSpec` that holds it, where an error can name it (`stages[2]`).
    """

    block: str
    repeats: int
    kernel: int
    stride: int
    expand: int
    out_channels: int
    se_ratio: float = 0.25
    skip: Skip = True

    @property
    def summary(self) -> str:
        """A short token: block (with expand ratio), kernel, repeats, channels, `+se`, `-skip` or `+pool`;
        e.g. `mb6k5x3c40+se` is three MBConv6 5x5 blocks to 40 channels with squeeze-excitation."""
        block = {"mbconv": f"mb{self.expand}", "dsconv": "ds", "conv": "cv"}.get(self.block, self.block)
        skip = {True: "", False: "-skip", POOL_SKIP: "+pool"}[self.skip]
        return f"{block}k{self.kernel}x{self.repeats}c{self.out_channels}" + ("+se" if self.se_ratio else "") + skip


@dataclass(frozen=True)
class HeadSpec:
    out_channels: int = 1280


@dataclass(frozen=True)
class BatchNormSpec:
    """Batch-norm settings. `decay` is TensorFlow's moving-average decay (PyTorch momentum = 1 - decay)."""

    decay: float = 0.99
    epsilon: float = 1e-3


@dataclass(frozen=True)
class NetworkSpec:
    """A whole network. Made (or replaced), it checks its fields and its parts' (`_check_network`), naming a bad
    one by its path as a spec file writes it (`stages[2].kernel`); the parts are checked as parts of a network."""

    stages: tuple[StageSpec, ...]
    name: str = "network"
    resolution: int = 224
    num_classes: int = 1000
    in_channels: int = 3
    stem: StemSpec = StemSpec()
    head: HeadSpec = HeadSpec()
    dropout: float = 0.2
    drop_connect: float = 0.2
    activation: str = "silu"
    batch_norm: BatchNormSpec = BatchNormSpec()
    padding: str = DEFAULT_PADDING
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_network(self)

    @property
    def total_stride(self) -> int:
        return self.stem.stride * math.prod(stage.stride for stage in self.stages)

    @property
    def num_blocks(self) -> int:
        return sum(stage.repeats for stage in self.stages)

    @property
    def summary(self) -> str:
        """The stages' tokens in one line (see `StageSpec.summary`)."""
        return " ".join(stage.summary for stage in self.stages)

    def replace(self, **changes: Any) -> NetworkSpec:
        return dataclasses.replace(self, **changes)


# -- checks -------------------------------------------------------------------------------------


class InvalidSpec(InputError):
    """A spec field with a value no network takes; the message is `<path>: <problem>`, the path as a spec file
    writes it (`stages[2].kernel`, `spec.resolution`), so that a reader can put the file's name before it."""


def _fail(where: str, key: str, problem: str) -> None:
    raise InvalidSpec(f"{where}.{key}: {problem}")


def _finite(value: int | float) -> bool:
    """True for a number a float can hold (YAML integers can be far larger)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def yaml_type(value: Any) -> str:
    """The kind of a value as YAML names it: `mapping`, `list`, `string`, `integer`, `number`, `null`..."""
    names = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "mapping",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _got(value: Any) -> str:
    """A wrong value as an error shows it: `null`, `string 'lots'`, `integer 3`."""
    return "null" if value is None else f"{yaml_type(value)} {value!r}"


def _integer(where: str, key: str, value: Any, minimum: int = 1) -> None:
    if type(value) is int and minimum <= value <= MAX_INTEGER:  # the common case, first: specs are made often
        return
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(where, key, f"must be an integer, got {_got(value)}")
    if value < minimum:
        _fail(where, key, f"must be at least {minimum}, got {value}")
    if value > MAX_INTEGER:
        _fail(where, key, f"must be at most {MAX_INTEGER:,}, got {value}")


def _number(part: Any, where: str, key: str, low: float, high: float, high_open: bool = True) -> None:
    """Check the number `part.<key>` lies in [low, high) (or [low, high]); an integer is stored as a float, as a
    spec file's reader has always given it."""
    value = getattr(part, key)
    if type(value) is float and low <= value and (value < high if high_open else value <= high):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        _fail(where, key, f"must be a number, got {_got(value)}")
    if value < low or value > high or (high_open and value == high):
        _fail(where, key, f"must lie in [{low}, {high}{')' if high_open else ']'}, got {value}")
    object.__setattr__(part, key, float(value))


def _choice(where: str, key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(where, key, f"must be one of {', '.join(choices)}; got {value!r}")


def _kernel(where: str, key: str, value: Any) -> None:
    _integer(where, key, value)
    if value % 2 == 0:
        _fail(where, key, f"must be odd (3, 5, 7, ...), got {value}")


def _stride(where: str, key: str, value: Any) -> None:
    _integer(where, key, value)
    if value not in (1, 2):
        _fail(where, key, f"must be 1 or 2, got {value}")


def _part(owner: str, key: str, value: Any, cls: type) -> None:
    if not isinstance(value, cls):
        _fail(owner, key, f"must be a {cls.__name__}, got {type(value).__name__}")


def _stage_in_range(stage: StageSpec) -> bool:
    """All of `_check_stage` at once, in one expression: the cheap answer for the usual stage, which is fine."""
    repeats, kernel, stride, expand, channels, se_ratio = (
        stage.repeats,
        stage.kernel,
        stage.stride,
        stage.expand,
        stage.out_channels,
        stage.se_ratio,
    )
    return (
        type(repeats) is int
        and type(kernel) is int
        and type(stride) is int
        and type(expand) is int
        and type(channels) is int
        and type(se_ratio) is float
        and type(stage.skip) is bool
        and 1 <= repeats <= MAX_INTEGER
        and 1 <= kernel <= MAX_INTEGER
        and kernel % 2 == 1
        and (stride == 1 or stride == 2)
        and 1 <= channels <= MAX_INTEGER
        and 0.0 <= se_ratio < 1.0
        and (stage.block == "mbconv" and 1 <= expand <= MAX_INTEGER or expand == 1 and stage.block in BLOCK_TYPES)
    )


def _check_stage(stage: StageSpec, where: str) -> None:
    _choice(where, "block", stage.block, BLOCK_TYPES)
    _integer(where, "expand", stage.expand)
    if stage.block != "mbconv" and stage.expand != 1:
        _fail(where, "expand", f"must be 1 for a {stage.block} block (only mbconv expands), got {stage.expand}")
    _integer(where, "repeats", stage.repeats)
    _kernel(where, "kernel", stage.kernel)
    _stride(where, "stride", stage.stride)
    _integer(where, "out_channels", stage.out_channels)
    _number(stage, where, "se_ratio", 0.0, 1.0)
    if type(stage.skip) is not bool and stage.skip != POOL_SKIP:
        _fail(where, "skip", f"must be true or false (the identity shortcut or none) or pool, got {_got(stage.skip)}")


def _check_network(spec: NetworkSpec) -> None:
    """Every field of `spec` and of its parts in range, in the order a spec file's reader has always reported
    them (stages, batch_norm, head, provenance, the network's own fields, stem); raises `InvalidSpec`."""
    stages = spec.stages
    if type(stages) is not tuple or not stages:
        _fail("spec", "stages", f"must be a non-empty tuple of StageSpec, got {yaml_type(stages)}")
    for index, stage in enumerate(stages):
        if not (type(stage) is StageSpec and _stage_in_range(stage)):
            _part("spec", f"stages[{index}]", stage, StageSpec)
            _check_stage(stage, f"stages[{index}]")
    if not _network_in_range(spec):
        _check_network_fields(spec)


def _network_in_range(spec: NetworkSpec) -> bool:
    """All of `_check_network_fields` at once, in one expression: the cheap answer for the usual spec."""
    bn, head, stem = spec.batch_norm, spec.head, spec.stem
    if not (type(bn) is BatchNormSpec and type(head) is HeadSpec and type(stem) is StemSpec):
        return False
    heads, resolution, classes, channels, stems, kernel, stride = (
        head.out_channels,
        spec.resolution,
        spec.num_classes,
        spec.in_channels,
        stem.out_channels,
        stem.kernel,
        stem.stride,
    )
    decay, epsilon, dropout, drop_connect = bn.decay, bn.epsilon, spec.dropout, spec.drop_connect
    return (
        type(heads) is int
        and type(resolution) is int
        and type(classes) is int
        and type(channels) is int
        and type(stems) is int
        and type(kernel) is int
        and type(stride) is int
        and 1 <= heads <= MAX_INTEGER
        and 1 <= resolution <= MAX_INTEGER
        and 1 <= classes <= MAX_INTEGER
        and 1 <= channels <= MAX_INTEGER
        and 1 <= stems <= MAX_INTEGER
        and 1 <= kernel <= MAX_INTEGER
        and kernel % 2 == 1
        and (stride == 1 or stride == 2)
        and type(decay) is float
        and type(epsilon) is float
        and type(dropout) is float
        and type(drop_connect) is float
        and 0.0 <= decay < 1.0
        and 1e-12 <= epsilon <= 1.0
        and 0.0 <= dropout < 1.0
        and 0.0 <= drop_connect < 1.0
        and type(spec.provenance) is dict
        and type(spec.name) is str
        and spec.name != ""
        and spec.activation in ACTIVATIONS
        and spec.padding in PADDINGS
    )


def _check_network_fields(spec: NetworkSpec) -> None:
    _part("spec", "batch_norm", spec.batch_norm, BatchNormSpec)
    _number(spec.batch_norm, "batch_norm", "decay", 0.0, 1.0)
    _number(spec.batch_norm, "batch_norm", "epsilon", 1e-12, 1.0, high_open=False)
    _part("spec", "head", spec.head, HeadSpec)
    _integer("head", "out_channels", spec.head.out_channels)
    if not isinstance(spec.provenance, Mapping):
        _fail("spec", "provenance", f"must be a mapping, got {yaml_type(spec.provenance)}")
    if not isinstance(spec.name, str) or not spec.name:
        _fail("spec", "name", f"must be a non-empty string, got {_got(spec.name)}")
    _integer("spec", "resolution", spec.resolution)
    _integer("spec", "num_classes", spec.num_classes)
    _integer("spec", "in_channels", spec.in_channels)
    _choice("spec", "activation", spec.activation, ACTIVATIONS)
    _number(spec, "spec", "dropout", 0.0, 1.0)
    _number(spec, "spec", "drop_connect", 0.0, 1.0)
    _choice("spec", "padding", spec.padding, PADDINGS)
    _part("spec", "stem", spec.stem, StemSpec)
    _integer("stem", "out_channels", spec.stem.out_channels)
    _kernel("stem", "kernel", spec.stem.kernel)
    _stride("stem", "stride", spec.stem.stride)
