"""A spec as YAML: `load_spec`, `dump_spec` and `spec_from_dict` / `spec_to_dict`, exact inverses.

A spec file looks like this (one line per stage, like timm's block strings)::

    name: efficientnet-b0
    resolution: 224
    num_classes: 1000
    stem: {out_channels: 32, kernel: 3, stride: 2}
    stages:
    - {block: mbconv, repeats: 1, kernel: 3, stride: 1, expand: 1, out_channels: 16, se_ratio: 0.25, skip: true}
    ...
    head: {out_channels: 1280}

The reader checks the document's shape (mappings, known and required keys) and leaves every value to the
spec's own checks (`NetworkSpec`), then checks what only a whole network can break: a resolution the strides can
reach and the cost limits (`check_cost`). Every error names the file and the field.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from effnet.nas import checks
from effnet.nas.errors import InputError
from effnet.nas.files import atomic_write_text, yaml_text
from effnet.nas.inputs import load_yaml
from effnet.nas.net.limits import check_cost
from effnet.nas.net.spec import (
    DEFAULT_PADDING,
    BatchNormSpec,
    HeadSpec,
    InvalidSpec,
    NetworkSpec,
    StageSpec,
    StemSpec,
    yaml_type,
)

_KEY_ORDER = {
    NetworkSpec: (
        "name",
        "resolution",
        "num_classes",
        "in_channels",
        "activation",
        "dropout",
        "drop_connect",
        "batch_norm",
        "padding",
        "stem",
        "stages",
        "head",
        "provenance",
    ),
    StemSpec: ("out_channels", "kernel", "stride"),
    StageSpec: ("block", "repeats", "kernel", "stride", "expand", "out_channels", "se_ratio", "skip"),
    HeadSpec: ("out_channels",),
    BatchNormSpec: ("decay", "epsilon"),
}


def _mapping(data: Any, where: str, cls: type, source: str) -> dict[str, Any]:
    """`data`, checked to be a mapping with only `cls`'s keys and all of its required ones."""

    def fail(problem: str) -> None:
        raise InputError(f"{source}: {where}: {problem}")

    if not isinstance(data, dict):
        fail(f"must be a mapping, got {yaml_type(data)}")
    allowed = _KEY_ORDER[cls]
    unknown = [k for k in data if k not in allowed]
    if unknown:
        fail(f"unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}")
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [k for k in required if k not in data]
    if missing:
        fail(f"missing required key {missing[0]!r}")
    return data


OTHER_FILES = (
    (("choices", "skeleton"), "a search space, not a network spec: give it to search --space"),
    (("command", "settings"), "a run record (run.yaml), not a network spec: a search's network is its b0.yaml"),
    (
        ("alpha", "beta", "gamma"),
        "a grid's scaling coefficients (coefficients.yaml), not a network spec: "
        "give it to export-family --coefficients",
    ),
)
"""The other YAML files effnet reads or writes, by the keys that tell them apart, and where each belongs."""


def spec_from_dict(data: Any, source: str = "<spec>") -> NetworkSpec:
    """Validate a parsed YAML document and build a `NetworkSpec`; raises `InputError`."""
    if isinstance(data, dict) and "stages" not in data:
        for keys, what in OTHER_FILES:
            if all(key in data for key in keys):
                raise InputError(f"{source}: this is {what}")
    fields = dict(_mapping(data, "spec", NetworkSpec, source))
    stages = fields["stages"]
    if not isinstance(stages, list) or not stages:
        raise InputError(f"{source}: spec.stages: must be a non-empty list of stages, got {yaml_type(stages)}")
    fields["stages"] = tuple(
        StageSpec(**_mapping(stage, f"stages[{i}]", StageSpec, source)) for i, stage in enumerate(stages)
    )
    for key, cls in (("batch_norm", BatchNormSpec), ("head", HeadSpec), ("stem", StemSpec)):
        if key in fields:
            fields[key] = cls(**_mapping(fields[key], key, cls, source))
    if fields.get("provenance", {}) is None:
        fields["provenance"] = {}
    try:
        spec = NetworkSpec(**fields)
    except InvalidSpec as err:
        raise InputError(f"{source}: {err}") from None
    if spec.resolution < spec.total_stride:
        raise InputError(
            f"{source}: spec.resolution: {spec.resolution} px cannot be reached by the strides: stem and "
            f"stages downsample {spec.total_stride}x, so the resolution must be at least "
            f"{spec.total_stride}"
        )
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


def load_spec(path: str | os.PathLike[str]) -> NetworkSpec:
    checks.path("path", path)
    return spec_from_dict(load_yaml(path, "spec file"), str(path))


def dump_spec_text(spec: NetworkSpec) -> str:
    return yaml_text(spec_to_dict(spec))


def dump_spec(spec: NetworkSpec, path: str | os.PathLike[str], replace: bool = False) -> Path:
    """Write `spec` as YAML at `path`, atomically; an existing file there is replaced only with `replace` (a spec
    of the user's under the same name is theirs), else an `InputError`."""
    checks.instance("spec", spec, NetworkSpec, "a NetworkSpec (effnet.load_spec(path))")
    checks.path("path", path)
    if not replace and os.path.lexists(path):
        raise InputError(f"{path} exists; give a new file name, or replace=True to replace it")
    return atomic_write_text(path, dump_spec_text(spec))
