"""Where a study lives and how its trials run: the run directory, the storage, the workers, their seed, device
and threads. Nothing here changes a score but the seed; the jobs that run on the study runner (the search, the
grid) build what their trials need, a proxy say, from these settings themselves."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from effnet.nas import checks
from effnet.nas.choices import DEVICES
from effnet.nas.cpus import ThreadChoice, check_threads, choose_threads, cpu_state, given_threads
from effnet.nas.errors import SettingError
from effnet.nas.memory import available_memory, check_loader_workers, gib
from effnet.nas.study.storage import describe_storage, journal_path
from effnet.nas.training.runtime import resolve_device

MAX_WORKERS = 256
WORKER_MEMORY = 450 * 2**20
"""What one worker process holds on a CPU: torch, the data, a candidate in training (about 450 MB measured)."""
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class StudyConfig:
    """Where a study lives and how its trials run; none of it changes a score but `seed`.

    `seed` seeds everything random in the study (samplers, data splits, proxy trainings) and is part
    of the settings fingerprint. `device` is `auto` (CUDA when available), `cpu` or `cuda` (several
    workers take the visible GPUs one each); `threads` are CPU threads per worker (None: the free cores
    divided among the workers, see `thread_choice`); `loader_workers` are each worker's DataLoader processes (None: from
    the cores); `cache_dir` holds the decoded proxy caches (None: the default, shared by all runs);
    `force` lets the run directory hold files effnet did not write (see `effnet.nas.outputs`).
    """

    run_dir: Path
    name: str
    storage: str | None = None
    workers: int = 1
    seed: int = 0
    timeout_s: float | None = None
    device: str = "auto"
    threads: int | None = None
    loader_workers: int | None = None
    cache_dir: Path | None = None
    force: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir))
        checks.whole("workers", self.workers, low=1, high=MAX_WORKERS)
        checks.seed("seed", self.seed)
        if self.timeout_s is not None:
            checks.number("timeout", self.timeout_s, low=0, low_open=True)
        if isinstance(self.device, str) and self.device.lower().startswith("cuda:"):
            raise SettingError(
                "device",
                f"{self.device!r}: workers take the visible GPUs one each; use cuda and "
                "choose the GPUs with CUDA_VISIBLE_DEVICES",
            )
        checks.choice("device", self.device, DEVICES)
        if self.threads is not None:
            check_threads("threads", self.threads)
        if self.loader_workers is not None:
            checks.whole("loader_workers", self.loader_workers, low=0, high=256)
        if not isinstance(self.name, str) or not STUDY_NAME.fullmatch(self.name):
            raise SettingError(
                "study",
                f"must be a plain name of letters, digits, '.', '_' and '-' (at most 100, "
                f"not a path: the run directory is named after it), got {self.name!r}",
            )

    @property
    def storage_label(self) -> str:
        """The storage as it may be shown: the URL with its password redacted, or the journal path."""
        return describe_storage(self.storage, self.run_dir)

    def journal_in_run_dir(self) -> tuple[str, ...]:
        """The run directory's journal, named when the file begins as an Optuna journal does: effnet's own even
        without a run-directory manifest (a run from before manifests, cut short before its run.yaml)."""
        path = journal_path(self.storage, self.run_dir)
        if path.parent != self.run_dir:
            return ()
        try:
            with open(path, "rb") as handle:
                return (path.name,) if handle.read(11) == b'{"op_code":' else ()
        except OSError:
            return ()

    def thread_choice(self) -> ThreadChoice:
        """CPU threads per worker and why: `threads` as set, or the cores free of other work now (a short
        sample) shared among the workers: on busy cores fewer threads train faster than torch's one per CPU."""
        if self.threads:
            return given_threads(self.threads)
        return choose_threads(cpu_state(), self.workers)

    def check_workers(self) -> None:
        """Refuse more workers, or loader workers, than this machine's free memory holds (where that is known)."""
        available = available_memory()
        if self.workers > 1 and available is not None and self.workers * WORKER_MEMORY > available:
            raise SettingError(
                "workers",
                f"{self.workers} need about {gib(self.workers * WORKER_MEMORY)} (about "
                f"{WORKER_MEMORY // 2**20} MiB each) and {gib(available)} is free; use at "
                f"most {max(1, available // WORKER_MEMORY)}",
            )
        check_loader_workers(self.loader_workers, self.workers, WORKER_MEMORY)

    def worker_device(self) -> str:
        """`cpu` or `cuda`, as the workers run; `auto` picks CUDA where it is available; `cuda` without
        a CUDA device is a `SettingError`."""
        return resolve_device(self.device).type
