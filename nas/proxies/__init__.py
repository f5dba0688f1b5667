"""Accuracy proxies: cheap estimates of how well a candidate network will do, higher is better.

- ``train``: a short training at a proxy resolution; the score is top-1 validation accuracy in [0, 1].
- ``zero-cost`` (alias ``naswot``): NASWOT (Mellor et al., ICML 2021), training-free, one minibatch.
- ``synflow``: synaptic flow (Tanaka et al., NeurIPS 2020), training-free, data-free.

`make_proxy(name, data, settings)` returns an object with `score(spec, report=None) -> float`.
Every score is finite and positive, so the search can use it in place of accuracy in the reward
ACC * (FLOPs / T) ** w.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from effnet.nas.errors import InputError

if TYPE_CHECKING:
    from effnet.nas.data.sources import ImageData
    from effnet.nas.net.spec import NetworkSpec

PROXIES: tuple[str, ...] = ("train", "zero-cost")
"""The proxies the search offers; `proxy-check` also ranks by the "params" and "flops" baselines."""

ZERO_COST_SCORES: tuple[str, ...] = ("naswot", "synflow")
"""Training-free scores by name; "zero-cost" means the first."""

PROXY_NAMES: tuple[str, ...] = PROXIES + ZERO_COST_SCORES


class ProxyFailure(RuntimeError):
    """A candidate could not be scored (its loss became NaN, a score overflowed); the trial fails."""


@dataclass(frozen=True)
class ProxySettings:
    epochs: int = 3
    resolution: int = 32
    """Proxy training resolution; the spec's own resolution is replaced by this one."""
    batch_size: int = 64
    lr: float = 0.002
    """Peak learning rate of AdamW's one-cycle schedule. Measured on digits at 32 px, 3 epochs, for
    the reference B0 (val top-1): peak 0.001 -> 0.78, 0.002 -> 0.85, 0.003 -> 0.80, 0.005 -> 0.63,
    0.01 -> 0.23 (DESIGN.md's 0.01 was measured on another implementation of B0)."""
    weight_decay: float = 0.05
    """AdamW weight decay on conv and linear weights, not on BatchNorm parameters or biases
    (B0 as above at lr 0.002: decay 0 -> 0.83, 0.05 -> 0.85, 0.2 -> 0.81)."""
    device: str = "cpu"
    """"auto", "cpu" or "cuda"."""
    seed: int = 0
    threads: int | None = None
    """CPU threads while scoring (None: leave torch's setting alone)."""
    max_train_batches: int | None = None
    """Cap on training steps per epoch, for tests and benchmarks (None: whole epochs)."""


class Proxy(Protocol):
    name: str

    def score(self, spec: "NetworkSpec", report: Callable[[int, float], None] | None = None) -> float: ...


def make_proxy(name: str, data: "ImageData", settings: ProxySettings) -> Proxy:
    """The proxy called `name` over `data`; raises `InputError` for an unknown name or bad settings."""
    _check_settings(settings)
    if data.resolution != settings.resolution:
        raise ValueError(f"data are at {data.resolution} px but the proxy trains at {settings.resolution} px; "
                         "load the data at the proxy resolution")
    if name == "train":
        from effnet.nas.proxies.train import TrainProxy

        return TrainProxy(data, settings)
    if name in ("zero-cost", "naswot"):
        from effnet.nas.proxies.zero_cost import NaswotProxy

        return NaswotProxy(data, settings)
    if name == "synflow":
        from effnet.nas.proxies.zero_cost import SynflowProxy

        return SynflowProxy(data, settings)
    raise InputError(f"unknown proxy {name!r}; choose one of {', '.join(PROXY_NAMES)}")


def _check_settings(settings: ProxySettings) -> None:
    if settings.epochs < 1:
        raise InputError(f"proxy epochs must be at least 1, got {settings.epochs}")
    if settings.resolution < 1:
        raise InputError(f"proxy resolution must be a positive number of pixels, got {settings.resolution}")
    if settings.batch_size < 2:
        raise InputError(f"proxy batch size must be at least 2 (BatchNorm needs two images), got {settings.batch_size}")
    if not settings.lr > 0:
        raise InputError(f"proxy learning rate must be positive, got {settings.lr}")
    if settings.weight_decay < 0:
        raise InputError(f"proxy weight decay must not be negative, got {settings.weight_decay}")
    if settings.device not in ("auto", "cpu", "cuda"):
        raise InputError(f"device must be auto, cpu or cuda, got {settings.device!r}")
    if settings.threads is not None and settings.threads < 1:
        raise InputError(f"threads must be at least 1, got {settings.threads}")
    if settings.max_train_batches is not None and settings.max_train_batches < 1:
        raise InputError(f"max_train_batches must be at least 1, got {settings.max_train_batches}")
