"""End-to-end DGNO inference throughput on one GPU: official settings vs our default vs our fastest.

Variants (same network, same random weights):
  (a) baseline  - the official settings: float32, batch 1, mamba-ssm's scan kernel, Gumbel routing,
                  one whole image per call (what test_bbbc.py / test_3dhistech.py do).
  (b) default   - what `napari_dgno.deblur` does on CUDA by default: float32, tiles batched,
                  deterministic routing, the `auto` scan backend.
  (c) fastest   - bf16 autocast, channels-last, tiles batched, `auto` scan (optionally torch.compile).

Prints megapixels/s, ratios to (a), peak GPU memory, achieved TFLOP/s (1.61 MFLOP per pixel, see
the architecture note section 14) and its fraction of a measured bf16 matmul peak, the bf16
deviation from fp32, and (with --profile) the top CUDA kernels of (b) and (c).

    python bench/bench_e2e.py [--variant face|cell] [--sizes 256 512 1024] [--profile] [--compile]
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


def run_variant(net, batch, size, *, dtype, routing, backend, channels_last, compiled=None):
    # The same input for every variant of a shape, so that outputs can be compared.
    x = torch.rand(batch, 1, size, size, device="cuda", generator=torch.Generator("cuda").manual_seed(size))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    net.routing = routing
    model = net if compiled is None else compiled
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()

    def step():
        with torch.inference_mode(), autocast, scan.use_backend(backend):
            return model(x)[-1]

    for _ in range(2):  # warm-up (cuDNN autotuning, Triton compiles) before the memory peak is reset
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    ms = time_cuda(step, warmup=1)
    peak = torch.cuda.max_memory_allocated() / 2**20
    return ms, peak, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=["face", "cell"], default="face")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile on the fastest path")
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

    def record(name, batch, size, ms, peak):
        mpx = batch * size * size / (ms * 1e-3) / 1e6
        tflops = mpx * 1e6 * FLOP_PER_PIXEL / 1e12
        rows.append(dict(variant=name, batch=batch, size=size, ms=ms, mpx_s=mpx, peak_mib=peak,
                         tflops=tflops, floor_frac=tflops / peak_tf))
        print(f"{name:<22} {batch:>3} x {size:<5} {ms:9.2f} ms {mpx:8.2f} Mpx/s {peak:9.0f} MiB "
              f"{tflops:6.1f} TFLOP/s ({100 * tflops / peak_tf:4.1f}% of bf16 peak)", flush=True)

    baseline_backend = "mamba" if have_mamba else fast_backend
    for size in args.sizes:
        ms, peak, _ = run_variant(net, 1, size, dtype="fp32", routing="gumbel", backend=baseline_backend, channels_last=False)
        record(f"(a) official/{baseline_backend}", 1, size, ms, peak)
    batches = {256: 16, 512: 4, 1024: 4}
    for size in args.sizes:
        batch = batches.get(size, 4)
        ms, peak, step32 = run_variant(net, batch, size, dtype="fp32", routing="argmax", backend="auto", channels_last=False)
        record("(b) default fp32", batch, size, ms, peak)
        ms, peak, _ = run_variant(net, batch, size, dtype="fp32", routing="argmax", backend="auto", channels_last=True)
        record("(b') fp32 channels-last", batch, size, ms, peak)
        ms, peak, step16 = run_variant(net, batch, size, dtype="bf16", routing="argmax", backend="auto", channels_last=True)
        record("(c) fast bf16+CL", batch, size, ms, peak)
        with torch.inference_mode():
            y32, y16 = step32().float(), step16().float()
        dev = float((y16 - y32).norm() / y32.norm())
        print(f"    bf16 vs fp32 relative L2 deviation at {size}: {dev:.2e}; max abs {float((y16 - y32).abs().max()):.2e}")
        rows[-1]["bf16_rel_dev"] = dev

    # The reference shape: the official settings on 4 x 512 tiles.
    if 512 in args.sizes:
        ms, peak, _ = run_variant(net, 4, 512, dtype="fp32", routing="gumbel", backend=baseline_backend, channels_last=False)
        record("(a') official 4x512", 4, 512, ms, peak)

    if args.compile:
        for label, dtype in (("(c+) compiled bf16+CL", "bf16"), ("(b+) compiled fp32+CL", "fp32")):
            t0 = time.perf_counter()
            torch._dynamo.reset()
            compiled = torch.compile(net)
            try:
                ms, peak, _ = run_variant(net, 4, 512, dtype=dtype, routing="argmax", backend="auto", channels_last=True,
                                          compiled=compiled)
                print(f"    {label}: compile + timing took {time.perf_counter() - t0:.0f} s")
                record(label, 4, 512, ms, peak)
            except Exception as exc:  # report and go on: the other numbers still matter
                print(f"    torch.compile failed: {type(exc).__name__}: {str(exc)[:500]}")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for label, dtype, cl in (("default fp32", "fp32", False), ("fast bf16", "bf16", True)):
            _, _, step = run_variant(net, 4, 512, dtype=dtype, routing="argmax", backend="auto", channels_last=cl)
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                step()
                torch.cuda.synchronize()
            print(f"\n## profile: {label}, 4 x 512x512")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=60))

    base = {r["size"]: r["mpx_s"] for r in rows if r["variant"].startswith("(a)")}
    print("\n| variant | batch x size | ms | Mpx/s | vs (a) same size | peak MiB | TFLOP/s | % bf16 peak |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["mpx_s"] / base[r["size"]] if r["size"] in base else float("nan")
        print(f"| {r['variant']} | {r['batch']} x {r['size']} | {r['ms']:.1f} | {r['mpx_s']:.2f} | {ratio:.2f}x | "
              f"{r['peak_mib']:.0f} | {r['tflops']:.1f} | {100 * r['floor_frac']:.1f}% |")
    if args.json:
        args.json.write_text(json.dumps(dict(gpu=gpu, peak_bf16_tflops=peak_tf, rows=rows), indent=1))


if __name__ == "__main__":
    main()
