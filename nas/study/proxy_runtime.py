"""How a proxy computes in one worker of a study: the study's seed, loader workers and cache, on the worker's
device with its threads. The search and the coefficient grid both score candidates this way."""

from __future__ import annotations

from effnet.nas.proxies.config import ProxyRuntime
from effnet.nas.study.study_config import StudyConfig


def proxy_runtime(study: StudyConfig, device: str | None = None, threads: int | None = None) -> ProxyRuntime:
    """The proxy's runtime in a worker of `study`: on `device` (default: the study's) with `threads` (None: leave
    torch's setting alone)."""
    return ProxyRuntime(
        device=device or study.device,
        seed=study.seed,
        threads=threads,
        loader_workers=study.loader_workers,
        cache_dir=study.cache_dir,
    )
