#!/usr/bin/env bash
# The GPU measurements of docs/benchmarks.md, in the two batches they were run in (device time is
# scarce, so work that needs different GPUs overlaps). Run from the repository root on a machine
# with 2 CUDA GPUs, torch, triton, tifffile, scikit-image; OUT is where results go.
#   bash bench/run_gpu_batch.sh 1   # GPU tests, mamba-ssm build, scan/e2e benchmarks; demo training on GPU 1
#   bash bench/run_gpu_batch.sh 2   # demo training on GPU 1; end-to-end variants incl. torch.compile; dask 1 vs 2 GPUs
#   bash bench/run_gpu_batch.sh 3   # DDP training 1 vs 2 GPUs; engine throughput
# Extra Python wheels (dask, distributed ...) are taken from .whl/ when present; the patched
# mamba-ssm sdist (sm_90 only) from .devtmp/mamba (batch 1 builds it, batch 2 reuses the build).
set -uo pipefail
STAGE=${1:?stage 1 or 2}
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT/logs"
LOG="$OUT/logs"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="/tmp/site:$PWD/.devtmp/mamba:$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi -L | tee "$LOG/gpus.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$LOG/gpus.txt"
stamp() { echo "[$(date +%T)] $*" | tee -a "$LOG/timeline.txt"; }

if [ "$STAGE" = 1 ]; then
  stamp "start mamba-ssm build (sm_90) and demo training on GPU 1"
  ( cd .devtmp/mamba && TORCH_CUDA_ARCH_LIST=9.0 MAMBA_FORCE_BUILD=TRUE MAX_JOBS=12 \
      timeout 420 python3 setup.py build_ext --inplace > "$LOG/mamba_build.log" 2>&1; echo "rc=$?" >> "$LOG/mamba_build.log" ) &
  BUILD=$!
  ( CUDA_VISIBLE_DEVICES=1 timeout 460 python3 -m training.train --config demo_synthetic \
      --set total_iter="${DEMO_ITERS:-8000}" --set "train.scheduler.periods=[${DEMO_ITERS:-8000}]" \
      --set max_minutes="${DEMO_MINUTES:-6.3}" > "$LOG/demo_train.log" 2>&1; echo "rc=$?" >> "$LOG/demo_train.log" ) &
  TRAIN=$!
  stamp "GPU tests on GPU 0"
  CUDA_VISIBLE_DEVICES=0 timeout 200 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_scan_triton.py \
      tests/test_scan_torch.py tests/test_engine_api.py tests/test_training_run.py > "$LOG/pytest_gpu.log" 2>&1
  tail -3 "$LOG/pytest_gpu.log"
  stamp "triton accuracy checks"
  CUDA_VISIBLE_DEVICES=0 timeout 120 python3 bench/bench_scan.py --check > "$LOG/scan_check.log" 2>&1; tail -5 "$LOG/scan_check.log"
  stamp "wait for mamba build"; wait $BUILD; tail -2 "$LOG/mamba_build.log"
  stamp "end-to-end"
  CUDA_VISIBLE_DEVICES=0 timeout 200 python3 bench/bench_e2e.py --profile --json "$LOG/e2e.json" > "$LOG/e2e.log" 2>&1; grep -A30 "^| variant" "$LOG/e2e.log"
  stamp "scan benchmark"
  CUDA_VISIBLE_DEVICES=0 timeout 150 python3 bench/bench_scan.py --out "$LOG/scan_results" > "$LOG/scan_bench.log" 2>&1; tail -25 "$LOG/scan_bench.log"
  stamp "parity"
  CUDA_VISIBLE_DEVICES=0 timeout 90 python3 bench/gpu_parity.py > "$LOG/parity.log" 2>&1; tail -12 "$LOG/parity.log"
  stamp "wait for demo training"; wait $TRAIN; tail -4 "$LOG/demo_train.log"
  ckpt=experiments/demo_synthetic/models/net_g_latest.pth
  if [ -f "$ckpt" ]; then
    timeout 60 python3 -m training.export --checkpoint "$ckpt" --weights params_ema --fp16 \
        --out "$OUT/demo_dgno.safetensors" > "$LOG/demo_export.log" 2>&1; tail -3 "$LOG/demo_export.log"
    cp experiments/demo_synthetic/*.csv "$LOG/" 2>/dev/null
  fi
  so=$(ls .devtmp/mamba/selective_scan_cuda*.so 2>/dev/null | head -1)
  if [ -n "$so" ]; then gzip -c "$so" > "$OUT/mamba_so.gz"; ls -la "$OUT/mamba_so.gz"; fi
fi

build_mamba() {
  ( cd .devtmp/mamba && TORCH_CUDA_ARCH_LIST=9.0 MAMBA_FORCE_BUILD=TRUE MAX_JOBS=12 \
      timeout 420 python3 setup.py build_ext --inplace > "$LOG/mamba_build.log" 2>&1; echo "rc=$?" >> "$LOG/mamba_build.log" )
}
train_demo() {
  CUDA_VISIBLE_DEVICES=1 timeout 460 python3 -m training.train --config demo_synthetic \
      --set total_iter="${DEMO_ITERS:-5000}" --set "train.scheduler.periods=[${DEMO_ITERS:-5000}]" \
      --set max_minutes="${DEMO_MINUTES:-6.2}" > "$LOG/demo_train.log" 2>&1; echo "rc=$?" >> "$LOG/demo_train.log"
  ckpt=experiments/demo_synthetic/models/net_g_latest.pth
  if [ -f "$ckpt" ]; then
    CUDA_VISIBLE_DEVICES=1 timeout 90 python3 -m training.export --checkpoint "$ckpt" --weights params_ema --fp16 \
        --out "$OUT/demo_dgno.safetensors" > "$LOG/demo_export.log" 2>&1
    cp experiments/demo_synthetic/*.csv experiments/demo_synthetic/train.log "$LOG/" 2>/dev/null
  fi
}

if [ "$STAGE" = 2 ]; then
  stamp "start mamba-ssm build and demo training on GPU 1"
  build_mamba & BUILD=$!
  train_demo & TRAIN=$!
  stamp "wait for mamba build"; wait $BUILD; tail -1 "$LOG/mamba_build.log"
  stamp "end-to-end with variants and torch.compile"
  CUDA_VISIBLE_DEVICES=0 timeout 330 python3 bench/bench_e2e.py --compile --json "$LOG/e2e.json" > "$LOG/e2e.log" 2>&1; grep -A30 "^| variant" "$LOG/e2e.log"; grep "deviation\|compile" "$LOG/e2e.log"
  stamp "wait for demo training"; wait $TRAIN; tail -3 "$LOG/demo_train.log"; cat "$LOG/demo_export.log" 2>/dev/null | tail -3
  stamp "dask scale-out, 1 then 2 GPUs"
  timeout 120 python3 bench/bench_dask_gpus.py --planes 32 > "$LOG/dask.log" 2>&1; tail -8 "$LOG/dask.log"
fi

if [ "$STAGE" = 3 ]; then
  build_mamba & BUILD=$!
  stamp "DDP training throughput, 1 then 2 GPUs"
  timeout 110 torchrun --standalone --nproc_per_node=1 bench/bench_train.py --iters 40 --warmup 8 --json "$LOG/train.jsonl" > "$LOG/train_1gpu.log" 2>&1; tail -3 "$LOG/train_1gpu.log"
  base=$(python3 -c "import json;print(json.loads(open('$LOG/train.jsonl').readlines()[-1])['samples_per_s'])" 2>/dev/null)
  timeout 110 torchrun --standalone --nproc_per_node=2 bench/bench_train.py --iters 40 --warmup 8 ${base:+--baseline $base} --json "$LOG/train.jsonl" > "$LOG/train_2gpu.log" 2>&1; tail -3 "$LOG/train_2gpu.log"
  stamp "dask scale-out, 1 then 2 GPUs"
  timeout 100 python3 bench/bench_dask_gpus.py --planes 32 > "$LOG/dask.log" 2>&1; tail -7 "$LOG/dask.log"
  stamp "engine throughput"
  CUDA_VISIBLE_DEVICES=0 timeout 120 python3 bench/bench_engine.py --device cuda > "$LOG/engine.log" 2>&1; tail -22 "$LOG/engine.log"
  wait $BUILD
  stamp "end-to-end at 4 x 512 with torch.compile"
  CUDA_VISIBLE_DEVICES=0 timeout 150 python3 bench/bench_e2e.py --sizes 512 --compile --json "$LOG/e2e.json" > "$LOG/e2e.log" 2>&1; grep -A12 "^| variant" "$LOG/e2e.log"; grep "deviation\|compile" "$LOG/e2e.log"
fi
stamp "done"
tar czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
