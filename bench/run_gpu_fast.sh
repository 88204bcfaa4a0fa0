#!/usr/bin/env bash
# The GPU measurements of the fast inference path (issue #8), in two calls of under 10 minutes on one
# GPU (device time is scarce). Run from the repository root; results go to $OUT (default ./gpu_out).
#   bash bench/run_gpu_fast.sh A   # mamba-ssm build (sm_90) while the GPU tests run; scan sweep + scan table
#   bash bench/run_gpu_fast.sh B   # end-to-end: official settings vs default vs fastest (compile + graphs)
#   bash bench/run_gpu_fast.sh C   # after tuning the scan: GPU tests, scan table, end-to-end at 4 x 512
# The patched mamba-ssm sdist (sm_90 only) comes from .devtmp/mamba; a warm machine keeps its build.
set -uo pipefail
STAGE=${1:?stage A or B}
OUT=${OUT:-$PWD/gpu_out}; LOG="$OUT/logs"; mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/.devtmp/mamba:$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
stamp() { echo "[$(date +%T)] $*" | tee -a "$LOG/timeline.txt"; }
nvidia-smi -L | tee "$LOG/gpus.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$LOG/gpus.txt"
build_mamba() {
  if ls .devtmp/mamba/selective_scan_cuda*.so >/dev/null 2>&1; then echo "mamba build kept" > "$LOG/mamba_build.log"; return; fi
  ( cd .devtmp/mamba && TORCH_CUDA_ARCH_LIST=9.0 MAMBA_FORCE_BUILD=TRUE MAX_JOBS=14 \
      timeout 300 python3 setup.py build_ext --inplace > "$LOG/mamba_build.log" 2>&1; echo "rc=$?" >> "$LOG/mamba_build.log" )
}

if [ "$STAGE" = A ]; then
  stamp "mamba-ssm build in the background; GPU tests"
  build_mamba & BUILD=$!
  timeout 240 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_scan_triton.py tests/test_fast_paths.py \
      tests/test_engine_acceleration.py tests/test_engine_api.py > "$LOG/pytest_gpu.log" 2>&1
  grep -E "passed|failed|error" "$LOG/pytest_gpu.log" | tail -3
  stamp "scan accuracy checks"
  timeout 60 python3 bench/bench_scan.py --check > "$LOG/scan_check.log" 2>&1; tail -3 "$LOG/scan_check.log"
  stamp "wait for mamba"; wait $BUILD; tail -1 "$LOG/mamba_build.log"
  stamp "scan sweep"
  timeout 200 python3 bench/bench_scan.py --sweep > "$LOG/scan_sweep.log" 2>&1; tail -40 "$LOG/scan_sweep.log"
  stamp "scan table (defaults)"
  timeout 100 python3 bench/bench_scan.py > "$LOG/scan_bench.log" 2>&1; tail -16 "$LOG/scan_bench.log"
fi

if [ "$STAGE" = C ]; then  # after tuning: GPU tests, the scan table, end-to-end at 4 x 512
  stamp "mamba-ssm build in the background; GPU tests"
  build_mamba & BUILD=$!
  timeout 260 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_scan_triton.py tests/test_fast_paths.py \
      tests/test_engine_acceleration.py > "$LOG/pytest_gpu.log" 2>&1
  grep -E "passed|failed|error" "$LOG/pytest_gpu.log" | tail -3
  stamp "wait for mamba"; wait $BUILD; tail -1 "$LOG/mamba_build.log"
  stamp "scan table (defaults)"
  timeout 90 python3 bench/bench_scan.py --quick --backends triton mamba > "$LOG/scan_bench.log" 2>&1; tail -16 "$LOG/scan_bench.log"
  stamp "end-to-end at 4 x 512"
  timeout 200 python3 bench/bench_e2e.py --sizes 512 --json "$LOG/e2e.json" > "$LOG/e2e.log" 2>&1
  grep -A12 "^| variant" "$LOG/e2e.log" | tail -9; grep -E "compile|failed" "$LOG/e2e.log" | head
fi

if [ "$STAGE" = B ]; then
  build_mamba
  stamp "end-to-end"
  timeout ${E2E_TIMEOUT:-480} python3 bench/bench_e2e.py --compile-budget ${COMPILE_BUDGET:-200} ${E2E_ARGS:-} \
      --json "$LOG/e2e.json" > "$LOG/e2e.log" 2>&1
  grep -A30 "^| variant" "$LOG/e2e.log"; grep -E "compile|failed|skipped" "$LOG/e2e.log" | head -20
fi
stamp "done"
tar czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
