"""Each runtime's form of a network, ready to run one batch of images: what a latency measurement times.

- `torch`: the eval-mode model as built (its own layout, contiguous), under `torch.inference_mode()`.
- `folded`: `fold_batch_norm`'s copy, in channels_last on the device with channels_last images: the layout the
  folded path is fastest in (its gated squeeze-excitation runs only on channels_last tensors; see
  `effnet.nas.net.fold`): B0 at 224 px, batch 1, one thread, 30 interleaved runs each on the 2-core VM at a load
  average near 3, took a median 19.9 ms folded channels_last, 23.6 ms folded contiguous, 24.1 ms unfolded as
  built. Under `torch.inference_mode()`.
- `onnxruntime`: the folded network as the ONNX graph `effnet export-model` writes (`onnx_graph`), run by an
  onnxruntime session with `threads` intra-op threads (on CUDA, its CUDA provider). A latency table's part is
  exported by the fast exporter instead (`effnet.nas.latency.part_graph`: the dynamo exporter would take hours for
  a space's parts).

The images are random (seeded: every runtime sees the same ones) and made on the device before any run, so a
run is the network alone; onnxruntime's session takes and returns host arrays, so on CUDA its runs include the
copies to and from the GPU.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from effnet.nas.errors import SettingError
from effnet.nas.latency.part_graph import part_graph
from effnet.nas.net.fold import fold_batch_norm
from effnet.nas.net.onnx_graph import onnx_graph
from effnet.nas.training.runtime import place_batch, place_model

IMAGE_SEED = 0


@dataclass(frozen=True)
class Prepared:
    """A network in a runtime with its batch of images: `run` passes the batch through once and returns the
    output (on the device)."""

    run: Callable[[], torch.Tensor]
    events_on: torch.device | None
    """The CUDA device whose stream a run is timed on (with events); None: `run` returns when the work is done
    (the CPU, onnxruntime's session), so the wall clock times it."""


def random_images(batch: int, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """`batch` images of `image_shape` (channels, height, width), the same for every call with the same shape."""
    return torch.randn(batch, *image_shape, generator=torch.Generator().manual_seed(IMAGE_SEED))


def prepare(
    model: nn.Module,
    image_shape: tuple[int, int, int],
    runtime: str,
    device: torch.device,
    batch: int,
    threads: int,
    part: bool = False,
) -> Prepared:
    """`model` (left as it is) in `runtime` on `device`, with `batch` random images of `image_shape`; `threads`: the
    intra-op threads of a runtime that keeps its own (onnxruntime; torch's are the caller's to set). `part`: `model`
    is a latency table's part, which onnxruntime runs as `part_graph` exports it."""
    images = random_images(batch, image_shape)
    if runtime == "onnxruntime":
        return _onnxruntime(model, images, device, threads, part)
    return PREPARERS[runtime](model, images, device, threads)


def _timed_on(device: torch.device) -> torch.device | None:
    return device if device.type == "cuda" else None


def _inference(model: nn.Module, images: torch.Tensor) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(images)

    return run


def _torch(model: nn.Module, images: torch.Tensor, device: torch.device, threads: int) -> Prepared:
    network = copy.deepcopy(model).eval().requires_grad_(False).to(device)
    return Prepared(_inference(network, images.to(device)), _timed_on(device))


def _folded(model: nn.Module, images: torch.Tensor, device: torch.device, threads: int) -> Prepared:
    network = place_model(fold_batch_norm(model), device, channels_last=True)
    return Prepared(_inference(network, place_batch(images, device, channels_last=True)), _timed_on(device))


def _onnxruntime(
    model: nn.Module, images: torch.Tensor, device: torch.device, threads: int, part: bool = False
) -> Prepared:
    import onnxruntime  # measure_latency's check_settings said how to install it where it is missing

    providers: list[str | tuple[str, dict[str, int]]] = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise SettingError(
                "device", f"{device}: this onnxruntime has no CUDA provider; use cpu, or install onnxruntime-gpu"
            )
        index = device.index if device.index is not None else torch.cuda.current_device()
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
    folded = fold_batch_norm(model).cpu()
    channels, height, width = images.shape[1:]
    graph = part_graph(folded, images) if part else onnx_graph(folded, (channels, height, width)).SerializeToString()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(graph, options, providers=providers)
    feed = {"images": images.numpy()}
    return Prepared(lambda: torch.from_numpy(session.run(None, feed)[0]), None)


PREPARERS: dict[str, Callable[[nn.Module, torch.Tensor, torch.device, int], Prepared]] = {
    "folded": _folded,
    "torch": _torch,
    "onnxruntime": _onnxruntime,
}
"""Each runtime of `effnet.nas.choices.LATENCY_RUNTIMES`, by name."""
