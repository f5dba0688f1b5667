"""A network for deployment: an ONNX or TorchScript file with BatchNorm folded into the convolutions, or a state
dict timm or torchvision load, each run once against the torch model it came from.

The model is the spec's (or, from an effnet training checkpoint, the spec as trained: its resolution and
classes) in eval mode, with the file's weights (a checkpoint's weights that scored best on validation unless
`which` asks for its EMA or raw weights; a training run directory gives its best.pt). ONNX and TorchScript get
the folded network (`fold_batch_norm`) with a dynamic batch axis and the checkpoint's record as metadata (class
names, evaluation view, resolution, spec, weights: `effnet.nas.inference.METADATA_KEYS`), in the ONNX file's
`metadata_props` and as the TorchScript file's extra files; the state dicts keep the BatchNorm layers their
libraries have. The exported file is then run (onnxruntime, `torch.jit.load`, or the
state dict read back into the spec) on random images at batch 1 and 3 and compared with the unfolded torch
model on the same images.

Tolerance: the largest absolute difference must stay within 1e-4 of the largest absolute logit. float32
rounds each operation to about 6e-8 relative; folding rounds the BatchNorm's scale into the weights once and
the exported kernels sum in another order, which over B0's 80-odd layers measured differences near 1e-6 of
the logits' scale. 1e-4 leaves two orders of magnitude above that, while an export that computes another
function (a missing layer, another padding, BatchNorm left out or applied twice) changes the logits by a
sizeable fraction of their scale. Relative, because a network at random initialisation can have logits as small
as 1e-5, where any absolute bound of that order would pass whatever was exported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effnet.nas import checks
from effnet.nas.choices import EXPORT_FORMATS, WEIGHTS
from effnet.nas.errors import InputError, SettingError
from effnet.nas.files import atomic_write
from effnet.nas.inference import export_metadata
from effnet.nas.net.fold import fold_batch_norm
from effnet.nas.net.interop import to_effnet
from effnet.nas.net.limits import check_memory
from effnet.nas.net.model import Network, build_model
from effnet.nas.net.onnx_graph import EXAMPLE_BATCH, onnx_graph, require_onnx
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.net.spec_file import spec_to_dict
from effnet.nas.targets import check_output_file
from effnet.nas.training.weights import WeightsFile, load_weights, read_weights, state_dict_for, weights_path

RELATIVE_TOLERANCE = 1e-4
"""The largest absolute difference allowed, as a fraction of the largest absolute logit (see the module notes)."""
CHECK_BATCHES = (1, 3)
"""Batch sizes the exported file is run at: the dynamic batch axis must take both."""
TRAINED_FIELDS = ("resolution", "num_classes", "in_channels")
"""What a training checkpoint's spec may change of the spec it was trained from (`training_spec`)."""


@dataclass(frozen=True)
class ExportResult:
    """The exported file (None when the check failed and nothing was written), what was exported, and how far the
    file's outputs are from the torch model's."""

    format: str
    path: Path | None
    spec: NetworkSpec
    weights: str
    max_abs_diff: float
    output_scale: float
    """The largest absolute logit of the torch model on the check's images."""
    seconds: float
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    """What an ONNX or TorchScript file carries beside the network (`effnet.nas.inference.METADATA_KEYS`)."""

    @property
    def tolerance(self) -> float:
        return RELATIVE_TOLERANCE * self.output_scale

    @property
    def within_tolerance(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "out": str(self.path) if self.path else None,
            "written": self.path is not None,
            "spec": self.spec.name,
            "resolution": self.spec.resolution,
            "num_classes": self.spec.num_classes,
            "padding": self.spec.padding,
            "weights": self.weights,
            "batch_norm_folded": self.format in ("onnx", "torchscript"),
            "checked_batches": list(CHECK_BATCHES),
            "max_abs_diff": self.max_abs_diff,
            "output_scale": self.output_scale,
            "tolerance": self.tolerance,
            "relative_tolerance": RELATIVE_TOLERANCE,
            "within_tolerance": self.within_tolerance,
            "seconds": round(self.seconds, 2),
            "metadata": self.metadata,
        }


def export_model(
    spec: NetworkSpec,
    out: str | os.PathLike[str],
    format: str = "onnx",
    weights: str | os.PathLike[str] | None = None,
    seed: int = 0,
    which: str = "best",
    replace: bool = False,
) -> ExportResult:
    """Export `spec`'s network (with the weights of the file or run directory `weights`, else its seeded
    initialisation) to `out` as `format` (onnx, torchscript, timm, torchvision), after running the exported form
    against the torch model; the file is written (atomically) only when they agree within the tolerance. `which`
    picks a training checkpoint's weights: best (those that scored best on validation), ema or raw. `out` must be
    a new file, or with `replace` one effnet may replace (`effnet.nas.targets.check_output_file`), checked first."""
    checks.instance("spec", spec, NetworkSpec, "a NetworkSpec (effnet.load_spec(path))")
    if format not in EXPORT_FORMATS:
        raise SettingError("format", f"must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    checks.seed("seed", seed)
    checks.path("out", out)
    if weights is not None:
        checks.path("weights", weights)
    if format == "onnx":
        require_onnx()
    check_output_file(out, (None if weights is None else weights_path(weights),), replace)
    started = time.perf_counter()
    checks.choice("which", which, WEIGHTS)
    source = read_weights(weights, which) if weights is not None else None
    spec = as_trained(spec, source)
    check_memory(spec, "export")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(spec).eval()
        if source is not None:
            load_weights(model, source)
        generator = torch.Generator().manual_seed(seed)
        images = [
            torch.randn(b, spec.in_channels, spec.resolution, spec.resolution, generator=generator)
            for b in CHECK_BATCHES
        ]
    with torch.no_grad():
        expected = [model(x) for x in images]
        metadata = export_metadata(spec, source) if format in ("onnx", "torchscript") else {}
        data, run = EXPORTERS[format](model, spec, metadata)
        diff = max(float((run(x) - y).abs().max()) for x, y in zip(images, expected, strict=True))
    scale = max(float(y.abs().max()) for y in expected)
    within = diff <= RELATIVE_TOLERANCE * scale
    path = atomic_write(out, lambda fh: fh.write(data)) if within else None
    return ExportResult(
        format,
        path,
        spec,
        source.description if source else f"initialisation (seed {seed})",
        diff,
        scale,
        time.perf_counter() - started,
        metadata,
    )


def as_trained(spec: NetworkSpec, source: WeightsFile | None) -> NetworkSpec:
    """The spec at a training checkpoint's resolution and classes; refuses a checkpoint of another network,
    naming the first field where the two specs differ."""
    trained = source.trained_spec if source is not None else None
    if source is None or trained is None:
        return spec
    spec = spec.replace(**{name: getattr(trained, name) for name in TRAINED_FIELDS})
    mine, theirs = (
        {k: v for k, v in spec_to_dict(s).items() if k not in ("name", "provenance")} for s in (spec, trained)
    )
    if mine != theirs:
        raise InputError(
            f"{source.path} was trained from another spec than {spec.name!r}: "
            f"{first_difference(mine, theirs)}; give the spec the checkpoint was trained from"
        )
    return spec


def first_difference(mine: Any, theirs: Any, where: str = "spec") -> str:
    """Where two plain-data specs first differ, e.g. `stages[2].kernel is 5 here, 3 in the checkpoint`."""
    if isinstance(mine, dict) and isinstance(theirs, dict):
        for key in list(dict.fromkeys([*mine, *theirs])):
            if mine.get(key) != theirs.get(key):
                return first_difference(mine.get(key), theirs.get(key), f"{where}.{key}")
    if isinstance(mine, list) and isinstance(theirs, list) and len(mine) == len(theirs):
        for index, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            if a != b:
                return first_difference(a, b, f"{where}[{index}]")
    return f"{where} is {mine!r} here, {theirs!r} in the checkpoint"


Runner = Callable[[torch.Tensor], torch.Tensor]
Exporter = Callable[[Network, NetworkSpec, dict[str, str]], tuple[bytes, Runner]]
"""(model, spec, metadata) -> the file's bytes and a runner of the file read back."""


def _onnx(model: nn.Module, spec: NetworkSpec, metadata: dict[str, str]) -> tuple[bytes, Runner]:
    import onnx
    import onnxruntime

    proto = onnx_graph(fold_batch_norm(model), (spec.in_channels, spec.resolution, spec.resolution))
    onnx.helper.set_model_props(proto, metadata)
    data = proto.SerializeToString()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return data, lambda x: torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


@contextlib.contextmanager
def _quiet_torch_jit():
    """torch.jit warns on every call that it is deprecated (FutureWarning); `--format torchscript` is asked for
    knowingly, so the warning is said once in the README rather than on every export."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        yield


def _torchscript(model: nn.Module, spec: NetworkSpec, metadata: dict[str, str]) -> tuple[bytes, Runner]:
    folded = fold_batch_norm(model)
    example = torch.zeros(EXAMPLE_BATCH, spec.in_channels, spec.resolution, spec.resolution)
    buffer = io.BytesIO()
    with _quiet_torch_jit():
        torch.jit.save(torch.jit.trace(folded, example), buffer, _extra_files=metadata)
        loaded = torch.jit.load(io.BytesIO(buffer.getvalue()), map_location="cpu")
    return buffer.getvalue(), loaded


def _state_dict(library: str) -> Exporter:
    """A state dict under `library`'s names (what their `load_state_dict(strict=True)` takes: no metadata), checked
    by reading it back into a fresh model of the spec."""

    def export(model: Network, spec: NetworkSpec, metadata: dict[str, str]) -> tuple[bytes, Runner]:
        buffer = io.BytesIO()
        torch.save(state_dict_for(model, library), buffer)
        state = torch.load(io.BytesIO(buffer.getvalue()), map_location="cpu", weights_only=True)
        again = build_model(spec).eval()
        again.load_state_dict(to_effnet(state, again.state_dict(), spec, library, "the exported state dict"))
        return buffer.getvalue(), again

    return export


EXPORTERS: dict[str, Exporter] = {
    "onnx": _onnx,
    "torchscript": _torchscript,
    "timm": _state_dict("timm"),
    "torchvision": _state_dict("torchvision"),
}
