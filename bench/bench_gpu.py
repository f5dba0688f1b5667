"""EfficientNet-B0 training throughput on one CUDA GPU: fp32 against bf16 autocast + channels_last.

Variants (same model, batch, synthetic data already on the GPU, SGD with momentum, cuDNN autotuning on):
fp32 in the default layout, fp32 channels_last, bf16 autocast + channels_last, and the last one
under torch.compile (its compile time reported apart). A figure is the median over `--rounds`
rounds of `--steps` steps, each round timed between two device synchronisations.
Called by bench/gpu.sh; `--help` works without a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time

VARIANTS = ("fp32", "fp32+channels_last", "bf16+channels_last", "bf16+channels_last+compile")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per variant first")
    parser.add_argument(
        "--variants",
        type=lambda s: s.split(","),
        default=list(VARIANTS),
        help=f"comma-separated, from {','.join(VARIANTS)}",
    )
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant: {', '.join(sorted(unknown))}")
    return args


def measure(variant: str, args: argparse.Namespace, device) -> dict:
    import torch
    from torch import nn

    from effnet.nas.net.model import build_model
    from effnet.nas.net.spec_file import load_spec
    from effnet.nas.resources import reference_b0_path

    channels_last = "channels_last" in variant
    layout = torch.channels_last if channels_last else torch.contiguous_format
    dtype = torch.bfloat16 if variant.startswith("bf16") else None
    torch.manual_seed(0)
    spec = load_spec(reference_b0_path()).replace(resolution=args.resolution)
    model = build_model(spec).to(device=device, memory_format=layout).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    forward = torch.compile(model) if variant.endswith("compile") else model
    images = torch.randn(args.batch, 3, args.resolution, args.resolution, device=device)
    images = images.contiguous(memory_format=layout)
    labels = torch.randint(0, spec.num_classes, (args.batch,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext():
            loss = nn.functional.cross_entropy(forward(images), labels)
        loss.backward()
        optimizer.step()

    torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    step()
    torch.cuda.synchronize(device)
    first_step_s = time.perf_counter() - start
    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize(device)
    rates = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        torch.cuda.synchronize(device)
        rates.append(args.batch * args.steps / (time.perf_counter() - start))
    return {
        "variant": variant,
        "images_per_s": statistics.median(rates),
        "rounds": rates,
        "first_step_s": first_step_s,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30,
    }


def cuda_device(name: str):
    """The CUDA device `name`, cuDNN's autotuner on; anything else ends the benchmark with one line."""
    import torch

    from effnet.nas.errors import InputError
    from effnet.nas.training.runtime import resolve_device

    try:
        device = resolve_device(name)
    except InputError as err:
        sys.exit(f"error: {err}")
    if device.type != "cuda":
        sys.exit(f"error: --device {name} is not a CUDA device; this benchmark measures a GPU")
    torch.backends.cudnn.benchmark = True
    return device


def main() -> None:
    args = parse_args()
    import torch

    from effnet.nas.net.flops import analytic_flops
    from effnet.nas.net.spec_file import load_spec
    from effnet.nas.resources import reference_b0_path

    device = cuda_device(args.device)
    macs = analytic_flops(load_spec(reference_b0_path()).replace(resolution=args.resolution))
    results = []
    for variant in args.variants:
        print(f"measuring {variant} ...", file=sys.stderr, flush=True)
        results.append(measure(variant, args, device))
        torch.cuda.empty_cache()
    baseline = results[0]["images_per_s"]
    name = torch.cuda.get_device_name(device)
    print(
        f"{name}, torch {torch.__version__}, B0 at {args.resolution} px, batch {args.batch}, "
        f"median of {args.rounds} rounds of {args.steps} steps (TF32 for convs: "
        f"{torch.backends.cudnn.allow_tf32}, for matmuls: {torch.backends.cuda.matmul.allow_tf32})"
    )
    print(f"| variant | images/s | vs {results[0]['variant']} | training TMAC/s | first step s | peak GiB |")
    print("|---|---|---|---|---|---|")
    for r in results:
        r["vs_first"] = r["images_per_s"] / baseline
        r["training_tmacs_per_s"] = 3 * macs * r["images_per_s"] / 1e12
        print(
            f"| {r['variant']} | {r['images_per_s']:.0f} | {r['vs_first']:.2f}x | "
            f"{r['training_tmacs_per_s']:.1f} | {r['first_step_s']:.1f} | {r['peak_memory_gib']:.1f} |"
        )
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(
                {
                    "device": name,
                    "torch": torch.__version__,
                    "batch": args.batch,
                    "resolution": args.resolution,
                    "forward_macs": macs,
                    "results": results,
                },
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
