"""A network as an ONNX graph, in memory: the one export step that `effnet export-model` writes to a file (with
its metadata) and the latency measurement runs in onnxruntime, so both run the same graph.

The graph is torch's exporter's (`dynamo=True`) at a fixed opset, traced at `EXAMPLE_BATCH` with a dynamic batch
axis: the exported network takes any batch. The optional packages (`pip install 'effnet[onnx]'`) load only here,
inside the calls.
"""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING

import torch
from torch import nn

from effnet.nas.errors import InputError

if TYPE_CHECKING:
    import onnx

EXAMPLE_BATCH = 2
"""The batch the exporters trace with (not 1, which torch.export would specialise the batch axis to)."""
ONNX_OPSET = 18
"""ONNX opset of the exported graph (torch's exporter writes it in ONNX IR version 10: onnxruntime 1.18 on)."""
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
"""What exporting a network and running the export need: the `onnx` extra."""


def require_onnx(purpose: str = "ONNX export") -> None:
    """`purpose` (ONNX export, the onnxruntime runtime) needs the optional packages: an `InputError` naming the
    missing ones and the extra that installs them."""
    import importlib.util

    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"{purpose} needs {', '.join(missing)}, not installed; pip install 'effnet[onnx]'")


def onnx_graph(model: nn.Module, image_shape: tuple[int, int, int]) -> onnx.ModelProto:
    """`model` (in eval mode, on the CPU; a folded network for deployment) as an ONNX graph taking images of
    `image_shape` (channels, height, width) in any batch: input `images`, output `logits`."""
    example = torch.zeros(EXAMPLE_BATCH, *image_shape)
    batch = torch.export.Dim("batch", min=1)
    # some onnxscript versions print their graph rewrites; the library never prints (and --json owns stdout)
    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            model,
            (example,),
            input_names=["images"],
            output_names=["logits"],
            opset_version=ONNX_OPSET,
            dynamo=True,
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    assert program is not None, "torch.onnx.export(dynamo=True) returns the ONNX program"
    return program.model_proto
