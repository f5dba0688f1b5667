"""The architecture language: a network written as a YAML spec.

One spec type flows through every stage of effnet: the search samples it, the builder turns it
into a model, the counters count it, and scaling maps it to a bigger spec. `load_spec`,
`dump_spec` and `spec_from_dict` / `spec_to_dict` are exact inverses.

A spec file looks like this (one line per stage, like timm's block strings)::

    name: efficientnet-b0
    resolution: 224
    num_classes: 1000
    stem: {out_channels: 32, kernel: 3, stride: 2}
    stages:
    - {block: mbconv, repeats: 1, kernel: 3, stride: 1, expand: 1, out_channels: 16, se_ratio: 0.25, skip: true}
    ...
    head: {out_channels: 1280}
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Union

from effnet.nas.errors import InputError
from effnet.nas.files import atomic_write_text, yaml_text
from effnet.nas.inputs import load_yaml

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

POOL_SKIP = "pool"
Skip = Union[bool, Literal["pool"]]
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

    def replace(self, **changes: Any) -> "NetworkSpec":
        return dataclasses.replace(self, **changes)


# -- validation ---------------------------------------------------------------------------------

_KEY_ORDER = {
    NetworkSpec: (
        "name", "resolution", "num_classes", "in_channels", "activation", "dropout",
        "drop_connect", "batch_norm", "padding", "stem", "stages", "head", "provenance",
    ),
    StemSpec: ("out_channels", "kernel", "stride"),
    StageSpec: ("block", "repeats", "kernel", "stride", "expand", "out_channels", "se_ratio", "skip"),
    HeadSpec: ("out_channels",),
    BatchNormSpec: ("decay", "epsilon"),
}


class _Fields:
    """Reads typed fields out of one YAML mapping, naming the file and field in every error."""

    def __init__(self, data: Any, where: str, cls: type, source: str):
        self.where = where
        self.source = source
        if not isinstance(data, dict):
            self.fail(f"must be a mapping, got {_yaml_type(data)}")
        allowed = _KEY_ORDER[cls]
        unknown = [k for k in data if k not in allowed]
        if unknown:
            self.fail(f"unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}", key=None)
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in data]
        if missing:
            self.fail(f"missing required key {missing[0]!r}", key=None)
        self.data = data

    def fail(self, problem: str, key: str | None = None) -> None:
        path = f"{self.where}.{key}" if key else self.where
        raise InputError(f"{self.source}: {path}: {problem}")

    def has(self, key: str) -> bool:
        return key in self.data

    def integer(self, key: str, *, minimum: int = 1) -> int:
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"must be an integer, got {_got(value)}", key)
        if value < minimum:
            self.fail(f"must be at least {minimum}, got {value}", key)
        if value > MAX_INTEGER:
            self.fail(f"must be at most {MAX_INTEGER:,}, got {value}", key)
        return value

    def number(self, key: str, *, low: float, high: float, high_open: bool = False) -> float:
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            self.fail(f"must be a number, got {_got(value)}", key)
        if value < low or value > high or (high_open and value == high):
            bracket = ")" if high_open else "]"
            self.fail(f"must lie in [{low}, {high}{bracket}, got {value}", key)
        return float(value)

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.data[key]
        if value not in choices:
            self.fail(f"must be one of {', '.join(choices)}; got {value!r}", key)
        return value

    def text(self, key: str) -> str:
        value = self.data[key]
        if not isinstance(value, str) or not value:
            self.fail(f"must be a non-empty string, got {_got(value)}", key)
        return value

    def skip(self, key: str) -> Skip:
        value = self.data[key]
        if not isinstance(value, bool) and value != POOL_SKIP:
            self.fail(f"must be true or false (the identity shortcut or none) or pool, got {_got(value)}", key)
        return value

    def kernel(self, key: str) -> int:
        value = self.integer(key)
        if value % 2 == 0:
            self.fail(f"must be odd (3, 5, 7, ...), got {value}", key)
        return value

    def stride(self, key: str) -> int:
        value = self.integer(key)
        if value not in (1, 2):
            self.fail(f"must be 1 or 2, got {value}", key)
        return value


def _finite(value: int | float) -> bool:
    """True for a number a float can hold (YAML integers can be far larger)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _yaml_type(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
             dict: "mapping", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _got(value: Any) -> str:
    """A wrong value as an error shows it: `null`, `string 'lots'`, `integer 3`."""
    return "null" if value is None else f"{_yaml_type(value)} {value!r}"


def _stem(data: Any, source: str) -> StemSpec:
    f = _Fields(data, "stem", StemSpec, source)
    defaults = StemSpec()
    return StemSpec(
        out_channels=f.integer("out_channels") if f.has("out_channels") else defaults.out_channels,
        kernel=f.kernel("kernel") if f.has("kernel") else defaults.kernel,
        stride=f.stride("stride") if f.has("stride") else defaults.stride,
    )


def _stage(data: Any, index: int, source: str) -> StageSpec:
    f = _Fields(data, f"stages[{index}]", StageSpec, source)
    block = f.choice("block", BLOCK_TYPES)
    expand = f.integer("expand")
    if block != "mbconv" and expand != 1:
        f.fail(f"must be 1 for a {block} block (only mbconv expands), got {expand}", "expand")
    return StageSpec(
        block=block,
        repeats=f.integer("repeats"),
        kernel=f.kernel("kernel"),
        stride=f.stride("stride"),
        expand=expand,
        out_channels=f.integer("out_channels"),
        se_ratio=f.number("se_ratio", low=0.0, high=1.0, high_open=True) if f.has("se_ratio") else 0.25,
        skip=f.skip("skip") if f.has("skip") else True,
    )


def spec_from_dict(data: Any, source: str = "<spec>") -> NetworkSpec:
    """Validate a parsed YAML document and build a `NetworkSpec`; raises `InputError`."""
    f = _Fields(data, "spec", NetworkSpec, source)
    stages_data = data["stages"]
    if not isinstance(stages_data, list) or not stages_data:
        f.fail(f"must be a non-empty list of stages, got {_yaml_type(stages_data)}", "stages")
    stages = tuple(_stage(stage, i, source) for i, stage in enumerate(stages_data))
    defaults = NetworkSpec(stages=stages)
    bn = defaults.batch_norm
    if f.has("batch_norm"):
        g = _Fields(data["batch_norm"], "batch_norm", BatchNormSpec, source)
        bn = BatchNormSpec(
            decay=g.number("decay", low=0.0, high=1.0, high_open=True) if g.has("decay") else bn.decay,
            epsilon=g.number("epsilon", low=1e-12, high=1.0) if g.has("epsilon") else bn.epsilon,
        )
    head = defaults.head
    if f.has("head"):
        g = _Fields(data["head"], "head", HeadSpec, source)
        head = HeadSpec(out_channels=g.integer("out_channels") if g.has("out_channels") else head.out_channels)
    provenance = data.get("provenance")
    provenance = {} if provenance is None else provenance
    if not isinstance(provenance, dict):
        f.fail(f"must be a mapping, got {_yaml_type(provenance)}", "provenance")
    spec = NetworkSpec(
        name=f.text("name") if f.has("name") else defaults.name,
        resolution=f.integer("resolution") if f.has("resolution") else defaults.resolution,
        num_classes=f.integer("num_classes") if f.has("num_classes") else defaults.num_classes,
        in_channels=f.integer("in_channels") if f.has("in_channels") else defaults.in_channels,
        activation=f.choice("activation", ACTIVATIONS) if f.has("activation") else defaults.activation,
        dropout=f.number("dropout", low=0.0, high=1.0, high_open=True) if f.has("dropout") else defaults.dropout,
        drop_connect=(f.number("drop_connect", low=0.0, high=1.0, high_open=True)
                      if f.has("drop_connect") else defaults.drop_connect),
        batch_norm=bn,
        padding=f.choice("padding", PADDINGS) if f.has("padding") else defaults.padding,
        stem=_stem(data["stem"], source) if f.has("stem") else defaults.stem,
        stages=stages,
        head=head,
        provenance=provenance,
    )
    if spec.resolution < spec.total_stride:
        f.fail(f"{spec.resolution} px cannot be reached by the strides: stem and stages downsample "
               f"{spec.total_stride}x, so the resolution must be at least {spec.total_stride}", "resolution")
    from effnet.nas.net.limits import check_cost  # it counts specs with the counters, which import this module

    check_cost(spec, source)
    return spec


def spec_to_dict(spec: NetworkSpec) -> dict[str, Any]:
    """The plain-data form of a spec, keys in the documented order (the inverse of `spec_from_dict`).

    `padding` is written only where it is not the default, so a spec without it dumps (and hashes, and
    matches a checkpoint's copy) exactly as it did before the field existed.
    """

    def plain(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return {k: plain(getattr(obj, k)) for k in _KEY_ORDER[type(obj)]}
        if isinstance(obj, (tuple, list)):
            return [plain(x) for x in obj]
        if isinstance(obj, Mapping):
            return {k: plain(v) for k, v in obj.items()}
        return obj

    data = plain(spec)
    if spec.padding == DEFAULT_PADDING:
        del data["padding"]
    return data


# -- files --------------------------------------------------------------------------------------

def load_spec(path: str | os.PathLike[str]) -> NetworkSpec:
    return spec_from_dict(load_yaml(path, "spec file"), str(path))


def dump_spec_text(spec: NetworkSpec) -> str:
    return yaml_text(spec_to_dict(spec))


def dump_spec(spec: NetworkSpec, path: str | os.PathLike[str]) -> Path:
    return atomic_write_text(path, dump_spec_text(spec))
