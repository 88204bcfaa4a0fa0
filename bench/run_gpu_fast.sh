#!/usr/bin/env bash
# The GPU measurements of the fast inference path (issue #8), in two calls of under 10 minutes on one
# GPU (device time is scarce). Run from the repository root; results go to $OUT (default ./gpu_out).
#   bash bench/run_gpu_fast.sh A   # mamba-ssm build (sm_90) while the GPU tests run; scan sweep + scan table
#   bash bench/run_gpu_fast.sh B   # end-to-end: official settings vs default vs fastest (compile + graphs)
#   bash bench/run_gpu_fast.sh C   # after tuning the scan: GPU tests, scan table, end-to-end at 4 x 512
#   bash bench/run_gpu_fast.sh D   # profile: knob sets (fused forms, 1x1 as mm, TF32, channels-last), stages, kernels
#   bash bench/run_gpu_fast.sh E   # after the fused kernels: GPU tests, depthwise-gate table, end-to-end at 4 x 512
#   bash bench/run_gpu_fast.sh F   # rows kernel + aligned GDFN: GPU tests of the fused forms, kernels, knob sets, profile
#   bash bench/run_gpu_fast.sh G   # DG operator kernels: GPU tests, DG table, knob sets with and without them
#   bash bench/run_gpu_fast.sh H   # final: GPU tests of the fused forms, end-to-end at 4 x 512 with the official baseline
#   bash bench/run_gpu_fast.sh J   # fifth pass: GPU tests of the fused forms and fast paths, knob sets (SETS), end-to-end at 256
#   bash bench/run_gpu_fast.sh K   # fifth pass: end-to-end at 512 and 256 with the official baseline (one process per size)
#   bash bench/run_gpu_fast.sh L   # fifth pass: end-to-end at 1024 with the official baseline
#   bash bench/run_gpu_fast.sh I   # chunked scan tilings on channel- and token-major inputs vs the default
#   bash bench/run_gpu_fast.sh M   # sixth pass: GPU tests of the fused forms; depthwise-gate kernels of this tree
#                                  # vs the previous commit's (a copy of its src/ and bench/ in .devtmp/previous)
#   bash bench/run_gpu_fast.sh N   # sixth pass: GDFN strips; end-to-end at 4 x 512 with the official baseline
#   bash bench/run_gpu_fast.sh O   # sixth pass: GPU tests of the fast paths; knob sets of this tree and the
#                                  # previous commit's (.devtmp/previous) on one machine; kernel profile
#   bash bench/run_gpu_fast.sh P   # sixth pass, final code: GPU tests of the fused forms and fast paths
#   bash bench/run_gpu_fast.sh Q   # seventh pass: the fixed gate precision test; where cuDNN's layout transposes come
#                                  # from; Inductor knobs and whole-network compile (SETS)
#   bash bench/run_gpu_fast.sh R   # seventh pass: GPU tests of the fast paths; compiled network vs blocks, knobs
#   bash bench/run_gpu_fast.sh S   # end-to-end at 4 x 512 with the official baseline (mamba-ssm built first)
# The patched mamba-ssm sdist (sm_90 only) comes from .devtmp/mamba; a warm machine keeps its build.
set -uo pipefail
STAGE=${1:?stage A to P (see above)}
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
e2e_size() {  # one size per process, so that a timeout loses only that size
  stamp "end-to-end at $1"
  timeout "$2" python3 bench/bench_e2e.py --sizes "$1" --json "$LOG/e2e_$1.json" > "$LOG/e2e_$1.log" 2>&1
  echo "rc=$?" >> "$LOG/e2e_$1.log"; grep -A12 "^| variant" "$LOG/e2e_$1.log" | grep -E "^\|" ; grep -E "failed|rc=" "$LOG/e2e_$1.log"
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
  e2e_size 512 200
fi

if [ "$STAGE" = B ]; then
  build_mamba
  stamp "end-to-end"
  timeout ${E2E_TIMEOUT:-480} python3 bench/bench_e2e.py --compile-budget ${COMPILE_BUDGET:-200} ${E2E_ARGS:-} \
      --json "$LOG/e2e.json" > "$LOG/e2e.log" 2>&1
  grep -A30 "^| variant" "$LOG/e2e.log"; grep -E "compile|failed|skipped" "$LOG/e2e.log" | head -20
fi
if [ "$STAGE" = E ]; then  # after the fused depthwise-gate kernels (bench/bench_fused.py, model/fusible.py)
  stamp "mamba-ssm build in the background; GPU tests"
  build_mamba & BUILD=$!
  timeout 230 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_fusible.py tests/test_fast_paths.py \
      tests/test_engine_acceleration.py > "$LOG/pytest_gpu.log" 2>&1
  grep -E "passed|failed|error" "$LOG/pytest_gpu.log" | tail -3
  stamp "depthwise-gate table"
  timeout 70 python3 bench/bench_fused.py --quick > "$LOG/fused.log" 2>&1; grep -E "cudnn|default|^\| \|" "$LOG/fused.log"
  stamp "wait for mamba"; wait $BUILD; tail -1 "$LOG/mamba_build.log"
  e2e_size 512 230
fi
if [ "$STAGE" = D ]; then  # where the time goes, what each knob buys (bench/profile_e2e.py)
  stamp "knob sets at 4 x 512"
  timeout ${SETS_TIMEOUT:-380} python3 bench/profile_e2e.py --sets ${SETS:-fp32 fp32-c0 fp32-c bf16-c0 bf16-c \
      fp32-c+mm bf16-c+mm tf32-c+mm fp32-c+mm+cl bf16-c+mm+cl} > "$LOG/knobs.log" 2>&1
  grep -vE "^\s*$|Warning|warn" "$LOG/knobs.log" | tail -30
  stamp "stages and kernels"
  timeout ${PROFILE_TIMEOUT:-170} python3 bench/profile_e2e.py --sets fp32 --profile ${PROFILE:-fp32-c bf16-c} \
      > "$LOG/profile.log" 2>&1
  grep -E "^## |^\| [a-zA-Z(]" "$LOG/profile.log" | head -80
fi
if [ "$STAGE" = F ]; then  # the rows depthwise-gate kernel and the aligned GDFN width: kernels, knob sets, profile
  stamp "GPU tests of the fused forms"
  timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_fusible.py > "$LOG/pytest_gpu.log" 2>&1
  grep -E "passed|failed|error" "$LOG/pytest_gpu.log" | tail -3
  stamp "depthwise-gate kernels, channels-last"
  timeout ${FUSED_TIMEOUT:-150} python3 bench/bench_fused.py --cl ${FUSED_ARGS:-} > "$LOG/fused.log" 2>&1; grep -c "^| " "$LOG/fused.log"
  stamp "DG operator kernels"
  timeout 90 python3 bench/bench_fused.py --dg > "$LOG/dg.log" 2>&1; grep "^| [a-z]" "$LOG/dg.log"
  stamp "knob sets"
  timeout ${SETS_TIMEOUT:-300} python3 bench/profile_e2e.py --sets ${SETS:-fp32-t fp32 bf16-t bf16 fp32-c-t fp32-c \
      bf16-c-t bf16-c} > "$LOG/knobs.log" 2>&1
  grep -A14 "^| knob" "$LOG/knobs.log"
  stamp "profile"
  timeout ${PROFILE_TIMEOUT:-120} python3 bench/profile_e2e.py --sets fp32 --kernels 45 --profile ${PROFILE:-fp32-c bf16-c} \
      > "$LOG/profile.log" 2>&1
  grep -E "^## " "$LOG/profile.log"
fi
if [ "$STAGE" = G ]; then  # the DG operator kernels: GPU tests, the DG table, knob sets with and without them
  stamp "GPU tests of the fused forms"
  timeout 200 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_fusible.py tests/test_fast_paths.py \
      > "$LOG/pytest_gpu.log" 2>&1
  grep -E "passed|failed|error" "$LOG/pytest_gpu.log" | tail -3; grep -E "^E .*(compiled|eager|graph):" "$LOG/pytest_gpu.log" | head -5
  stamp "DG operator kernels"
  timeout 90 python3 bench/bench_fused.py --dg > "$LOG/dg.log" 2>&1; grep "^| [a-z]" "$LOG/dg.log"
  stamp "knob sets"
  timeout ${SETS_TIMEOUT:-280} python3 bench/profile_e2e.py --sets ${SETS:-fp32-t fp32 fp32-nodg bf16 fp32-c fp32-c-nodg \
      bf16-c bf16-c-nodg} > "$LOG/knobs.log" 2>&1
  grep -A14 "^| knob" "$LOG/knobs.log"
fi
if [ "$STAGE" = H ]; then  # final: GPU tests of the fused forms, end-to-end at 4 x 512 with the official baseline
  stamp "mamba-ssm build in the background; GPU tests of the fused forms"
  build_mamba & BUILD=$!
  timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_fusible.py > "$LOG/pytest_gpu.log" 2>&1
  grep -E "passed|failed|error" "$LOG/pytest_gpu.log" | tail -3
  stamp "wait for mamba"; wait $BUILD; tail -1 "$LOG/mamba_build.log"
  e2e_size 512 280
fi
if [ "$STAGE" = I ]; then  # chunked scan tilings on both layouts (bench_scan.py --layouts)
  stamp "chunked scan tilings on both layouts"
  timeout ${SWEEP_TIMEOUT:-400} python3 bench/bench_scan.py --layouts > "$LOG/scan_tm.log" 2>&1
  grep -E "best|took" "$LOG/scan_tm.log"
fi
if [ "$STAGE" = J ]; then
  stamp "mamba-ssm build in the background; GPU tests"
  build_mamba & BUILD=$!
  timeout 200 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_fusible.py tests/test_fast_paths.py \
      > "$LOG/pytest_gpu.log" 2>&1
  grep -E "passed|failed|error" "$LOG/pytest_gpu.log" | tail -3
  stamp "knob sets"
  timeout ${SETS_TIMEOUT:-200} python3 bench/profile_e2e.py --sets ${SETS:-bf16 bf16-c} > "$LOG/knobs.log" 2>&1
  grep -A8 "^| knob" "$LOG/knobs.log"
  stamp "wait for mamba"; wait $BUILD; tail -1 "$LOG/mamba_build.log"
  e2e_size 256 170
fi
if [ "$STAGE" = K ]; then
  build_mamba; tail -1 "$LOG/mamba_build.log"
  e2e_size 512 200
  e2e_size 256 170
fi
if [ "$STAGE" = L ]; then
  build_mamba; tail -1 "$LOG/mamba_build.log"
  e2e_size 1024 300
fi
if [ "$STAGE" = M ]; then  # sixth pass: the leaner rows kernel against the previous commit's, same machine
  stamp "GPU tests of the fused forms"
  timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_fusible.py > "$LOG/pytest_gpu.log" 2>&1
  grep -E "passed|failed|error" "$LOG/pytest_gpu.log" | tail -3; grep -E "^(FAILED|E  )" "$LOG/pytest_gpu.log" | head -12
  for tree in . .devtmp/previous; do
    stamp "depthwise-gate defaults: tree $tree"
    timeout 100 python3 "$tree/bench/bench_fused.py" --cl --aligned --defaults > "$LOG/fused_defaults_${tree//[.\/]/}.log" 2>&1
    grep -E "^\| [gs]" "$LOG/fused_defaults_${tree//[.\/]/}.log"
  done
  stamp "all strips and tiles, this tree"
  timeout ${FUSED_TIMEOUT:-170} python3 bench/bench_fused.py --cl --aligned > "$LOG/fused_sweep.log" 2>&1
  grep -c "^| " "$LOG/fused_sweep.log"
fi
if [ "$STAGE" = N ]; then  # sixth pass: GDFN strips while mamba-ssm builds, then end-to-end at 4 x 512
  build_mamba & BUILD=$!
  stamp "GDFN strips"
  timeout 150 python3 bench/bench_fused.py --cl --aligned --gelu > "$LOG/fused_gelu.log" 2>&1
  grep -E "defaults|rows" "$LOG/fused_gelu.log"
  stamp "wait for mamba"; wait $BUILD; tail -1 "$LOG/mamba_build.log"
  e2e_size 512 270
fi
if [ "$STAGE" = O ]; then  # sixth pass: tests, this tree vs the previous commit's, the kernel profile
  stamp "GPU tests of the fast paths"
  timeout 200 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_fast_paths.py > "$LOG/pytest_gpu.log" 2>&1
  grep -E "passed|failed|error" "$LOG/pytest_gpu.log" | tail -3; grep -E "^(FAILED|E  )" "$LOG/pytest_gpu.log" | head -12
  for tree in .devtmp/previous .; do
    stamp "knob sets: tree $tree"
    timeout 150 python3 "$tree/bench/profile_e2e.py" --sets ${SETS:-fp32 bf16-c} > "$LOG/knobs_${tree//[.\/]/}.log" 2>&1
    grep -A6 "^| knob" "$LOG/knobs_${tree//[.\/]/}.log"
  done
  stamp "profile of this tree"
  timeout 150 python3 bench/profile_e2e.py --sets fp32 --kernels 40 --profile ${PROFILE:-bf16-c} > "$LOG/profile.log" 2>&1
  grep -E "^## |^\| " "$LOG/profile.log" | head -90
fi
if [ "$STAGE" = P ]; then  # sixth pass, the final code: GPU tests, the depthwise-gate defaults at level 1
  stamp "GPU tests of the fused forms and fast paths"
  timeout 330 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_fusible.py tests/test_fast_paths.py \
      > "$LOG/pytest_gpu.log" 2>&1
  grep -E "passed|failed|error" "$LOG/pytest_gpu.log" | tail -3; grep -E "^(FAILED|E  )" "$LOG/pytest_gpu.log" | head -12
  stamp "depthwise-gate defaults"
  timeout 90 python3 bench/bench_fused.py --quick --defaults > "$LOG/fused.log" 2>&1; grep -E "^\| [gs ]" "$LOG/fused.log"
fi
if [ "$STAGE" = Q ]; then  # seventh pass: gate precision on the GPU, layout transposes, Inductor knobs
  stamp "GPU gate precision test"
  timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_fusible.py -k precise > "$LOG/pytest_gpu.log" 2>&1
  grep -E "passed|failed|error" "$LOG/pytest_gpu.log" | tail -3; grep -E "^(FAILED|E  )" "$LOG/pytest_gpu.log" | head -12
  stamp "layout transposes"
  timeout 150 python3 bench/profile_e2e.py --sets --trace-layout bf16-c > "$LOG/layout.log" 2>&1
  grep -E "^## |^\| |^- |failed" "$LOG/layout.log" | head -70
  stamp "knob sets"
  timeout ${SETS_TIMEOUT:-400} python3 bench/profile_e2e.py --sets ${SETS:-bf16-c bf16-cw bf16-c-af bf16-c-cd} > "$LOG/knobs.log" 2>&1
  grep -E "ms .*Mpx|failed" "$LOG/knobs.log"; grep -A8 "^| knob" "$LOG/knobs.log"
fi
if [ "$STAGE" = R ]; then  # seventh pass: the compiled network against the compiled blocks, Inductor knobs
  stamp "GPU tests of the fast paths"
  timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_fast_paths.py > "$LOG/pytest_gpu.log" 2>&1
  grep -E "passed|failed|error" "$LOG/pytest_gpu.log" | tail -3; grep -E "^(FAILED|E  )" "$LOG/pytest_gpu.log" | head -12
  stamp "knob sets"
  timeout ${SETS_TIMEOUT:-440} python3 bench/profile_e2e.py --sets ${SETS:-fp32-cb fp32-c bf16-c bf16-c+cl bf16-c-cd} \
      > "$LOG/knobs.log" 2>&1
  grep -E "ms .*Mpx|failed" "$LOG/knobs.log"; grep -A8 "^| knob" "$LOG/knobs.log"
fi
if [ "$STAGE" = S ]; then
  build_mamba; tail -1 "$LOG/mamba_build.log"
  e2e_size 512 ${E2E_TIMEOUT:-300}
fi
stamp "done"
tar czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
