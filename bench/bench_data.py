"""The data pipeline on this machine, side by side in one run: decode and augment rates, the loader against the
model, memory against dataset size, caches.

    python bench/bench_data.py                   # 6,000 JPEGs of 320 x 240 generated in a temporary folder
    python bench/bench_data.py --images 1200     # a quicker look
    python bench/bench_data.py --markdown        # the tables as bench/RESULTS.md keeps them

Sections:
1. Decode + transform, images/s in one process (what one loader worker does): effnet's training view at
   224 px (`paper`: RandomResizedCrop, flip, AutoAugment; `light` without AutoAugment), its evaluation
   view, and a proxy epoch at 128 px streamed from the files against read from the decoded cache; beside
   the plain loop a hand-written loader would run at its best (PIL with JPEG draft decoding, resize,
   tensor) and the loader effnet had before (every image decoded to float32 at the training size, then
   batches indexed from memory: its one-off decode rate is what an epoch costs it, once, per process).
2. The loader against the model: batches/s of the DataLoader with 1 and 2 worker processes at 224 px
   (`paper`) against EfficientNet-B0's training steps/s at 224 px, batch 32, channels_last, on this CPU.
3. Memory against dataset size: `effnet train` one epoch at 96 px (decoding in the training process) on
   400 and on 6,000 of the JPEGs: peak resident memory of the process.
4. Caches: building the 128 px proxy cache of the images; W processes reading all of it at once: each
   one's private (anonymous) memory and its share of the mapped file.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from effnet.nas.cpus import cpu_ids

HERE = Path(__file__).resolve().parent


def make_folder(root: Path, images: int, classes: int = 10, seed: int = 0) -> Path:
    """`images` JPEGs of 320 x 240 (quality 90) in `classes` class folders, with some structure to compress."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, 320, dtype=np.float32)[None, :, None]
    for i in range(images):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (base + rng.normal(0, 40, (240, 320, 3))).clip(0, 255).astype(np.uint8)
        pixels[..., i % 3] //= 2
        Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    return root


def rate(fn, items: list, repeat: int = 1) -> float:
    """Items per second of `fn` over `items`, best of `repeat` passes."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - started)
    return len(items) / best


def decode_rates(folder: Path, count: int, cache_dir: Path) -> list[tuple[str, float]]:
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    from effnet.nas.data.folder import index_folder
    from effnet.nas.data.loader import TransformedImages
    from effnet.nas.data.sources import proxy_data
    from effnet.nas.data.transforms import eval_transform, train_transform

    images, _ = index_folder(folder)
    items = [(0, 0, i) for i in range(min(count, len(images)))]
    files = [images.file(i) for _, _, i in items]

    def plain(path: Path, size: int) -> torch.Tensor:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))
            return TF.pil_to_tensor(image.convert("RGB").resize((size, size), Image.BILINEAR))

    def old(path: Path, size: int) -> torch.Tensor:  # the former loader's per-image work
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
        return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)

    rows = []
    for label, size, augment in (
        ("training view 224 px, paper", 224, "paper"),
        ("training view 224 px, light", 224, "light"),
        ("evaluation view 224 px", 224, "none"),
        ("proxy epoch 128 px, light, streamed from files", 128, "light"),
    ):
        dataset = TransformedImages(images, train_transform(size, augment, "files"))
        rows.append((f"effnet: {label}", rate(dataset.__getitem__, items)))
    data = proxy_data(str(folder), 128, seed=0, val_images=len(images) // 10, cache_dir=cache_dir, loader_workers=2)
    cached = TransformedImages(data.train, train_transform(128, "light", "prepared"))
    rows.append(
        (
            "effnet: proxy epoch 128 px, light, from the cache",
            rate(cached.__getitem__, [(0, 0, i) for i in range(min(count, len(data.train)))]),
        )
    )
    rows.append(
        (
            "effnet: proxy evaluation 128 px, from the cache",
            rate(
                TransformedImages(data.val, eval_transform(128, "prepared")).__getitem__,
                [(0, 0, i) for i in range(len(data.val))],
            ),
        )
    )
    rows.append(("plain PIL loop (draft, resize 224, tensor)", rate(lambda p: plain(p, 224), files)))
    rows.append(("plain PIL loop (draft, resize 128, tensor)", rate(lambda p: plain(p, 128), files)))
    rows.append(("former in-RAM loader, decode 128 px to float32", rate(lambda p: old(p, 128), files)))
    return rows


def loader_against_model(folder: Path, steps: int) -> list[tuple[str, float]]:
    from effnet.nas.data.folder import index_folder
    from effnet.nas.data.loader import EpochSampler, TransformedImages, make_loader
    from effnet.nas.data.transforms import train_transform
    from effnet.nas.net.model import build_model
    from effnet.nas.training.runtime import place_model
    from effnet.scaling.presets import reference_b0

    images, _ = index_folder(folder)
    rows = []
    for workers in (1, 2):
        dataset = TransformedImages(images, train_transform(224, "paper", "files"))
        loader = make_loader(dataset, EpochSampler(len(images), shuffle=True), 32, workers, pin=False, drop_last=True)
        iterator = iter(loader)
        next(iterator)  # workers started
        started = time.perf_counter()
        for _ in range(steps):
            next(iterator)
        rows.append(
            (
                f"DataLoader, {workers} worker(s), 224 px paper augmentation, batch 32",
                steps * 32 / (time.perf_counter() - started),
            )
        )
        del iterator, loader
    model = place_model(build_model(reference_b0()), torch.device("cpu"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(32, 3, 224, 224).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (32,))
    times = []
    for step in range(steps + 1):
        started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:
            times.append(time.perf_counter() - started)
    rows.append(("EfficientNet-B0 training steps, 224 px, batch 32", 32 / statistics.median(times)))
    return rows


TRAIN = """
import sys
from effnet.nas.net.spec_file import load_spec
from effnet.nas.training.job import TrainConfig
from effnet.nas.training.trainer import train_network
train_network(TrainConfig(spec=load_spec(sys.argv[1]), data=sys.argv[2], resolution=96, epochs=1, batch_size=32,
                          run_dir=sys.argv[3], loader_workers=0, precise_bn=2))
print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])  # peak RSS, KB
"""


def memory_against_size(folder: Path, sizes: tuple[int, ...], work: Path) -> list[tuple[str, float]]:
    rows = []
    for size in sizes:
        subset = work / f"subset{size}"
        # the first `size` images by number: make_folder deals them to the classes in turn
        for path in sorted(folder.rglob("*.jpg"), key=lambda path: int(path.stem))[:size]:
            target = subset / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target) if not target.exists() else None
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                TRAIN,
                str(HERE.parent / "configs" / "efficientnet-b0.yaml"),
                str(subset),
                str(work / f"run{size}"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(
            (f"effnet train, one epoch at 96 px, {size:,} JPEGs: peak RSS MB", int(out.stdout.split()[-1]) / 1024)
        )
    return rows


READER = """
import sys, numpy as np
from effnet.nas.data.images import ArrayImages
images = ArrayImages(path=sys.argv[1])
total = int(sum(int(images.get()[i, 0, 0, 0]) + int(images.get()[i].sum() > 0) for i in range(len(images.get()))))
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(status["RssAnon"].split()[0]), int(status["RssFile"].split()[0]))
sys.stdin.read()
"""


def cache_sharing(folder: Path, cache_dir: Path) -> list[tuple[str, float]]:
    from effnet.nas.data.sources import proxy_data

    started = time.perf_counter()
    data = proxy_data(str(folder), 128, seed=1, val_images=100, cache_dir=cache_dir / "fresh", loader_workers=2)
    built = time.perf_counter() - started
    path = data.train.images.path
    rows = [
        (f"build the 128 px cache of {len(data.train) + len(data.val):,} images (2 loader workers), s", built),
        ("cache file MB", path.stat().st_size / 2**20),
    ]
    for workers in (1, 2, 4):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", READER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            for _ in range(workers)
        ]
        readings = [tuple(int(v) for v in p.stdout.readline().split()) for p in procs]
        for p in procs:
            p.communicate("")
        rows.append(
            (
                f"{workers} reader(s) of the whole cache at once: private MB per reader (max)",
                max(r[0] for r in readings) / 1024,
            )
        )
        rows.append(
            (
                f"{workers} reader(s): mapped file MB per reader (max; shared page cache)",
                max(r[1] for r in readings) / 1024,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--decode", type=int, default=300, help="images timed per decode row")
    parser.add_argument("--steps", type=int, default=8, help="batches timed for the loader and the model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    from effnet.nas.training.allocator import configure_allocator

    configure_allocator()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        folder = make_folder(work / "jpegs", args.images)
        print(
            f"# {args.images:,} JPEGs of 320 x 240 written in {time.perf_counter() - started:.0f} s; "
            f"{len(cpu_ids())} CPUs, torch {torch.__version__}, {args.threads} threads, load "
            f"{os.getloadavg()[0]:.2f}",
            flush=True,
        )
        sections = [
            ("decode + transform, one process (images/s)", decode_rates(folder, args.decode, work / "cache")),
            ("loader against the model (images/s)", loader_against_model(folder, args.steps)),
            ("memory against dataset size", memory_against_size(folder, (400, args.images), work)),
            ("caches", cache_sharing(folder, work / "cache")),
        ]
    for title, rows in sections:
        if args.markdown:
            print(f"\n| {title} | value |\n|---|---:|")
            for name, value in rows:
                print(f"| {name} | {value:,.1f} |")
        else:
            print(f"\n{title}")
            for name, value in rows:
                print(f"  {name:<80} {value:>10,.1f}")
    print(
        f"\n# peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
        f"load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
