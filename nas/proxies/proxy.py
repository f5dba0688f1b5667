"""What a proxy is: an object that scores a candidate network (higher is better), and how a scoring fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from effnet.nas.net.spec import NetworkSpec


class ProxyFailure(RuntimeError):
    """A candidate could not be scored (its loss became NaN, a score overflowed); the trial fails."""


class Proxy(Protocol):
    name: str

    def score(
        self, spec: NetworkSpec, report: Callable[[int, float], None] | None = None, seed: int | None = None
    ) -> float: ...
