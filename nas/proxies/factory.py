"""The proxy a `ProxyConfig` names, over data loaded at its resolution (`make_proxy`)."""

from __future__ import annotations

from effnet.nas.data.sources import DataSplits
from effnet.nas.errors import InputError
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.proxy import Proxy
from effnet.nas.proxies.supernet_proxy import SupernetProxy
from effnet.nas.proxies.supernet_training import SupernetSetup
from effnet.nas.proxies.train import TrainProxy
from effnet.nas.proxies.zero_cost import NaswotProxy, SynflowProxy


def make_proxy(
    config: ProxyConfig, data: DataSplits, runtime: ProxyRuntime = ProxyRuntime(), supernet: SupernetSetup | None = None
) -> Proxy:
    """The proxy `config.name` over `data` (loaded at `config.resolution`); the supernet proxy needs `supernet`,
    and its checkpoint trained (`effnet.nas.proxies.supernet_training.train_supernet`)."""
    if data.resolution != config.resolution:
        raise InputError(
            f"data are at {data.resolution} px but the proxy trains at {config.resolution} px; "
            "load the data at the proxy resolution"
        )
    if config.name == "supernet":
        if supernet is None:
            raise InputError("the supernet proxy needs its SupernetSetup (space, FLOPs band, run directory)")
        return SupernetProxy(data, config, runtime, supernet)
    if config.name == "train":
        return TrainProxy(data, config, runtime)
    if config.name in ("zero-cost", "naswot"):
        return NaswotProxy(data, config, runtime)
    return SynflowProxy(data, config, runtime)
