"""Files shipped with effnet (`configs/`), found the same way in a wheel and in an editable install."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def config_path(*parts: str) -> Path:
    return Path(str(resources.files("effnet.configs").joinpath(*parts)))


def reference_b0_path() -> Path:
    return config_path("efficientnet-b0.yaml")
