"""Training-free proxies: NASWOT and synflow, each from one forward (and backward) pass at initialisation.

Both return a finite positive score, higher = better, from a monotone map of the published
quantity: ``softplus(log S) = log(1 + S)`` (natural logarithm), which equals ``log S`` to
within 1e-13 once ``log S > 30`` (the usual case: on 64 digits at 32 px, NASWOT's log|K| is
about 680 for B0 and synflow's log is about 52), keeps the ranking, and stays positive when
``log S`` is small or negative. A degenerate network (singular NASWOT kernel, zero synflow)
scores `MIN_SCORE`; a synflow that overflows float64 raises `ProxyFailure`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import nn

from effnet.nas.data.loader import Normalize, TransformedImages, collate
from effnet.nas.data.sources import DataSplits
from effnet.nas.data.transforms import eval_transform
from effnet.nas.net.activations import ACTIVATION_LAYERS
from effnet.nas.net.model import DropPath
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.names import ZERO_COST_FLOOR
from effnet.nas.proxies.proxy import ProxyFailure
from effnet.nas.proxies.train import seeded_proxy_model

MIN_SCORE = ZERO_COST_FLOOR


def positive_score(log_value: float) -> float:
    """softplus(log S) = log(1 + S): monotone, positive, and log S itself for large S."""
    if math.isnan(log_value) or log_value == math.inf:
        raise ProxyFailure(f"zero-cost score is not finite (log value {log_value})")
    soft = log_value if log_value > 30 else math.log1p(math.exp(log_value))
    return max(soft, MIN_SCORE)


class _ZeroCostProxy:
    name = "zero-cost"

    def __init__(self, data: DataSplits, config: ProxyConfig, runtime: ProxyRuntime = ProxyRuntime()):
        self.data = data
        self.config = config
        self.runtime = runtime

    def score(
        self, spec: NetworkSpec, report: Callable[[int, float], None] | None = None, seed: int | None = None
    ) -> float:
        """The score of `spec` at initialisation; `seed` (default the runtime's) seeds the weights (the
        minibatch stays the runtime seed's)."""
        runtime = self.runtime if seed is None else dataclasses.replace(self.runtime, seed=seed)
        with seeded_proxy_model(spec, self.data, runtime) as (model, device):
            return positive_score(self.log_score(model.to(device), device))

    def log_score(self, model: nn.Module, device: torch.device) -> float:
        raise NotImplementedError


class NaswotProxy(_ZeroCostProxy):
    """NASWOT (Mellor et al., "Neural Architecture Search without Training", ICML 2021).

    Each image of a minibatch gets a binary code: one bit per activation unit, set where the
    unit's input is positive. For ReLU that is the paper's "unit is active"; for SiLU, ReLU6 and
    hardswish we take the same sign of the pre-activation, where the function turns from
    (near-)zero to (near-)identity. K[i, j] counts the bits images i and j share, and the score
    is log |det K|: networks whose units already tell the images apart score higher. BatchNorm
    uses batch statistics (train mode) as in the paper's code; dropout and drop-path are off.
    The minibatch is `batch_size` training images drawn with the seed.
    """

    name = "naswot"

    def minibatch(self, device: torch.device) -> torch.Tensor:
        """`batch_size` training images drawn with the seed, in their evaluation view, normalised."""
        n = len(self.data.train)
        generator = torch.Generator().manual_seed(self.runtime.seed)
        order = torch.randperm(n, generator=generator)[: min(self.config.batch_size, n)]
        images = TransformedImages(self.data.train, eval_transform(self.data.resolution, self.data.stored))
        batch = collate([images[self.runtime.seed, 0, int(i)] for i in order])
        return Normalize(device)(batch.images).contiguous()

    def log_score(self, model: nn.Module, device: torch.device) -> float:
        images = self.minibatch(device)
        batch = len(images)
        kernel = torch.zeros(batch, batch, dtype=torch.float64, device=device)

        def add_codes(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            codes = (inputs[0] > 0).flatten(1).float()
            ones = codes.sum(dim=1)
            # shared bits = shared ones + shared zeros = units - ones_i - ones_j + 2 * ones_ij
            shared = codes.shape[1] - ones[:, None] - ones[None, :] + 2.0 * (codes @ codes.T)
            kernel.add_(shared.double())

        model.train()
        for module in model.modules():
            if isinstance(module, (nn.Dropout, DropPath)):
                module.eval()
        handles = [m.register_forward_pre_hook(add_codes) for m in model.modules() if isinstance(m, ACTIVATION_LAYERS)]
        try:
            with torch.no_grad():
                model(images)
        finally:
            for handle in handles:
                handle.remove()
        sign, log_det = torch.linalg.slogdet(kernel)
        return float(log_det) if float(sign) > 0 else -math.inf


class SynflowProxy(_ZeroCostProxy):
    """Synflow (Tanaka et al., "Pruning neural networks without any data...", NeurIPS 2020).

    All parameters replaced by their absolute values, the model in float64 and eval mode (fresh
    BatchNorm is then the identity up to 1/sqrt(1 + eps)), one all-ones input, R = sum of the
    outputs; the score is the log of sum |theta * dR/dtheta| over conv and linear weights.
    """

    name = "synflow"

    def log_score(self, model: nn.Module, device: torch.device) -> float:
        model = model.double().eval()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.abs_()
        d = self.data
        ones = torch.ones(1, d.in_channels, d.resolution, d.resolution, dtype=torch.float64, device=device)
        model(ones).sum().backward()
        total = 0.0
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    assert m.weight.grad is not None  # the all-ones pass reaches every weight
                    total += float((m.weight * m.weight.grad).abs().sum())
        if not math.isfinite(total):
            raise ProxyFailure("synflow overflowed float64 (the network is too deep for an all-ones pass)")
        return math.log(total) if total > 0 else -math.inf
