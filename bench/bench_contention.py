"""Proxy candidates' training under contention: the default CPU threads against --threads 1 and 2, loaded and quiet.

    python bench/bench_contention.py [--quick] [--reps N] [--no-isolate] [--markdown]

`--quick` leaves `before` out.

Trains the default search's candidate at the centre of its space (the reference B0, 399M FLOPs) with the
default proxy settings (digits, 32 px, batch 64; 3 epochs, or with --quick one epoch of 256 images) in a fresh
process per measurement, as `effnet search` would: OpenMP's spin bounded as the command line sets it, and
the threads

- `default`: chosen the way a run chooses them (`effnet.nas.cpus`: the cores free of other work, sampled),
- `threads 1` and `threads 2`: forced, as `--threads 1` and `--threads 2`,
- `before`: 2 threads with OpenMP's own spin, what the default was before (stopped at --cap seconds),

once with two busy processes per core running (started here, stopped at the end) and once without, the
settings and conditions interleaved. Prints one table per condition: seconds per candidate (median of the
repetitions) and each setting against `threads 1`.

On a machine that other jobs share, "quiet" is not quiet: the bench then runs in a session of its own with
the kernel's autogroup priority raised (`/proc/self/autogroup`, root on Linux; `--no-isolate` to skip), so its
load and its trainings compete with each other as on an otherwise idle machine while the other jobs get a few
per cent. The thread choice still sees those jobs in its sample of /proc/stat: on a shared machine `default`
may pick 1 thread in both conditions. `uptime` is printed before and after.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = ("default", "threads 1", "threads 2", "before")
CONDITIONS = ("loaded", "quiet")
SESSION_ENV = "EFFNET_BENCH_CONTENTION_SESSION"


def measure(setting: str, epochs: int, train_images: int | None) -> None:
    """In a fresh process: train the candidate once under `setting`; print one JSON line."""
    from effnet.nas.cpus import choose_threads, configure_openmp, cpu_state

    if setting != "before":
        configure_openmp()  # as the command line's entry point does, before torch loads
    import torch

    from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
    from effnet.nas.proxies.data import load_proxy_data
    from effnet.nas.proxies.factory import make_proxy
    from effnet.nas.training.allocator import configure_allocator
    from effnet.scaling.presets import reference_b0

    configure_allocator()
    reason = ""
    if setting == "default":
        choice = choose_threads(cpu_state())
        threads, reason = choice.threads, choice.reason
    else:
        threads = 1 if setting == "threads 1" else 2
    config = ProxyConfig(epochs=epochs, train_images=train_images)
    runtime = ProxyRuntime(threads=threads)
    proxy = make_proxy(config, load_proxy_data(config, runtime), runtime)
    started = time.perf_counter()
    proxy.score(reference_b0())
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - started,
                "threads": threads,
                "reason": reason,
                "omp": os.environ.get("GOMP_SPINCOUNT", "libgomp's own"),
                "torch": torch.__version__,
            }
        )
    )


def _busy() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: never outlive the bench
    while True:
        pass


def start_load(count: int) -> list[multiprocessing.Process]:
    processes = [multiprocessing.get_context("spawn").Process(target=_busy, daemon=True) for _ in range(count)]
    for p in processes:
        p.start()
    time.sleep(0.5)  # let them reach their loops
    return processes


def stop_load(processes: list[multiprocessing.Process]) -> None:
    for p in processes:
        p.terminate()
    for p in processes:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join()


def run_one(setting: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--measure", setting, "--epochs", str(args.epochs)]
    if args.train_images:
        command += ["--train-images", str(args.train_images)]
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    started = time.perf_counter()
    limit = args.cap if setting == "before" else None  # the old default can collapse: --cap, start-up included
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "capped": time.perf_counter() - started}
    if done.returncode != 0:
        raise SystemExit(f"{setting}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return f"load average {os.getloadavg()}"


def isolate() -> str:
    """Raise this session's autogroup priority (see the module notes); returns what is in effect."""
    try:
        Path("/proc/self/autogroup").write_text("-20")
    except OSError as err:
        return f"not isolated ({err.strerror or err})"
    return "isolated (own session, autogroup nice -20)"


def table(rows: list[list[str]], header: list[str], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows])


def bench(args: argparse.Namespace, isolation: str) -> None:
    from effnet.nas.cpus import usable_cores

    cores = usable_cores()
    before = uptime()
    print(f"start: {before}\n{isolation}; {cores} cores, load: {2 * cores} busy processes", flush=True)
    settings = SETTINGS[:3] if args.quick else SETTINGS
    results: dict[tuple[str, str], list[dict]] = {}
    for rep in range(args.reps):
        conditions = CONDITIONS if rep % 2 == 0 else CONDITIONS[::-1]
        for condition in conditions:
            load = start_load(2 * cores) if condition == "loaded" else []
            try:
                shift = rep % len(settings)
                for setting in settings[shift:] + settings[:shift]:
                    result = run_one(setting, args)
                    results.setdefault((condition, setting), []).append(result)
                    seconds = f"{result['seconds']:.2f} s" if result["seconds"] is not None else f">{args.cap:.0f} s"
                    print(f"rep {rep + 1} {condition:6} {setting:9}: {seconds} {result.get('reason', '')}", flush=True)
            finally:
                stop_load(load)
    after = uptime()
    verdicts = []
    for condition in CONDITIONS:
        medians = {}
        for setting in settings:
            times = [r["seconds"] for r in results[(condition, setting)]]
            medians[setting] = None if None in times else statistics.median(times)
        base = medians["threads 1"]
        rows = []
        for setting in settings:
            runs = results[(condition, setting)]
            threads = sorted({str(r["threads"]) for r in runs if "threads" in r}) or ["2"]
            m = medians[setting]
            rows.append(
                [
                    setting,
                    "/".join(threads),
                    f"{m:.2f}" if m is not None else f">{args.cap:.0f}",
                    f"{m / base:.2f}" if m is not None and base else f">{args.cap / base:.1f}" if base else "-",
                    ", ".join(f"{r['seconds']:.2f}" if r["seconds"] is not None else "capped" for r in runs),
                ]
            )
        print(f"\n{condition}: seconds per candidate (median of {args.reps})")
        print(table(rows, ["setting", "threads", "s", "× threads 1", "runs"], args.markdown))
        reasons = sorted({r["reason"] for r in results[(condition, "default")]})
        print(f"default's choice: {'; '.join(reasons)}")
        fastest = min(v for v in medians.values() if v is not None)
        if condition == "loaded" and medians["default"] is not None and base:
            verdicts.append(f"loaded: default {medians['default'] / base:.2f}× threads 1 (target ≤ 1.5)")
        if condition == "quiet" and medians["default"] is not None:
            verdicts.append(f"quiet: default {medians['default'] / fastest:.2f}× the fastest setting")
    print(
        f"\nend: {after}\n{platform.processor() or platform.machine()}, "
        f"{results[('quiet', 'threads 1')][0].get('torch', '?')}, candidate: reference B0 (399M FLOPs), "
        f"{args.epochs} epoch(s), {args.train_images or 'all'} training images; " + "; ".join(verdicts)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="one epoch of 256 images, 2 repetitions, no `before` (about 3 min)"
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3, --quick 2)")
    parser.add_argument("--cap", type=float, default=None, help="seconds before `before` is stopped")
    parser.add_argument("--no-isolate", action="store_true", help="run in this session at its priority")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--measure", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--train-images", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.epochs, args.train_images)
        return
    args.reps = args.reps or (2 if args.quick else 3)
    args.epochs = 1 if args.quick else 3
    args.train_images = 256 if args.quick else None
    args.cap = args.cap or (10.0 if args.quick else 60.0)
    if args.no_isolate or not sys.platform.startswith("linux"):
        bench(args, "not isolated (--no-isolate)" if args.no_isolate else "not isolated (not Linux)")
    elif os.environ.get(SESSION_ENV):
        bench(args, isolate())
    else:  # a session of its own, so that raising its priority touches nothing else
        command = [sys.executable, __file__, *sys.argv[1:]]
        raise SystemExit(
            subprocess.run(
                command, env={**os.environ, SESSION_ENV: "1"}, start_new_session=True, check=False
            ).returncode
        )


if __name__ == "__main__":
    main()
