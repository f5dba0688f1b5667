"""Reading a search space: a YAML file (a shipped one by name, or a path) -> a validated `SearchSpace`.

Stage-level `choices` override the space-wide ones; every field is checked and an error names the file and
the field. A space whose largest network exceeds the limits of a network (`effnet.nas.space.reach`) is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from effnet.nas.errors import InputError
from effnet.nas.inputs import load_yaml
from effnet.nas.net.spec import BLOCK_TYPES, POOL_SKIP
from effnet.nas.net.spec_file import spec_from_dict
from effnet.nas.resources import config_path
from effnet.nas.space.choices import CHOICE_KEYS, SearchSpace, StageChoices
from effnet.nas.space.reach import space_reach

DEFAULT_SPACE = "efficientnet"
MAX_OPTION = 1_000_000
"""Largest number a space file may use anywhere (channels, repeats, expand, width)."""

_STAGE_KEYS = ("repeats", "stride", "out_channels", "choices")
_SPACE_KEYS = ("name", "description", "base", "choices", "skeleton")


def _options(value: Any, key: str, where: str) -> tuple[Any, ...]:
    """Validate one choice list; returns it as a tuple."""
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}.{key}: must be a non-empty list of options, got {value!r}")
    if len(set(map(repr, value))) != len(value):
        raise InputError(f"{where}.{key}: options must be distinct, got {value}")

    def bad(expected: str) -> InputError:
        return InputError(f"{where}.{key}: every option must be {expected}, got {value}")

    # every numeric option in a sane range (|v| <= MAX_OPTION), so no choice can overflow a float later
    is_num = [isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= MAX_OPTION for v in value]
    is_int = [ok and isinstance(v, int) for ok, v in zip(is_num, value, strict=True)]
    if key == "block" and not all(v in BLOCK_TYPES for v in value):
        raise bad(f"one of {', '.join(BLOCK_TYPES)}")
    if key == "expand" and not all(ok and v >= 1 for ok, v in zip(is_int, value, strict=True)):
        raise bad("an integer of at least 1")
    if key == "kernel" and not all(ok and v >= 1 and v % 2 == 1 for ok, v in zip(is_int, value, strict=True)):
        raise bad("an odd integer (3, 5, 7)")
    if key == "se_ratio" and not all(ok and 0 <= v < 1 for ok, v in zip(is_num, value, strict=True)):
        raise bad("a number in [0, 1)")
    if key == "skip" and not all(isinstance(v, bool) or v == POOL_SKIP for v in value):
        raise bad("true, false or pool")
    if key == "width" and not all(ok and v > 0 for ok, v in zip(is_num, value, strict=True)):
        raise bad("a positive number")
    if key == "repeats_offset" and not all(is_int):
        raise bad("an integer")
    if key in ("se_ratio", "width"):
        return tuple(float(v) for v in value)
    return tuple(value)


def _mapping(value: Any, where: str, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{where}: must be a mapping, got {type(value).__name__}")
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}")
    return value


def _positive_int(value: Any, where: str, allowed: Sequence[int] | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_OPTION:
        raise InputError(f"{where}: must be a positive integer up to {MAX_OPTION:,}, got {value!r}")
    if allowed is not None and value not in allowed:
        raise InputError(f"{where}: must be one of {', '.join(map(str, allowed))}, got {value}")
    return value


def space_from_dict(data: Any, source: str = "<space>") -> SearchSpace:
    """Validate a parsed search-space document; raises `InputError` naming the file and the field."""
    data = _mapping(data, f"{source}: space", _SPACE_KEYS)
    for key in ("base", "choices", "skeleton"):
        if key not in data:
            raise InputError(f"{source}: space: missing required key {key!r}")
    defaults = _mapping(data["choices"], f"{source}: choices", CHOICE_KEYS)
    missing = [k for k in CHOICE_KEYS if k not in defaults]
    if missing:
        raise InputError(f"{source}: choices: missing {missing[0]!r}; every decision needs a default option list")
    skeleton = data["skeleton"]
    if not isinstance(skeleton, list) or not skeleton:
        raise InputError(f"{source}: skeleton: must be a non-empty list of stages")
    stages = []
    for i, raw in enumerate(skeleton):
        where = f"{source}: skeleton[{i}]"
        raw = _mapping(raw, where, _STAGE_KEYS)
        for key in ("repeats", "stride", "out_channels"):
            if key not in raw:
                raise InputError(f"{where}: missing required key {key!r}")
        override = _mapping(raw.get("choices", {}), f"{where}.choices", CHOICE_KEYS)
        options = {k: _options(override.get(k, defaults[k]), k, f"{where}.choices") for k in CHOICE_KEYS}
        repeats = _positive_int(raw["repeats"], f"{where}.repeats")
        if repeats + min(options["repeats_offset"]) < 1:
            raise InputError(
                f"{where}: repeats {repeats} with offset {min(options['repeats_offset'])} leaves no "
                f"layer; override this stage's repeats_offset (e.g. [0, 1])"
            )
        stages.append(
            StageChoices(
                repeats=repeats,
                stride=_positive_int(raw["stride"], f"{where}.stride", (1, 2)),
                out_channels=_positive_int(raw["out_channels"], f"{where}.out_channels"),
                **options,
            )
        )
    base_data = data["base"]
    if not isinstance(base_data, dict) or "stages" in base_data:
        raise InputError(f"{source}: base: must be a spec mapping without 'stages' (the skeleton gives them)")
    skeleton_stages = [
        {
            "block": "mbconv",
            "repeats": s.repeats,
            "kernel": 3,
            "stride": s.stride,
            "expand": 1,
            "out_channels": s.out_channels,
        }
        for s in stages
    ]
    base = spec_from_dict({**base_data, "stages": skeleton_stages}, source)
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        raise InputError(f"{source}: name: must be a non-empty string")
    space = SearchSpace(name=name, base=base, stages=tuple(stages))
    problem = space_reach(space).largest.problem()
    if problem is not None:
        raise InputError(
            f"{source}: the space's largest network has {problem}; narrow its width, expand or repeats choices"
        )
    return space


def space_path(name_or_path: str | Path | None) -> Path:
    """A shipped space by name (`efficientnet`, `mnasnet`) or a path to a space file."""
    if name_or_path is None:
        name_or_path = DEFAULT_SPACE
    shipped = config_path("search_space", f"{name_or_path}.yaml")
    if isinstance(name_or_path, str) and "/" not in name_or_path and not name_or_path.endswith(".yaml"):
        if not shipped.exists():
            raise InputError(
                f"unknown search space {name_or_path!r}; use a shipped one "
                f"({', '.join(shipped_spaces())}) or a path to a YAML space file"
            )
        return shipped
    return Path(name_or_path)


def shipped_spaces() -> list[str]:
    return sorted(p.stem for p in config_path("search_space").glob("*.yaml"))


def load_space(path: str | Path | None = None) -> SearchSpace:
    """Load a search space: None for the default, a shipped name, or a YAML file path."""
    p = space_path(path)
    return space_from_dict(load_yaml(p, "search-space file"), str(p))
