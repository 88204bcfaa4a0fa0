"""Scale-out of the lazy engine over a local dask.distributed cluster: 1 GPU vs N GPUs.

A z-stack is written to a TIFF, opened lazily with ``napari_dgno.io.read_image``, deblurred with
``napari_dgno.deblur_lazy`` given a checkpoint *path* (each worker loads the model once) and
computed on ``napari_dgno.engine.local_gpu_cluster(n)``: one single-threaded worker per GPU.
Timed after a warm-up compute that loads the model on every worker.

    python bench/bench_dask_gpus.py [--planes 48] [--size 1024] [--gpus 1 2] [--precision fp32]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_dgno import DGNO, deblur_lazy  # noqa: E402
from napari_dgno.engine import local_gpu_cluster  # noqa: E402
from napari_dgno.io import read_image, write_image  # noqa: E402
from napari_dgno.registry import get_model_info  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--planes", type=int, default=48)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    from distributed import Client

    tmp = Path(tempfile.mkdtemp())
    cfg = get_model_info("DGNO_BBBC006_w1_Face").network_g
    torch.manual_seed(0)
    ckpt = tmp / "dgno_random.pth"
    torch.save({"params": DGNO(**cfg).state_dict(), "network_g": cfg, "normalization": "minmax"}, ckpt)
    rng = np.random.default_rng(0)
    stack = (rng.random((args.planes, args.size, args.size), dtype=np.float32) * 4000).astype(np.uint16)
    write_image(tmp / "stack.tif", stack, axes="ZYX")
    image = read_image(tmp / "stack.tif")
    mpx = args.planes * args.size * args.size / 1e6
    print(f"# {torch.cuda.get_device_name()} x {torch.cuda.device_count()}; stack {args.planes} x {args.size}^2 "
          f"({mpx:.0f} Mpx) uint16 TIFF, full-size DGNO, {args.precision}")
    rows = []
    for n in args.gpus:
        with local_gpu_cluster(n) as cluster, Client(cluster) as client:
            client.wait_for_workers(n)
            warm = deblur_lazy(image.data[: 2 * n], str(ckpt), axes="ZYX", precision=args.precision)
            warm.compute()
            result = deblur_lazy(image.data, str(ckpt), axes="ZYX", precision=args.precision)
            t0 = time.perf_counter()
            out = result.compute()
            seconds = time.perf_counter() - t0
            assert out.shape == stack.shape and np.isfinite(out).all()
        rows.append((n, seconds, mpx / seconds))
        print(f"{n} GPU(s): {seconds:.2f} s, {mpx / seconds:.2f} Mpx/s", flush=True)
    base = rows[0][2]
    print("\n| GPUs | seconds | Mpx/s | speed-up | efficiency |\n|---|---|---|---|---|")
    for n, seconds, rate in rows:
        print(f"| {n} | {seconds:.2f} | {rate:.2f} | {rate / base:.2f}x | {100 * rate / base / n * rows[0][0]:.0f}% |")


if __name__ == "__main__":
    main()
