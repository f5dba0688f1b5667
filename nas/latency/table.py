"""A latency table: the time of every part a search space's networks are made of, on this machine, in one runtime
with one batch and thread count, and a network's latency predicted from it.

A network's predicted latency is its parts' times added up (`effnet.nas.latency.parts`) times the table's
calibration factor. The parts are timed apart, in interleaved rounds, and a network is measured whole, run after
run (`measure_latency`): caches, allocations and per-call costs differ between the two by an amount roughly in
proportion to the network's size, which the factor takes up. It is the median of measured / parts' sum over
`CALIBRATION_NETWORKS` random networks of each space the table was built for, measured as `measure_latency`
measures one, and fitted again over all of them when a space is added. A ratio was chosen over an added constant
because it followed the measurements better (a first trial on the 2-core CPU, folded, one thread, twelve networks
not used in the fit: median error 4.4 % against 6.5 %).

A table lives in a JSON file in the cache directory (`effnet.nas.data.cache.default_cache_dir`), named by its
settings and the digest of its fingerprint (`effnet.nas.latency.fingerprint`). `build_table` times what a space
needs and the file lacks (a second build for the same space times nothing), and says so; `find_table` loads the
table of this machine, if one was built. Tables found in the cache under another fingerprint (another machine,
torch, onnxruntime, thread count) are never used: the build measures this machine's and says why once.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from effnet.nas import checks
from effnet.nas.data.cache import default_cache_dir
from effnet.nas.errors import InputError
from effnet.nas.latency.fingerprint import differences, fingerprint, fingerprint_digest
from effnet.nas.latency.measure import check_settings
from effnet.nas.latency.parts import Part, network_keys, space_parts
from effnet.nas.latency.settings import CALIBRATION_NETWORKS, CHUNK_PARTS, NOISY_CV
from effnet.nas.latency.table_file import (
    CalibrationSample,
    PartTime,
    TableData,
    other_tables,
    read_table,
    table_lock,
    table_path,
    table_stem,
    write_table,
)
from effnet.nas.latency.timing import calibration_networks, fit_factor, time_networks, time_parts
from effnet.nas.memory import available_memory, gib
from effnet.nas.net.limits import BYTES_PER_VALUE
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.progress import ProgressCallback
from effnet.nas.space.choices import SearchSpace
from effnet.nas.space.reach import space_reach
from effnet.nas.training.runtime import cpu_threads, resolve_device


@dataclass(frozen=True)
class TableSettings:
    """Where and how the table's times are taken: runtime, device, images per run, CPU threads.

    Args:
        runtime: what runs the parts, as `effnet.measure_latency` takes it: folded, torch or onnxruntime.
        device: cpu, cuda, cuda:N or auto.
        batch: images per timed run (1: one request's latency).
        threads: CPU threads (torch's intra-op threads, onnxruntime's too), as where the network is deployed.

    Example:
        >>> import effnet
        >>> effnet.TableSettings(runtime="onnxruntime", threads=2)
        TableSettings(runtime='onnxruntime', device='cpu', batch=1, threads=2)
    """

    runtime: str = "folded"
    device: str = "cpu"
    batch: int = 1
    threads: int = 1


@dataclass(frozen=True)
class LatencyTable:
    """The parts' times of one machine, runtime, device, batch and thread count (`fingerprint`), and the factor
    that turns their sum into a network's latency. Had from `LatencyTable.build` or `effnet.build_latency_table`
    (measured, or read back from the cache) and `LatencyTable.find` (read back only).

    Example:
        >>> import random, effnet
        >>> space = effnet.load_space("mnasnet")
        >>> table = effnet.LatencyTable.find(threads=1)  # None until a table was built on this machine
        >>> table = table or effnet.LatencyTable.build(space, threads=1)  # doctest: +SKIP
        >>> table.predict(space.random_spec(random.Random(0)))  # doctest: +SKIP
        0.0123
    """

    fingerprint: Mapping[str, str]
    parts: Mapping[str, PartTime]
    factor: float
    """A network's measured latency over its parts' sum: the median over the calibration networks."""
    calibration_networks: int
    calibration_error: float
    """The largest relative error of the prediction on the networks the factor was fitted to."""
    path: Path | None = None
    samples: tuple[CalibrationSample, ...] = ()
    """The whole networks the factor was fitted to (`calibration_networks` of them): each space the table was
    built for adds its own, and the factor is refitted over all of them."""

    @property
    def runtime(self) -> str:
        return self.fingerprint["runtime"]

    @property
    def batch(self) -> int:
        return int(self.fingerprint["batch"])

    @property
    def threads(self) -> int:
        return int(self.fingerprint["threads"])

    @property
    def noise_cv(self) -> float:
        """The machine's noise while the parts were timed: the median coefficient of variation of their runs."""
        return statistics.median(part.cv for part in self.parts.values()) if self.parts else 0.0

    @property
    def noisy(self) -> bool:
        """Other work shared the cores while the parts were timed (`NOISY_CV`): the times are less to be trusted."""
        return self.noise_cv > NOISY_CV

    def missing(self, spec: NetworkSpec) -> list[str]:
        """The keys of `spec`'s parts this table has not timed (none: it can predict `spec`)."""
        return [key for key in dict.fromkeys(network_keys(spec)) if key not in self.parts]

    def parts_sum(self, spec: NetworkSpec) -> float:
        """The sum of `spec`'s parts' times, in seconds.

        Raises:
            InputError: the table lacks one of `spec`'s parts (it was built for another space or resolution).
        """
        missing = self.missing(spec)
        if missing:
            raise InputError(
                f"{spec.name}: {len(missing)} of its parts are not in the latency table (first: {missing[0]}); "
                "build the table for a space that holds this network (effnet latency-table --space SPACE)"
            )
        return sum(self.parts[key].median_s for key in network_keys(spec))

    def predict(self, spec: NetworkSpec) -> float:
        """`spec`'s predicted latency in seconds: its parts' sum times the calibration factor.

        Raises:
            InputError: the table lacks one of `spec`'s parts (it was built for another space or resolution).

        Example:
            >>> import random, effnet
            >>> space = effnet.load_space("mnasnet")
            >>> table = effnet.LatencyTable.build(space)  # doctest: +SKIP
            >>> table.predict(space.random_spec(random.Random(0)))  # doctest: +SKIP
            0.0123
        """
        return self.factor * self.parts_sum(spec)

    @classmethod
    def build(
        cls,
        space: SearchSpace,
        runtime: str = "folded",
        device: str = "cpu",
        batch: int = 1,
        threads: int = 1,
        cache_dir: str | Path | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> LatencyTable:
        """This machine's table for `space`: the one built before, with what it lacked timed and added, or a new
        one (`build_table`, which also says what it measured and why).

        Raises:
            SettingError: a runtime, device, batch or thread count the measurement cannot take.
            InputError: onnxruntime missing for that runtime, or a cache directory that cannot be written.
        """
        return build_table(space, TableSettings(runtime, device, batch, threads), cache_dir, on_progress).table

    @classmethod
    def find(
        cls,
        runtime: str = "folded",
        device: str = "cpu",
        batch: int = 1,
        threads: int = 1,
        cache_dir: str | Path | None = None,
    ) -> LatencyTable | None:
        """This machine's table for these settings, if one was built and is whole; None otherwise.

        Raises:
            SettingError: a runtime, device, batch or thread count the measurement cannot take.
            InputError: onnxruntime missing for that runtime.
        """
        return find_table(TableSettings(runtime, device, batch, threads), cache_dir)


@dataclass(frozen=True)
class TableBuild:
    """A table and how it was had: parts timed now and found timed before, whether its factor was fitted now,
    seconds taken, and why a table in the cache was not used (another fingerprint, a damaged file), if so."""

    table: LatencyTable
    measured: int
    reused: int
    calibrated: bool
    seconds: float
    replaced: str | None = None

    @property
    def notes(self) -> list[str]:
        """What the user should know: a table in the cache not used (and why), a noisy machine."""
        notes = [self.replaced] if self.replaced else []
        table = self.table
        if table.noisy:
            notes.append(
                f"the latency table's parts varied by a median coefficient of variation of {table.noise_cv:.3f}, "
                f"above {NOISY_CV:.2f}: other work shared the cores while they were timed, so its times are less "
                "to be trusted; build it again on a quiet machine (effnet latency-table --rebuild)"
            )
        return notes


def check_table_settings(settings: TableSettings) -> None:
    """A `SettingError` naming the first setting a table cannot be measured with (an `InputError` naming the
    extra where the runtime is onnxruntime and it is not installed)."""
    check_settings(settings.runtime, settings.device, settings.batch, settings.threads, 0, 2)
    checks.whole("threads", settings.threads, low=1)


def _located(settings: TableSettings, cache_dir: str | Path | None) -> tuple[dict[str, str], Path, str]:
    check_table_settings(settings)
    device = resolve_device(settings.device)
    found = fingerprint(settings.runtime, device, settings.batch, settings.threads)
    stem = table_stem(settings.runtime, device.type, settings.batch, settings.threads)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return found, table_path(folder, stem, fingerprint_digest(found)), stem


def _as_table(data: TableData, path: Path) -> LatencyTable:
    factor, worst = fit_factor(data.samples, data.parts)
    return LatencyTable(data.fingerprint, data.parts, factor, len(data.samples), worst, path, data.samples)


def _read(path: Path, found: Mapping[str, str]) -> tuple[LatencyTable | None, str | None]:
    """The table in `path` and None, or None and why it cannot be used (damaged, another fingerprint)."""
    if not path.is_file():
        return None, None
    try:
        data = read_table(path)
    except (ValueError, InputError) as err:
        return None, f"{path} was damaged ({err}); measured again"
    if dict(data.fingerprint) != dict(found):
        return None, f"{path} was measured under another fingerprint; measured again"
    return _as_table(data, path), None


def machine_digest(settings: TableSettings) -> str:
    """The digest of this machine's fingerprint for `settings`: equal on machines whose tables are alike."""
    found, _path, _stem = _located(settings, None)
    return fingerprint_digest(found)


def find_table(settings: TableSettings, cache_dir: str | Path | None = None) -> LatencyTable | None:
    """This machine's table for `settings`, if one was built and is whole; None otherwise."""
    found, path, _stem = _located(settings, cache_dir)
    return _read(path, found)[0]


def build_table(
    space: SearchSpace,
    settings: TableSettings = TableSettings(),
    cache_dir: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
    rebuild: bool = False,
) -> TableBuild:
    """This machine's table with every part of `space` timed: the parts a table of the same fingerprint already
    holds are kept, the others timed and added; a space the table was not yet built for adds its calibration
    networks, timed end to end, and the factor is fitted again over all of them.
    Exported as `effnet.build_latency_table`; `effnet latency-table` on the command line.

    Args:
        space: the search space whose every stem, block and head is timed (`effnet.load_space`).
        settings: runtime, device, batch and threads the parts are timed with.
        cache_dir: where the table file goes (None: $EFFNET_CACHE or ~/.cache/effnet, in its latency folder).
        on_progress: told as the parts and the calibration networks are timed.
        rebuild: time everything again (a table built while the machine was busy), replacing this machine's.

    Returns:
        The table and how it was had: parts timed now (`measured`) and found timed before (`reused`), and why
        a table in the cache was not used (`replaced`: another machine's, a damaged file), if one was not.

    Raises:
        SettingError: a runtime, device, batch or thread count the measurement cannot take.
        InputError: onnxruntime missing for that runtime, or a cache directory that cannot be written.

    Example:
        >>> import effnet
        >>> space = effnet.load_space("mnasnet")
        >>> built = effnet.build_latency_table(space, effnet.TableSettings(threads=1))  # doctest: +SKIP
        >>> built.measured, built.reused  # a second build times nothing  # doctest: +SKIP
        (0, 2604)
    """
    report = on_progress or (lambda progress: None)
    found, path, stem = _located(settings, cache_dir)
    device = resolve_device(settings.device)
    started = time.perf_counter()
    parts = space_parts(space)
    check_memory_for(space, parts, settings.batch)  # before the lock: a refusal leaves the cache as it was
    with table_lock(path):
        known, replaced = (None, None) if rebuild else _read(path, found)
        if known is None and replaced is None and not rebuild:
            others = other_tables(path.parent.parent, stem, path)
            replaced = _other_machine(others, found)
        todo = [part for part in parts if known is None or part.key not in known.parts]
        samples = list(known.samples) if known is not None else []
        space_id = space.digest()
        calibrate = not any(sample.space == space_id for sample in samples)
        with cpu_threads(settings.threads):
            timed = time_parts(todo, settings.runtime, device, settings.batch, settings.threads, report)
            if calibrate:
                networks = calibration_networks(space)
                measured = time_networks(networks, settings.runtime, device, settings.batch, settings.threads, report)
                samples += [
                    CalibrationSample(space_id, seconds, tuple(network_keys(network)))
                    for network, seconds in zip(networks, measured, strict=True)
                ]
        data = TableData(found, {**(known.parts if known else {}), **timed}, tuple(samples))
        if todo or calibrate:
            write_table(path, data)
    table = _as_table(data, path)
    return TableBuild(table, len(todo), len(parts) - len(todo), calibrate, time.perf_counter() - started, replaced)


build_latency_table = build_table
"""`build_table` under the name `effnet` exports it by."""


def check_memory_for(space: SearchSpace, parts: list[Part], batch: int) -> None:
    """Refuse to time a space whose networks break the cost limits (a space given another resolution), or whose
    parts or calibration networks need more memory than is free: a chunk of parts holds each part's batch of
    inputs, the calibration holds `CALIBRATION_NETWORKS` networks (weights twice: the model and the runtime's
    copy) with their images, and one run at a time adds its feature maps."""
    largest = space_reach(space).largest
    problem = largest.problem()
    if problem is not None:
        raise InputError(f"the {space.name} space's largest network has {problem}; time it at a smaller resolution")
    available = available_memory()
    if available is None:
        return
    base = space.base
    chunks = (parts[start : start + CHUNK_PARTS] for start in range(0, len(parts), CHUNK_PARTS))
    inputs = max((sum(math.prod(part.input_shape) for part in chunk) for chunk in chunks), default=0)
    calibration = CALIBRATION_NETWORKS * (2 * largest.params + batch * base.in_channels * base.resolution**2)
    needed = BYTES_PER_VALUE * (max(batch * inputs, calibration) + batch * largest.activations)
    if needed > available:
        raise InputError(
            f"timing the {space.name} space's parts at batch {batch} needs about {gib(needed)} and {gib(available)} "
            "is free on this machine; use a smaller batch or resolution"
        )


def _other_machine(others: list[Path], found: Mapping[str, str]) -> str | None:
    """Why the tables of the same settings in the cache are not used: what differs in the first that reads."""
    for other in others:
        try:
            data = read_table(other)
        except (ValueError, InputError):
            continue
        changed = differences(dict(found), dict(data.fingerprint))
        return f"{other.name} was measured on another machine or software ({'; '.join(changed)}); measured this one's"
    return None
