"""`count_flops`: FLOPs and parameters of a spec by the analytic counter or by fvcore, the authority it matches
(fvcore traces the built network; see `effnet.nas.net.flops` for what counts as a FLOP)."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from effnet.nas import checks
from effnet.nas.errors import InputError
from effnet.nas.net.flops import analytic_cost
from effnet.nas.net.limits import check_memory
from effnet.nas.net.model import build_model
from effnet.nas.net.spec import NetworkSpec


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of a network (fvcore's convention), in total and by operator, and its parameters."""

    total: int
    by_operator: dict[str, int]
    params: int


def count_flops(spec: NetworkSpec, *, method: str = "analytic") -> FlopCount:
    """FLOPs and parameters of `spec` at its resolution, batch 1: `analytic` (from the spec alone,
    microseconds) or `fvcore` (tracing the built model, the authority the analytic counter matches)."""
    checks.instance("spec", spec, NetworkSpec, "a NetworkSpec (effnet.load_spec(path))")
    if method == "analytic":
        cost = analytic_cost(spec)
        return FlopCount(total=cost.flops, by_operator=cost.total.by_operator(), params=cost.params)
    if method == "fvcore":
        return fvcore_count(spec)
    raise InputError(f"method must be analytic or fvcore, got {method!r}")


def fvcore_count(spec: NetworkSpec, model: nn.Module | None = None) -> FlopCount:
    """Count a built model with fvcore: eval mode, batch 1, the spec's resolution.

    fvcore's import and tracing emit deprecation and tracer warnings from its own modules; they
    are silenced here so that users (and test runs with warnings as errors) never see them.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        if model is None:
            check_memory(spec, "count it with fvcore")
            with torch.random.fork_rng(devices=[]):  # counting leaves the caller's random state alone
                model = build_model(spec)
        was_training = model.training
        model.eval()
        x = torch.zeros(1, spec.in_channels, spec.resolution, spec.resolution)
        logger = logging.getLogger("fvcore")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            with torch.no_grad():
                analysis = FlopCountAnalysis(model, x)
                analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
                analysis.tracer_warnings("none")
                by_op = {k: int(v) for k, v in analysis.by_operator().items() if v}
                total = int(analysis.total())
                params = sum(p.numel() for p in model.parameters())
        finally:
            logger.setLevel(level)
            model.train(was_training)
    return FlopCount(total=total, by_operator=by_op, params=params)
