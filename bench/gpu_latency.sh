#!/usr/bin/env bash
# One CUDA GPU, at most 8 minutes: the latency table on the GPU (parts and whole networks timed between CUDA
# events), its predictions against 30 random networks of 400M FLOPs measured end to end, and the reference B0's
# latency (`effnet describe --latency --device cuda`), folded, batch 1.
#
# Usage: bench/gpu_latency.sh [OUT_DIR]      (default: $OUT, else runs/gpu-latency)
# Needs: the project installed beside a CUDA build of torch; PYTHON picks the interpreter.
# Writes: OUT_DIR/gpu.txt, table.json, bench_latency.txt, b0.json; the table's cache in OUT_DIR/cache.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-runs/gpu-latency}}"
python="${PYTHON:-python}"
mkdir -p "$out"

if ! "$python" -c "import effnet.nas.latency.table" 2>/dev/null; then
    echo "error: the project is not importable by $python; install it first: pip install -e ." >&2
    exit 2
fi
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
    torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device visible')" | tee "$out/gpu.txt"

started=$(date +%s)
timeout 240 "$python" -m effnet.cli latency-table --device cuda --cache-dir "$out/cache" --json > "$out/table.json"
echo "latency-table: exit $? after $(( $(date +%s) - started )) s" >&2

started=$(date +%s)
timeout 180 "$python" bench/bench_latency.py --device cuda --cache-dir "$out/cache" --markdown \
    | tee "$out/bench_latency.txt"
echo "bench_latency: exit ${PIPESTATUS[0]} after $(( $(date +%s) - started )) s" >&2

started=$(date +%s)
timeout 60 "$python" -m effnet.cli describe --preset b0 --latency --device cuda \
    --cache-dir "$out/cache" --json > "$out/b0.json"
echo "describe: exit $? after $(( $(date +%s) - started )) s" >&2
