"""A proxy's data: its source at its resolution, split and cached as its settings say (`load_proxy_data`)."""

from __future__ import annotations

from effnet.nas.data.sources import DataSplits, proxy_data
from effnet.nas.progress import ProgressCallback
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime


def load_proxy_data(
    config: ProxyConfig, runtime: ProxyRuntime, on_progress: ProgressCallback | None = None
) -> DataSplits:
    """The proxy's data at its resolution (caches built where missing); decoding a folder into its cache
    reports `Progress(preparing=True)` to `on_progress`."""
    return proxy_data(
        config.data,
        config.resolution,
        runtime.seed,
        train_images=config.train_images,
        val_images=config.val_images,
        cache_dir=runtime.cache_dir,
        loader_workers=runtime.loader_workers,
        on_progress=on_progress,
    )
