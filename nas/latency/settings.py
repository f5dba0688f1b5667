"""The measurement's defaults and bounds. Importing this module loads nothing else, so the command line can
name them in its help without loading torch."""

from __future__ import annotations

WARMUP = 10
"""Untimed runs first: the allocator's pools, the kernels' first-call setup, onnxruntime's arenas and the CPU
caches settle in the first few."""
REPEATS = 50
"""Timed runs, each one batch: a count, not a time budget, so that every measurement is of the same number of
runs (the median's precision does not depend on the network) and takes as long as the network does (B0 at
224 px, batch 1, folded, one thread on a 2-core VM: 60 runs of 20-25 ms, under 2 s; `effnet describe --latency`
about 4 s in all)."""
MAX_REPEATS = 10_000
MAX_BATCH = 1024
"""Latency is one request's time; past this a batch measures throughput, which a latency target is not."""
SCALING_WARMUP = 2
SCALING_REPEATS = 5
"""Runs of each network `effnet grid-scale --latency` and `effnet export-family --latency` time: few, as B7 at
600 px takes seconds a run on a CPU; five runs' median ranks members a doubling of FLOPs apart."""
NOISY_CV = 0.10
"""A coefficient of variation of the timed runs above this marks a noisy measurement. Runs on cores of their own
differ only by caches and clock frequency; a spread of a tenth means other work took the cores or the memory
bandwidth during the runs, which lifts the median too (B0, folded, batch 1, one thread, on the 2-core VM at a load
average near 3: spreads of 0.09 to 0.40)."""

TABLE_WARMUP = 2
"""Untimed runs of each part of a latency table before its timed rounds."""
TABLE_ROUNDS = 11
"""Timed runs of each part of a latency table (one per round; the median is kept). The default space's 2,604
parts take about 50 s at this count on a 2-core CPU, folded, batch 1, one thread."""
CHUNK_PARTS = 100
"""Parts built and timed together: the rounds interleave them; memory holds this many at once."""
CALIBRATION_NETWORKS = 12
"""Random networks of the space timed end to end to fit a new table's calibration factor."""
CALIBRATION_ROUNDS = 20
"""Timed runs of each calibration network, after `WARMUP` untimed ones, run after run as `measure_latency` times."""
CALIBRATION_SEED = 0
