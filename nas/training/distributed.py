"""A training job under `torchrun`: this process's place in it, its process group, its device, and the sums over
its processes.

RANK / WORLD_SIZE / LOCAL_RANK in the environment make every process train a shard of each global batch in
DistributedDataParallel (NCCL on CUDA, Gloo on CPU); without them the run is a plain single process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import nn

from effnet.nas.errors import InputError, SettingError
from effnet.nas.training.runtime import resolve_device


@dataclass(frozen=True)
class Distributed:
    """This process's place in a `torchrun` job; world size 1 is a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_from_env(environ: dict[str, str] | None = None) -> Distributed:
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return Distributed()
    try:
        rank, world, local = int(env.get("RANK", "0")), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0"))
    except ValueError:
        raise InputError("RANK, WORLD_SIZE and LOCAL_RANK must be integers; start the job with torchrun") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise InputError(f"inconsistent torchrun environment: RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local}")
    return Distributed(rank=rank, world_size=world, local_rank=local)


@contextlib.contextmanager
def distributed_session(dist: Distributed, device: str) -> Iterator[None]:
    """Join the `torchrun` process group for the duration (nothing to do for one process)."""
    if not dist.enabled:
        yield
        return
    cuda = resolve_device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(process_device(device, dist))
    torch_dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield
    finally:
        torch_dist.destroy_process_group()


def process_device(name: str, dist: Distributed) -> torch.device:
    """The resolved device; under torchrun on CUDA, this process's GPU cuda:LOCAL_RANK."""
    device = resolve_device(name)
    if device.type != "cuda" or not dist.enabled:
        return device
    if device.index is not None:
        raise SettingError(
            "device",
            f"{name!r}: under torchrun each process takes cuda:LOCAL_RANK; use cuda "
            "and choose the GPUs with CUDA_VISIBLE_DEVICES",
        )
    if dist.local_rank >= torch.cuda.device_count():
        raise InputError(
            f"LOCAL_RANK {dist.local_rank} but only {torch.cuda.device_count()} CUDA GPUs are visible; "
            "start at most one process per GPU"
        )
    return torch.device("cuda", dist.local_rank)


def mean_over_ranks(total: torch.Tensor, steps: int, dist: Distributed) -> float:
    """The mean per step of `total` summed over `steps` steps in every process."""
    if dist.enabled:
        total = total.clone()
        torch_dist.all_reduce(total)
    return total.item() / (steps * dist.world_size)


def broadcast_buffers(module: nn.Module) -> None:
    """Give every process rank 0's BatchNorm statistics, so all evaluate (and save) the same model."""
    for buffer in module.buffers():
        torch_dist.broadcast(buffer, src=0)
