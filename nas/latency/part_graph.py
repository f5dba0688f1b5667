"""A latency table's part (stem, block, head) as an ONNX graph for onnxruntime, exported fast.

`effnet.nas.net.onnx_graph` (torch's `dynamo=True` exporter, the graph `effnet export-model` writes) takes 1.3-4.6 s
per export on the 2-core CPU: hours for the default space's 2,604 parts. torch's TorchScript exporter
(`dynamo=False`) traces a part in 20-170 ms there, into the same operators (Conv, Sigmoid, Mul, ReduceSum, Div,
AveragePool, Gemm) at the same opset, and onnxruntime's own graph optimisation, run when the session is made,
removes the shape bookkeeping it writes besides. A part is traced at the table's batch (a fixed input shape), as
it is timed. Whole networks (`effnet describe --latency`, a table's calibration) are still exported by
`onnx_graph`, so the table's calibration factor, fitted on those, takes up what the two exporters' graphs differ
by (on three random networks of the default space, both graphs ran within 6 % of each other, batch 1, one thread).
The default space's table (2,604 parts, 12 calibration networks) then builds in 109-128 s in onnxruntime, batch
1, one thread, on the 2-core VM at a load average near 1 (2.6-4 minutes at 2-4.7), and predicted 30 random
networks of the space near 400M FLOPs, timed end to end, within a median 4.1 % (29 of 30 within 20 %;
`bench/bench_latency.py`).
"""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from effnet.nas.net.onnx_graph import ONNX_OPSET


def part_graph(model: nn.Module, example: torch.Tensor) -> bytes:
    """`model` (in eval mode, on the CPU: a folded part) as a serialised ONNX graph taking tensors of `example`'s
    shape: input `images`, output `logits`."""
    graph = io.BytesIO()
    # torch 2.9 on marks the TorchScript exporter deprecated (DeprecationWarning, at each export and from the
    # helpers it calls); chosen here for its speed, and tests/test_latency_onnx.py checks what it exports. It writes
    # the graph to a BytesIO (its file writer takes one), where torch.onnx.export's type hint names paths only.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            graph,  # type: ignore[arg-type]
            input_names=["images"],
            output_names=["logits"],
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return graph.getvalue()
