"""What a latency table's times depend on besides the network: the machine, the software and the settings.

A table measured on one CPU says little of another (cores, caches and vector units differ), nor under another
torch or onnxruntime (their kernels change between releases), nor with another thread count or batch. The
fingerprint names all of it; a table is found again only under the same fingerprint, and a table found under
another is not used (`effnet.nas.latency.table`).
"""

from __future__ import annotations

import hashlib
import json
import platform
from functools import cache
from importlib import metadata
from pathlib import Path

import torch

from effnet.nas.cpus import usable_cores

LAYOUT = 2
"""Bump when what a table holds, or how its parts are timed, changes: older tables are then measured again."""


@cache
def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name as the system reports it (Linux), else what `platform` knows."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def fingerprint(runtime: str, device: torch.device, batch: int, threads: int) -> dict[str, str]:
    """Everything a table's times depend on besides the networks, as text."""
    found = {
        "layout": str(LAYOUT),
        "runtime": runtime,
        "device": device.type,
        "cpu": cpu_model(),
        "cores": str(usable_cores()),
        "batch": str(batch),
        "threads": str(threads),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    if runtime == "onnxruntime":
        found["onnxruntime"] = metadata.version("onnxruntime")
    if device.type == "cuda":
        found["gpu"] = torch.cuda.get_device_name(device)
        found["cuda"] = str(torch.version.cuda)
    return found


def fingerprint_digest(found: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()[:16]


def differences(found: dict[str, str], other: dict[str, str]) -> list[str]:
    """What differs between two fingerprints, as `name: theirs -> ours` lines, in the fingerprint's order."""
    names = list(found) + [name for name in other if name not in found]
    return [
        f"{name}: {other.get(name, '-')} -> {found.get(name, '-')}"
        for name in names
        if found.get(name) != other.get(name)
    ]
