"""The CPUs a run may use, how many of them other work leaves free, and the CPU threads chosen from that.

torch's default is one intra-op thread per CPU, which collapses on a machine whose cores other jobs keep
busy: every parallel region waits for its slowest thread, a descheduled thread holds up the others, and
OpenMP's waiting threads spin (GNU libgomp, torch's runtime on Linux: about 300,000 rounds before they sleep),
burning the time slices that the working thread needs. Measured on a 2-core VM with two busy processes per
core, a proxy epoch took over 4× as long on 2 threads as on 1 (stopped there; bench/RESULTS.md). So a run
takes as many threads as there are cores free: those it may run on (affinity, cgroup quota) less those a short
sample of `/proc/stat` finds busy (the load average where there is no `/proc/stat`), and OpenMP's spin is
bounded: by the command line for its own process (`configure_openmp`) and by a study for the workers it spawns
(`openmp_env`). Nothing here imports torch: the entry point calls it before torch loads its OpenMP runtime,
which reads the environment once.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effnet.nas import checks
from effnet.nas.errors import SettingError

SAMPLE_S = 0.3
"""How long the CPUs are watched for other work before a run chooses its threads."""
SPIN_ENV = "GOMP_SPINCOUNT"
SPIN_COUNT = "10000"
"""libgomp's spin before a waiting thread sleeps: 300,000 by default, which under contention burns the time
slices the working threads need; 10,000 here. Shorter spins or a passive wait cost an idle machine up to
3× (bench/RESULTS.md, "Threads under contention"), so this is a second line behind the thread choice."""
_OPENMP_SETTINGS = (SPIN_ENV, "OMP_WAIT_POLICY")
CGROUP = Path("/sys/fs/cgroup")


def cpu_ids() -> set[int]:
    """The CPUs this process may run on (its affinity mask, else every CPU of the machine): what every count
    of usable cores starts from."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def cgroup_quota(root: Path = CGROUP) -> float | None:
    """The cgroup's CPU quota in cores (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`), None where unlimited."""
    for quota_file, period_file in (
        (root / "cpu.max", None),
        (root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"),
    ):
        try:
            text = quota_file.read_text().split()
            if period_file is not None:
                text = [*text[:1], *period_file.read_text().split()[:1]]
        except OSError:
            continue
        if len(text) < 2 or text[0] == "max" or text[0].startswith("-"):
            return None
        try:
            quota, period = float(text[0]), float(text[1])
        except ValueError:
            return None
        return quota / period if quota > 0 and period > 0 else None
    return None


def usable_cores(affinity: int | None = None, quota: float | None = None) -> int:
    """The cores a run may use: its CPUs, at most its cgroup quota (whole cores, at least one). With no
    arguments, this process's; the one count that threads and loader workers are sized from."""
    cpus = len(cpu_ids()) if affinity is None else affinity
    limit = cgroup_quota() if affinity is None and quota is None else quota
    return max(1, min(cpus, math.floor(limit + 1e-9)) if limit is not None else cpus)


def check_threads(setting: str, threads: Any) -> int:
    """A thread count of at least 1 and at most the cores this process may use (`usable_cores`), else a
    `SettingError` naming `setting`: more threads than cores wait on each other (a search at 1,000 threads on 2
    cores trained nothing in 3 minutes and overran its time limit)."""
    cores = usable_cores()
    if checks.whole(setting, threads, low=1) > cores:
        raise SettingError(
            setting,
            f"{threads} is more than the {cores} cores this process may use (more threads than cores wait on "
            f"each other); use at most {cores}",
        )
    return threads


@dataclass(frozen=True)
class CpuState:
    """What the thread choice rests on: the CPUs of the affinity mask, the cgroup quota in cores (None:
    unlimited), the cores other work kept busy in a short sample (None: not measurable here) and the
    1-minute load average (None: unknown), for the record."""

    affinity: int
    quota: float | None = None
    busy: float | None = None
    load: float | None = None


@dataclass(frozen=True)
class ThreadChoice:
    """CPU threads per worker and why: `reason` is the line a run records and the command line shows."""

    threads: int
    reason: str

    def record(self) -> dict[str, int | str]:
        return {"threads": self.threads, "reason": self.reason}


def choose_threads(state: CpuState, workers: int = 1) -> ThreadChoice:
    """Threads per worker: the free cores (usable cores less the busy ones, rounded: a core half free counts)
    shared among the workers, at least one each."""
    cores = usable_cores(state.affinity, state.quota)
    busy = state.busy
    if busy is None and state.load is not None:  # no sample: the load average stands in
        busy = min(float(state.affinity), state.load)
    free = max(0.0, min(float(cores), state.affinity - (busy or 0.0)))
    threads = max(1, math.floor(free + 0.5) // workers)
    of = f"{cores} core{'s' if cores > 1 else ''}" + (
        f" (cgroup quota {state.quota:g} of {state.affinity} CPUs)" if cores < state.affinity else ""
    )
    if busy is None:
        why = f"{of}, other work unknown"
    else:
        why = f"{free:.1f} of {of} free" + (f" (load {state.load:.1f})" if state.load is not None else "")
    each = f", {workers} workers" if workers > 1 else ""
    return ThreadChoice(
        threads, f"{why}{each}: {threads} thread{'s' if threads > 1 else ''}{' each' if workers > 1 else ''}"
    )


def given_threads(threads: int) -> ThreadChoice:
    return ThreadChoice(threads, f"{threads} thread{'s' if threads > 1 else ''} as set")


def cpu_times(cpus: set[int], stat: Path = Path("/proc/stat")) -> tuple[float, float] | None:
    """(busy, total) jiffies over `cpus` from /proc/stat (idle and iowait are not busy; guest time is inside
    user time, so not added), None where it cannot be read."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    busy = total = 0.0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        fields = [float(v) for v in rest.split()[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(fields)
        busy += sum(fields) - fields[3] - fields[4]
    return (busy, total) if total > 0 else None


def busy_cores(sample_s: float = SAMPLE_S) -> float | None:
    """The cores of this process's CPUs that other work kept busy over `sample_s` seconds (this process
    sleeps meanwhile), None where /proc/stat is not there."""
    cpus = cpu_ids()
    before = cpu_times(cpus)
    if before is None:
        return None
    own = time.process_time()
    time.sleep(sample_s)
    after = cpu_times(cpus)
    own = time.process_time() - own
    if after is None or after[1] <= before[1]:
        return None
    share = (after[0] - before[0]) / (after[1] - before[1])
    own_cores = own / sample_s
    return max(0.0, share * len(cpus) - own_cores)


def cpu_state(sample_s: float = SAMPLE_S) -> CpuState:
    """This process's CPUs as they are now."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return CpuState(affinity=len(cpu_ids()), quota=cgroup_quota(), busy=busy_cores(sample_s), load=load)


def configure_openmp() -> str:
    """Bound OpenMP's spin (`GOMP_SPINCOUNT`) for this process and the ones it starts, unless the environment
    already sets the wait; returns what is in effect. Call it before torch is imported: libgomp reads the
    environment once, when it loads."""
    preset = [name for name in _OPENMP_SETTINGS if name in os.environ]
    if preset:
        return f"OpenMP wait from the environment ({', '.join(f'{n}={os.environ[n]}' for n in preset)})"
    os.environ[SPIN_ENV] = SPIN_COUNT
    return f"OpenMP spin bounded ({SPIN_ENV}={SPIN_COUNT})"


@contextlib.contextmanager
def openmp_env() -> Iterator[None]:
    """The bounded spin in this process's environment while the block starts worker processes (spawned:
    they read it when they load torch), then the environment as it was; a wait the environment sets stays."""
    if any(name in os.environ for name in _OPENMP_SETTINGS):
        yield
        return
    os.environ[SPIN_ENV] = SPIN_COUNT
    try:
        yield
    finally:
        os.environ.pop(SPIN_ENV, None)
