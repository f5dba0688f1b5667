"""A latency table's file: JSON in the cache directory's `latency` folder, named by the table's settings and the
digest of its fingerprint, written atomically and read back checked (a damaged file is measured again, never
half used). A lock file beside it makes the workers of one search that all need the table wait for the first
to build it."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effnet.nas.files import atomic_write_text, exclusive_lock
from effnet.nas.inputs import read_text

TABLE_FOLDER = "latency"


@dataclass(frozen=True)
class PartTime:
    """One part's time: the median seconds of its timed runs and their coefficient of variation."""

    median_s: float
    cv: float


@dataclass(frozen=True)
class CalibrationSample:
    """One whole network timed end to end for the calibration: the digest of the space it was drawn from, its
    measured median seconds and its parts' keys in the order it runs them (a repeated block once per repeat)."""

    space: str
    measured_s: float
    keys: tuple[str, ...]


@dataclass(frozen=True)
class TableData:
    """What a table file holds (see `effnet.nas.latency.table.LatencyTable` for each field's meaning)."""

    fingerprint: Mapping[str, str]
    parts: Mapping[str, PartTime]
    samples: tuple[CalibrationSample, ...]


def table_stem(runtime: str, device_type: str, batch: int, threads: int) -> str:
    """The start of the file names of every table with these settings, whatever machine measured them."""
    return f"{runtime}-{device_type}-b{batch}-t{threads}-"


def table_path(cache_dir: Path, stem: str, digest: str) -> Path:
    return cache_dir / TABLE_FOLDER / f"{stem}{digest}.json"


def other_tables(cache_dir: Path, stem: str, path: Path) -> list[Path]:
    """Tables with the same settings measured under other fingerprints (another machine, torch, onnxruntime)."""
    folder = cache_dir / TABLE_FOLDER
    return sorted(p for p in folder.glob(f"{stem}*.json") if p != path) if folder.is_dir() else []


def table_lock(path: Path) -> AbstractContextManager[None]:
    """Hold the table's lock file: the workers of one search that all need the table wait for the first."""
    return exclusive_lock(path.with_suffix(".lock"), "latency tables' folder")


def write_table(path: Path, table: TableData) -> Path:
    data = {
        "fingerprint": dict(table.fingerprint),
        "calibration": [[sample.space, sample.measured_s, list(sample.keys)] for sample in table.samples],
        "parts": {key: [part.median_s, part.cv] for key, part in table.parts.items()},
    }
    return atomic_write_text(path, json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")


def read_table(path: Path) -> TableData:
    """The table in `path`; an `InputError` for a file that cannot be read, a `ValueError` saying what is wrong
    with one that is damaged."""
    data = json.loads(read_text(path, "latency table"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    found = data.get("fingerprint")
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        raise ValueError("no fingerprint")
    parts = data.get("parts")
    if not isinstance(parts, dict):
        raise ValueError("no parts")
    times = {}
    for key, value in parts.items():
        if not (isinstance(value, list) and len(value) == 2 and _positive(value[0]) and _number(value[1])):
            raise ValueError(f"part {key!r} is not [median_s, cv]")
        times[key] = PartTime(float(value[0]), float(value[1]))
    calibration = data.get("calibration")
    if not isinstance(calibration, list) or not calibration:
        raise ValueError("no calibration networks")
    samples = []
    for sample in calibration:
        if not (
            isinstance(sample, list)
            and len(sample) == 3
            and isinstance(sample[0], str)
            and _positive(sample[1])
            and isinstance(sample[2], list)
            and sample[2]
            and all(isinstance(key, str) and key in times for key in sample[2])
        ):
            raise ValueError("a calibration network is not [space, measured_s, [part keys of the table]]")
        samples.append(CalibrationSample(sample[0], float(sample[1]), tuple(sample[2])))
    return TableData(found, times, tuple(samples))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _positive(value: Any) -> bool:
    return _number(value) and value > 0
