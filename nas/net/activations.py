"""The activation functions a spec names (`ACTIVATIONS`), as torch gives them: one table for every user.

Each is a layer class (what `build_model` puts in the network) and the function that layer applies, which takes
`inplace=` (what the folded network and the weight-sharing layers call).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Activation(NamedTuple):
    layer: type[nn.Module]
    function: Callable[..., torch.Tensor]


ACTIVATION_OPS: dict[str, Activation] = {
    "silu": Activation(nn.SiLU, F.silu),
    "relu": Activation(nn.ReLU, F.relu),
    "relu6": Activation(nn.ReLU6, F.relu6),
    "hardswish": Activation(nn.Hardswish, F.hardswish),
}
"""Keyed by the names of `effnet.nas.net.spec.ACTIVATIONS`, in the same order."""

ACTIVATION_LAYERS: tuple[type[nn.Module], ...] = tuple(op.layer for op in ACTIVATION_OPS.values())
