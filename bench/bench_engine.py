"""Throughput, tiling overhead and memory of the deblurring engine; prints Markdown tables.

    python bench/bench_engine.py                       # full-size DGNO (random weights), auto device
    python bench/bench_engine.py --device cpu --quick  # small sizes, a few seconds per case
    python bench/bench_engine.py --model tiny          # the reduced test network
    python bench/bench_engine.py --model DGNO_BBBC006_w1_Face   # a registry name or checkpoint path

Cases: a stack of 512x512 planes and one 4096x4096 image, at fp32 and (on CUDA) bf16; then the
tiling overhead: the engine on the large image versus the model on the very same tiles stacked as
one batch (no normalisation, blending or host transfers; in engine-sized batches when one batch
does not fit). Memory: peak of numpy allocations during the case (tracemalloc: the engine's
buffers), the process's peak resident size (ru_maxrss, never decreases) and peak GPU memory
(torch.cuda.max_memory_allocated). Needs torch and numpy only (no napari, no dask).
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

try:
    import napari_dgno
except ImportError:  # a source checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import napari_dgno

from napari_dgno._checkpoints.device import resolve_device
from napari_dgno.engine import deblur
from napari_dgno.engine.devices import autocast, device_name, is_out_of_memory, resolve_sizes
from napari_dgno.engine.models import forward, prepare_model
from napari_dgno.engine.tiling import TileGrid
from napari_dgno.model.configs import tiny_network_g
from napari_dgno.registry import get_model_info


def build_model(name: str, device: torch.device):
    """``random`` (full-size DGNO), ``tiny``, or a registry name / checkpoint path."""
    if name in ("random", "tiny"):
        torch.manual_seed(0)
        config = tiny_network_g() if name == "tiny" else get_model_info("DGNO_BBBC006_w1_Face").network_g
        model = napari_dgno.DGNO(**config)
        millions = sum(p.numel() for p in model.parameters()) / 1e6
        return prepare_model(model, device)[2], f"DGNO {name} ({millions:.1f} M params, random weights)"
    return prepare_model(name, device)[2], name


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def measure(device: torch.device, repeat: int, fn, /, *args, **kwargs) -> dict:
    """Best wall time over ``repeat`` runs of ``fn(*args, **kwargs)``, tracemalloc and GPU peaks."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    best, traced = float("inf"), 0
    for _ in range(repeat):
        sync(device)
        tracemalloc.start()
        start = time.perf_counter()
        fn(*args, **kwargs)
        sync(device)
        best = min(best, time.perf_counter() - start)
        traced = max(traced, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return {"seconds": best, "host_mb": traced / 2**20, "rss_mb": rss_mb(), "gpu_mb": gpu}


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


def raw_tiles(model, image: np.ndarray, grid: TileGrid, device: torch.device, precision: str, batch: int) -> None:
    """The model on exactly the engine's tiles, already normalised, stacked into batches of ``batch``."""
    tiles = np.stack([image[grid.window(t)] for t in range(len(grid))])[:, None].astype(np.float32)
    with torch.inference_mode(), autocast(device, precision):
        for first in range(0, len(tiles), batch):
            x = torch.from_numpy(tiles[first : first + batch]).to(device)
            forward(model, x)
    sync(device)


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="random", help="random (full-size DGNO), tiny, a registry name or a path")
    parser.add_argument("--quick", action="store_true", help="small sizes (planes 256^2 x2, large 512^2)")
    parser.add_argument("--planes", type=int, default=None, help="number of 512x512 planes (default 16, quick 2)")
    parser.add_argument("--plane-size", type=int, default=None, help="plane edge (default 512, quick 256)")
    parser.add_argument("--large-size", type=int, default=None, help="large image edge (default 4096, quick 512)")
    parser.add_argument("--tile", type=int, default=None, help="tile edge (default: the engine's for the device)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=None, help="runs per case, best time kept (default 3, quick 1)")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    planes = args.planes or (2 if args.quick else 16)
    plane = args.plane_size or (256 if args.quick else 512)
    large = args.large_size or (512 if args.quick else 4096)
    repeat = args.repeat or (1 if args.quick else 3)
    tile, batch = resolve_sizes(device, args.tile, args.batch_size)
    precisions = ["fp32", "bf16"] if device.type == "cuda" else ["fp32"]
    model, label = build_model(args.model, device)
    rng = np.random.default_rng(0)
    stack = (rng.random((planes, plane, plane)) * 4000).astype(np.uint16)
    big = (rng.random((large, large)) * 4000).astype(np.uint16)
    common = dict(tile=tile, overlap=args.overlap, batch_size=batch, device=str(device))

    from napari_dgno.model.scan import requested_backend

    print(f"# napari-dgno engine benchmark\n\n{label}; device {device_name(device)}; torch {torch.__version__}; "
          f"{torch.get_num_threads()} CPU threads; scan backend request '{requested_backend()}'; "
          f"tile {tile}, overlap {args.overlap}, batch {batch}; python {platform.python_version()}\n")
    deblur(stack[:1, : min(plane, tile), : min(plane, tile)], model, **common)  # warm-up (allocator, kernels)

    print("| case | precision | time (s) | MP/s | host peak, numpy (MB) | max RSS (MB) | GPU peak (MB) |")
    print("|---|---|---|---|---|---|---|")
    cases = [(f"{planes} planes {plane}x{plane}", stack), (f"1 image {large}x{large}", big)]
    for name, image in cases:
        for precision in precisions:
            stats = measure(device, repeat, deblur, image, model, precision=precision, **common)
            mp = image.size / 1e6
            print(f"| {name} | {precision} | {stats['seconds']:.2f} | {mp / stats['seconds']:.3f} | "
                  f"{fmt(stats['host_mb'])} | {fmt(stats['rss_mb'])} | {fmt(stats['gpu_mb'])} |")

    print("\n| tiling overhead | precision | tiles | engine (s) | same tiles, raw (s) | raw batch | overhead |")
    print("|---|---|---|---|---|---|---|")
    normalised = ((big - big.min()) / float(big.max() - big.min())).astype(np.float32)
    grid = TileGrid(big.shape, tile, args.overlap)
    for precision in precisions:
        engine = measure(device, repeat, deblur, big, model, precision=precision, **common)["seconds"]
        raw_batch = len(grid)
        try:
            raw = measure(device, repeat, raw_tiles, model, normalised, grid, device, precision, raw_batch)["seconds"]
        except Exception as err:  # one batch of every tile may not fit: fall back to the engine's batch
            if not is_out_of_memory(err):
                raise
            torch.cuda.empty_cache()
            raw_batch = batch
            raw = measure(device, repeat, raw_tiles, model, normalised, grid, device, precision, raw_batch)["seconds"]
        print(f"| {large}x{large} | {precision} | {len(grid)} | {engine:.2f} | {raw:.2f} | {raw_batch} | "
              f"{100 * (engine / raw - 1):+.1f} % |")
    machinery = measure(device, max(repeat, 3), deblur, big, identity, **common)["seconds"]
    print(f"\nEngine machinery alone (identity model: normalise, cut tiles, copy to and from the device, "
          f"blend) on {large}x{large}: {machinery:.2f} s, {big.size / 1e6 / machinery:.1f} MP/s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
