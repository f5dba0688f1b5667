"""The one evaluation loop: top-1 accuracy of a model over batches, in eval mode, optionally summed over
the processes of a distributed run."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from effnet.nas.training.runtime import autocast_for, place_batch


def top1_accuracy(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    all_reduce: bool = False,
) -> float:
    """Correct over seen images; with `all_reduce` the counts of every process of the default process group
    are summed first, so each process returns the accuracy over all of them."""
    model.eval()
    counts = torch.zeros(2, dtype=torch.int64, device=device)
    with torch.inference_mode():
        for images, labels in batches:
            labels = labels.to(device, non_blocking=True)
            with autocast_for(device):
                logits = model(place_batch(images, device))
            counts[0] += (logits.argmax(dim=1) == labels).sum()
            counts[1] += len(labels)
    if all_reduce:
        import torch.distributed as torch_dist

        torch_dist.all_reduce(counts)
    return counts[0].item() / max(1, counts[1].item())
