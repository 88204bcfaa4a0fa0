"""End-to-end DGNO inference throughput on one GPU: the official settings vs our default vs our fastest.

Variants (same network, same random weights, same input per shape):
  (a) official   - float32, batch 1, mamba-ssm's scan kernel, Gumbel routing, one whole image per
                   call, eager (what test_bbbc.py / test_3dhistech.py do); (a') the same on 4 x 512.
  (b) default    - what `napari_dgno.deblur` does on CUDA by default: float32, tiles batched,
                   deterministic routing, `auto` scan, accelerate="auto" (= CUDA graphs).
  (b0) eager     - (b) without CUDA graphs: what the graphs add.
  (c) bf16       - bf16 autocast + CUDA graphs.
  (c+) fastest   - bf16 autocast + compiled network + CUDA graphs (accelerate="compile+graphs");
  (b+)           - float32 + compiled network + CUDA graphs.
The accelerated variants call `napari_dgno.model.fast.accelerate`, the function the engine uses.

Prints megapixels/s, ratios to (a), peak GPU memory, TFLOP/s (1.61 MFLOP per pixel, architecture
note section 14) and its fraction of a measured bf16 matmul peak, compile times, the deviation of
each variant from (b0) (relative L2 and max abs of the full-resolution output), and with --profile
the top CUDA kernels of the fastest variant at 4 x 512.

    python bench/bench_e2e.py [--variant face|cell] [--sizes 256 512 1024] [--no-compile] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_dgno.model import DGNO  # noqa: E402
from napari_dgno.model import scan  # noqa: E402
from napari_dgno.registry import get_model_info  # noqa: E402

FLOP_PER_PIXEL = 1.61e6


def time_cuda(fn, warmup: int = 3, repeat: int = 10) -> float:
    """Median milliseconds of ``fn()`` measured with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def bf16_peak_tflops() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = time_cuda(lambda: a @ b, warmup=3, repeat=10)
    return 2 * 8192**3 / (ms * 1e-3) / 1e12


def build(variant: str) -> DGNO:
    name = "DGNO_BBBC006_w1_Face" if variant == "face" else "DGNO_BBBC006_w1_Cell"
    torch.manual_seed(0)
    net = DGNO(**get_model_info(name).network_g)
    with torch.no_grad():  # perturb so routing spreads tokens over many prompts, like trained weights
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return net.cuda().eval()


BATCHES = {256: 16, 512: 4, 1024: 4}


def make_input(batch: int, size: int) -> torch.Tensor:
    return torch.rand(batch, 1, size, size, device="cuda", generator=torch.Generator("cuda").manual_seed(size))


def run_variant(net, batch, size, *, dtype, routing, backend, mode="none"):
    """(median ms, peak MiB, output of one call) for ``net`` made fast with ``mode``."""
    from napari_dgno.model.fast import accelerate

    x = make_input(batch, size)
    net.routing = routing
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()  # the peak includes a captured graph's memory pool
    with scan.use_backend(backend):
        model = accelerate(net, "cuda", mode)

        def step():
            with torch.inference_mode(), autocast:
                return model(x)[-1]

        for _ in range(2):  # warm-up: cuDNN autotuning, Triton/Inductor compiles, graph capture
            step()
        ms = time_cuda(step, warmup=1)
        peak = torch.cuda.max_memory_allocated() / 2**20
        out = step().float()
    if hasattr(model, "release"):
        model.release()
    return ms, peak, out


def attempt(label: str, net, batch: int, size: int, *, dtype: str, mode: str):
    """``run_variant`` with argmax routing and the auto scan; None (and the reason printed) on failure,
    so one broken variant does not lose the other numbers of a device run."""
    try:
        return run_variant(net, batch, size, dtype=dtype, routing="argmax", backend="auto", mode=mode)
    except Exception as exc:
        print(f"    {label} failed: {type(exc).__name__}: {str(exc)[:800]}", flush=True)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=["face", "cell"], default="face")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled variants")
    parser.add_argument("--compile-budget", type=float, default=300,
                        help="seconds of compiling after which further compiled variants are skipped")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        sys.exit("bench_e2e needs a CUDA GPU")
    torch.backends.cudnn.benchmark = True
    gpu = torch.cuda.get_device_name()
    peak_tf = bf16_peak_tflops()
    fast_backend = scan.resolve_backend("auto", "cuda")
    have_mamba = "mamba" in scan.available_backends("cuda")
    print(f"# {gpu}, torch {torch.__version__}, bf16 matmul peak measured {peak_tf:.0f} TFLOP/s; "
          f"auto scan backend = {fast_backend}; mamba-ssm {'present' if have_mamba else 'ABSENT'}", flush=True)
    net = build(args.variant)
    rows = []
    reference: dict[int, torch.Tensor] = {}

    def record(name, batch, size, ms, peak, out=None, **extra):
        mpx = batch * size * size / (ms * 1e-3) / 1e6
        tflops = mpx * 1e6 * FLOP_PER_PIXEL / 1e12
        row = dict(variant=name, batch=batch, size=size, ms=ms, mpx_s=mpx, peak_mib=peak, tflops=tflops,
                   floor_frac=tflops / peak_tf, **extra)
        if out is not None and size in reference and out.shape == reference[size].shape:
            ref = reference[size]
            row["rel_l2"] = float((out - ref).norm() / ref.norm())
            row["max_abs"] = float((out - ref).abs().max())
        rows.append(row)
        dev = f" dev vs (b0) {row['rel_l2']:.1e} (max {row['max_abs']:.1e})" if "rel_l2" in row else ""
        print(f"{name:<26} {batch:>3} x {size:<5} {ms:9.2f} ms {mpx:8.2f} Mpx/s {peak:9.0f} MiB "
              f"{tflops:6.1f} TFLOP/s ({100 * tflops / peak_tf:4.1f}% of bf16 peak){dev}", flush=True)

    baseline_backend = "mamba" if have_mamba else fast_backend
    for size in args.sizes:
        ms, peak, _ = run_variant(net, 1, size, dtype="fp32", routing="gumbel", backend=baseline_backend)
        record(f"(a) official/{baseline_backend}", 1, size, ms, peak)
    if 512 in args.sizes:  # the reference shape
        ms, peak, _ = run_variant(net, 4, 512, dtype="fp32", routing="gumbel", backend=baseline_backend)
        record("(a') official 4x512", 4, 512, ms, peak)
    for size in args.sizes:
        batch = BATCHES.get(size, 4)
        ms, peak, out = run_variant(net, batch, size, dtype="fp32", routing="argmax", backend="auto")
        reference[size] = out
        record("(b0) fp32 eager", batch, size, ms, peak)
        for label, dtype in (("(b) default: fp32 + graphs", "fp32"), ("(c) bf16 + graphs", "bf16")):
            result = attempt(label, net, batch, size, dtype=dtype, mode="graphs")
            if result is not None:
                record(label, batch, size, *result)
        ms, peak, out = run_variant(net, batch, size, dtype="bf16", routing="argmax", backend="auto")
        record("(c0) bf16 eager", batch, size, ms, peak, out)

    if not args.no_compile:  # compiled last: compiling changes the network in place
        spent = 0.0
        for size in args.sizes:
            for label, dtype in (("(c+) bf16 + compile + graphs", "bf16"), ("(b+) fp32 + compile + graphs", "fp32")):
                if spent > args.compile_budget:
                    print(f"    skipped {label} at {size}: compile budget spent", flush=True)
                    continue
                batch = BATCHES.get(size, 4)
                t0 = time.perf_counter()
                result = attempt(label, net, batch, size, dtype=dtype, mode="compile+graphs")
                if result is None:
                    continue
                ms, peak, out = result
                took = time.perf_counter() - t0 - ms * 14e-3  # minus the timed calls
                spent += took
                record(label, batch, size, ms, peak, out, compile_s=took)
                print(f"    compile + capture took {took:.0f} s", flush=True)

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        from napari_dgno.model.fast import accelerate

        net.routing = "argmax"
        x = make_input(4, 512)
        model = accelerate(net, "cuda", "none")  # compiled blocks stay compiled; eager glue visible
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            model(x)
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                model(x)
                torch.cuda.synchronize()
        print("\n## profile: bf16, compiled blocks (no graph), 4 x 512x512")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70))

    base = {r["size"]: r["mpx_s"] for r in rows if r["variant"].startswith("(a)")}
    base4 = next((r["mpx_s"] for r in rows if r["variant"].startswith("(a')")), None)
    print("\n| variant | batch x size | ms | Mpx/s | vs (a) same size | vs (a') 4x512 | peak MiB | TFLOP/s | "
          "% bf16 peak | rel. L2 vs (b0) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["mpx_s"] / base[r["size"]] if r["size"] in base else float("nan")
        ratio4 = f"{r['mpx_s'] / base4:.2f}x" if base4 else ""
        dev = f"{r['rel_l2']:.1e}" if "rel_l2" in r else ""
        print(f"| {r['variant']} | {r['batch']} x {r['size']} | {r['ms']:.1f} | {r['mpx_s']:.2f} | {ratio:.2f}x | "
              f"{ratio4} | {r['peak_mib']:.0f} | {r['tflops']:.1f} | {100 * r['floor_frac']:.1f}% | {dev} |")
    if args.json:
        args.json.write_text(json.dumps(dict(gpu=gpu, peak_bf16_tflops=peak_tf, rows=rows), indent=1))


if __name__ == "__main__":
    main()
