"""End to end on one CUDA GPU: images from JPEG files to EfficientNet-B0 training steps, and the proxy's cache.

Rows (images/s, median of `--rounds` rounds of `--steps` steps, each timed between two synchronisations):
- the model alone: B0 training steps on a batch already on the GPU (the ceiling the data must feed);
- training at 224 px, `paper` augmentation, JPEGs decoded by `--workers` DataLoader processes, uint8 batches
  pinned and copied without blocking, normalised on the GPU (effnet train's default path);
- the same with `--decode device`: the workers send JPEG bytes, nvjpeg decodes each batch on the GPU and the
  views are cut there;
- the proxy at 128 px, `light` augmentation: streamed from the files, and read from the decoded cache (built
  once; its build time reported).
Images are generated (`--images` JPEGs of 320 x 240). Called by bench/gpu.sh; `--help` works without a GPU.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=8, help="DataLoader processes")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", dest="json_path", default=None)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_data import make_folder
    from bench_gpu import cuda_device

    from effnet.nas.data.folder import index_folder
    from effnet.nas.data.loader import (
        DeviceDecoder,
        EncodedImages,
        EpochSampler,
        Normalize,
        TransformedImages,
        collate_encoded,
        make_loader,
    )
    from effnet.nas.data.sources import proxy_data
    from effnet.nas.data.transforms import train_transform
    from effnet.nas.net.model import build_model
    from effnet.nas.training.runtime import autocast_for, place_model
    from effnet.scaling.presets import reference_b0

    device = cuda_device(args.device)
    normalize = Normalize(device)

    def trainer(resolution: int):
        torch.manual_seed(0)
        model = place_model(build_model(reference_b0().replace(resolution=resolution, num_classes=10)), device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(images: torch.Tensor, labels: torch.Tensor) -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast_for(device):
                loss = F.cross_entropy(model(images), labels.to(device, non_blocking=True))
            loss.backward()
            optimizer.step()

        return step

    def timed(source, step) -> float:
        """Images/s of `step` fed by `source`, which yields (images on the device, labels)."""
        for _ in range(2):  # workers started, cuDNN tuned
            step(*next(source))
        rates = []
        for _ in range(args.rounds):
            torch.cuda.synchronize(device)
            started, seen = time.perf_counter(), 0
            for _ in range(args.steps):
                images, labels = next(source)
                step(images, labels)
                seen += len(labels)
            torch.cuda.synchronize(device)
            rates.append(seen / (time.perf_counter() - started))
        return statistics.median(rates)

    def batches(dataset, collate=None):
        sampler = EpochSampler(len(dataset), shuffle=True)
        loader = (
            make_loader(dataset, sampler, args.batch, args.workers, pin=True, drop_last=True)
            if collate is None
            else DataLoader(
                dataset,
                batch_size=args.batch,
                sampler=sampler,
                num_workers=args.workers,
                collate_fn=collate,
                drop_last=True,
                persistent_workers=True,
                prefetch_factor=4,
            )
        )
        for epoch in itertools.count(1):
            sampler.set_epoch(epoch)
            yield from loader

    def normalised(dataset):
        return ((normalize(batch.images), batch.labels) for batch in batches(dataset))

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp) / "jpegs", args.images)
        images, _ = index_folder(folder)
        step = trainer(224)
        ready = torch.randn(args.batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
        rows["model alone, 224 px (data already on the GPU)"] = timed(
            itertools.repeat((ready, torch.randint(0, 10, (args.batch,)))), step
        )
        transform = train_transform(224, "paper", "files")
        rows[f"train 224 px paper, decoded by {args.workers} workers"] = timed(
            normalised(TransformedImages(images, transform)), step
        )
        decoder = DeviceDecoder(images, transform, device)

        def on_device():
            for batch in batches(EncodedImages(images), collate_encoded):
                pixels, labels, _ = decoder(batch)
                yield normalize(pixels), labels

        rows[f"train 224 px paper, nvjpeg on the GPU ({args.workers} workers read bytes)"] = timed(on_device(), step)
        step = trainer(128)
        rows[f"proxy 128 px light, streamed from the files ({args.workers} workers)"] = timed(
            normalised(TransformedImages(images, train_transform(128, "light", "files"))), step
        )
        started = time.perf_counter()
        data = proxy_data(
            str(folder),
            128,
            seed=0,
            val_images=max(10, args.images // 10),
            cache_dir=Path(tmp) / "cache",
            loader_workers=args.workers,
        )
        built = time.perf_counter() - started
        rows[f"proxy 128 px light, from the decoded cache ({args.workers} workers)"] = timed(
            normalised(TransformedImages(data.train, train_transform(128, "light", "prepared"))), step
        )
    name = torch.cuda.get_device_name(device)
    print(
        f"{name}, torch {torch.__version__}, B0, batch {args.batch}, bf16 autocast + channels_last, "
        f"{args.images:,} JPEGs 320 x 240; proxy cache built in {built:.1f} s"
    )
    print("| path | images/s |\n|---|---:|")
    for label, value in rows.items():
        print(f"| {label} | {value:,.0f} |")
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump({"device": name, "rows": rows, "cache_build_s": built}, handle, indent=2)


if __name__ == "__main__":
    main()
