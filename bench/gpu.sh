#!/usr/bin/env bash
# One CUDA GPU, at most 9 minutes: B0 training throughput at 224 px, batch 256 (fp32 against bf16 autocast
# + channels_last, and that under torch.compile); B0 inference at 224 px, batch 256 (timm's B0 in both layouts,
# ours eager and with BatchNorm folded, fp32 and bf16); images from JPEG files to training steps (DataLoader
# workers against nvjpeg on the GPU, the proxy streamed against its decoded cache); a short search on the GPU.
#
# Usage: bench/gpu.sh [OUT_DIR]      (default: $OUT, else runs/gpu-bench)
# Needs: the project installed beside a CUDA build of torch (`pip install -e '.[test]'`: the inference benchmark
# compares with timm); PYTHON picks the interpreter.
# Writes: OUT_DIR/gpu.txt, throughput.{txt,json}, inference.{txt,json}, data.{txt,json}, search.json and the
# search's run directory gpu-search/.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-runs/gpu-bench}}"
python="${PYTHON:-python}"
mkdir -p "$out"

if ! "$python" -c "import effnet.nas.net.model" 2>/dev/null; then
    echo "error: the project is not importable by $python; install it first: pip install -e ." >&2
    exit 2
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
  "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
    torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device visible')"
} | tee "$out/gpu.txt"

started=$(date +%s)
timeout 180 "$python" bench/bench_gpu.py --json "$out/throughput.json" | tee "$out/throughput.txt"
echo "throughput: exit ${PIPESTATUS[0]} after $(( $(date +%s) - started )) s" >&2

started=$(date +%s)
timeout 120 "$python" bench/bench_inference.py --device cuda --batch 256 --repeats 20 --warmup 5 \
    --json "$out/inference.json" | tee "$out/inference.txt"
echo "inference: exit ${PIPESTATUS[0]} after $(( $(date +%s) - started )) s" >&2

started=$(date +%s)
timeout 150 "$python" bench/bench_gpu_data.py --json "$out/data.json" | tee "$out/data.txt"
echo "data: exit ${PIPESTATUS[0]} after $(( $(date +%s) - started )) s" >&2

started=$(date +%s)
timeout 100 "$python" -m effnet.cli search --target-flops 400M --device cuda --trials 20 --timeout 90 \
    --run-dir "$out/gpu-search" --json > "$out/search.json"
echo "search: exit $? after $(( $(date +%s) - started )) s (summary in $out/search.json)" >&2
