"""EfficientNet-B0 inference in one process: timm's B0 at its best layout, ours eager, ours with BatchNorm folded
(`fold_batch_norm`), and our folded ONNX export in onnxruntime.

Same process, allocator (`configure_allocator`, effnet's), threads (torch's intra-op threads, and onnxruntime's
intra-op threads set to the same number), batch and images. timm is measured in both layouts (contiguous and
channels_last) and the faster is the baseline; ours run channels_last, as effnet runs them. The variants run
interleaved, the order rotated every repetition; a figure is images per second over the median timed batch,
with the best batch in brackets (on a shared machine the steadier estimate of the unloaded speed). `--clock cpu`
times each batch by the process's CPU time instead of the wall clock: with one thread (`--threads 1`) on a machine
that other work shares, it leaves out the time the process waited for a core.
On CUDA (`--device cuda`) the same torch variants run in float32 and under bf16 autocast, synchronised around
each batch, and onnxruntime is left out. With `--compile`, timm CL and ours folded CL run under torch.compile as
well, each compiled row against the compiled timm. Needs timm and effnet[onnx] (the test extra installs both):

    python bench/bench_inference.py [--batch 32] [--resolution 224] [--compile] [--markdown] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

GOAL = 1.25
"""Folded inference over timm's B0 at its best CPU layout, 224 px, batch 32."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=10, help="timed batches per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches per variant first")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all CPUs)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time batches by the wall clock or by this process's CPU time (for --threads 1 on a shared machine)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also timm CL and ours folded CL under torch.compile (inductor; about 30 s each to "
        "compile, before the timing)",
    )
    parser.add_argument("--markdown", action="store_true", help="print a markdown table (for bench/RESULTS.md)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the figures to this file")
    return parser.parse_args()


def variants(args: argparse.Namespace, device: Any, threads: int) -> dict[str, Callable[[], Any]]:
    """label -> one inference batch (returns when the batch is done)."""
    import timm
    import torch

    from effnet.nas.net.fold import fold_batch_norm
    from effnet.nas.net.model import build_model
    from effnet.scaling.presets import reference_b0

    cuda = device.type == "cuda"
    spec = reference_b0().replace(resolution=args.resolution)
    torch.manual_seed(0)
    ours = build_model(spec).eval()
    folded = fold_batch_norm(ours)
    theirs = timm.create_model("efficientnet_b0").eval()
    images = torch.randn(args.batch, 3, args.resolution, args.resolution)
    contiguous, channels_last = torch.contiguous_format, torch.channels_last
    models = {
        "timm": (theirs, contiguous),
        "timm CL": (copy.deepcopy(theirs), channels_last),
        "ours CL": (ours, channels_last),
        "ours folded CL": (folded, channels_last),
    }
    if args.compile:
        models["timm CL compiled"] = (copy.deepcopy(theirs), channels_last)
        models["ours folded CL compiled"] = (copy.deepcopy(folded), channels_last)
    steps: dict[str, Callable[[], Any]] = {}
    for label, (model, layout) in models.items():
        model = model.to(device=device, memory_format=layout)
        if label.endswith("compiled"):
            model = torch.compile(model)
        x = images.to(device).contiguous(memory_format=layout)
        for precision in ("fp32", "bf16") if cuda else ("fp32",):
            steps[f"{label} {precision}" if cuda else label] = _torch_step(model, x, device, precision)
    if not cuda:
        steps["onnxruntime (folded)"] = _onnx_step(ours, images, threads)
    return steps


def _torch_step(model: Any, x: Any, device: Any, precision: str) -> Callable[[], Any]:
    import torch

    def step() -> Any:
        autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            out = model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out

    return step


def _onnx_step(model: Any, images: Any, threads: int) -> Callable[[], Any]:
    """The folded network exported as `effnet export-model` does, run by onnxruntime on the same threads."""
    import onnxruntime

    from effnet.nas.net.fold import fold_batch_norm
    from effnet.nas.net.onnx_graph import onnx_graph

    data = onnx_graph(fold_batch_norm(model), tuple(images.shape[1:])).SerializeToString()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    feed = {"images": images.numpy()}
    return lambda: session.run(None, feed)


def measure(steps: dict[str, Callable[[], Any]], args: argparse.Namespace) -> dict[str, list[float]]:
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times: dict[str, list[float]] = {label: [] for label in steps}
    labels = list(steps)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for rep in range(args.repeats):
        for label in labels[rep % len(labels) :] + labels[: rep % len(labels)]:
            start = clock()
            steps[label]()
            times[label].append(clock() - start)
        print(f"repetition {rep + 1}/{args.repeats}", file=sys.stderr, flush=True)
    return times


def table(times: dict[str, list[float]], batch: int) -> tuple[list[str], list[list[str]], dict[str, Any]]:
    rate = {label: batch / statistics.median(t) for label, t in times.items()}
    best = {label: batch / min(t) for label, t in times.items()}
    timm_labels = [label for label in rate if label.startswith("timm")]
    rows, figures = [], {}
    for label in rate:
        precision = label.rpartition(" ")[2] if label.endswith(("fp32", "bf16")) else ""
        compiled = "compiled" in label
        baseline = max(
            (t for t in timm_labels if t.endswith(precision) and ("compiled" in t) == compiled), key=rate.get
        )
        ratio, best_ratio = rate[label] / rate[baseline], best[label] / best[baseline]
        figures[label] = {
            "images_per_s": rate[label],
            "best_images_per_s": best[label],
            "vs_timm": ratio,
            "timm_baseline": baseline,
            "batch_s": times[label],
        }
        rows.append([label, f"{rate[label]:.1f} ({best[label]:.1f})", f"{ratio:.2f}x ({best_ratio:.2f}x)", baseline])
    return ["variant", "img/s median (best)", "vs timm's best layout (best)", "timm baseline"], rows, figures


def main() -> None:
    args = parse_args()
    from effnet.nas.training.allocator import configure_allocator
    from effnet.nas.training.runtime import configure_threads

    allocator = configure_allocator()
    threads = configure_threads(args.threads)
    load_before = os.getloadavg()[0]
    import torch

    from effnet.nas.errors import InputError
    from effnet.nas.training.runtime import resolve_device

    try:
        device = resolve_device(args.device)
    except InputError as err:
        sys.exit(f"error: {err}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    times = measure(variants(args, device, threads), args)
    header, rows, figures = table(times, args.batch)
    load = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {threads} threads"
    print(
        f"B0 inference at {args.resolution} px, batch {args.batch}, {name}; torch {torch.__version__}; "
        f"allocator: {allocator}; median of {args.repeats} batches ({args.clock} clock); load average {load}"
    )
    folded = next(v for k, v in figures.items() if k.startswith("ours folded CL") and "compiled" not in k)
    verdict = "met" if folded["vs_timm"] >= GOAL else "NOT met"
    if args.markdown:
        print(f"\n| {' | '.join(header)} |\n|{'---|' * len(header)}")
        for row in rows:
            print(f"| {' | '.join(row)} |")
    else:
        for row in [header, *rows]:
            print("  ".join(f"{cell:<28}" for cell in row))
    print(f"\nfolded over timm: {folded['vs_timm']:.2f}x; goal >= {GOAL}x {verdict}")
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(
                {
                    "device": name,
                    "batch": args.batch,
                    "resolution": args.resolution,
                    "allocator": allocator,
                    "threads": threads,
                    "clock": args.clock,
                    "torch": torch.__version__,
                    "load_average": load,
                    "variants": figures,
                },
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
