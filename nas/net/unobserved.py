"""Whether a layer may run a faster equivalent of its modules: nothing records the modules as they are.

The fast paths of the network (`effnet.nas.net.gated`, `effnet.nas.net.depthwise`, the squeeze-excitation's
matrix products in `effnet.nas.net.model`) compute the same function by other ops. They run only where no
tracer, compiler or exporter records the ops (fvcore counts FLOPs per op through `torch.jit.trace`; torch.fx,
TorchScript, torch.compile and the ONNX exporter keep the layers' own ops) and no hook expects to see a module
run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as module_hooks


def recorded(x: Any) -> bool:
    """Whether the ops applied to `x` now are being recorded by a tracer, compiler or exporter, or transformed by
    `torch.func` (vmap, grad, ...: its wrapped tensors answer no question of memory layout)."""
    return bool(
        isinstance(x, torch.fx.Proxy)
        or torch._C._are_functorch_transforms_active()
        or torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.compiler.is_compiling()
        or torch.onnx.is_in_onnx_export()
    )


def hooked(module: nn.Module) -> bool:
    """Whether a hook of `module`'s own watches it run."""
    return bool(
        module._forward_hooks or module._forward_pre_hooks or module._backward_hooks or module._backward_pre_hooks
    )


def globally_hooked() -> bool:
    """Whether a hook registered for every module (`nn.modules.module.register_module_forward_hook`, ...) is set."""
    return bool(
        module_hooks._global_forward_hooks
        or module_hooks._global_forward_pre_hooks
        or module_hooks._global_backward_hooks
        or module_hooks._global_backward_pre_hooks
    )


def unobserved(x: Any, *modules: nn.Module) -> bool:
    """Whether `modules` may be run on `x` by other ops: nothing records the ops, and no hook watches them."""
    return not (recorded(x) or globally_hooked() or any(hooked(m) for m in modules))
