"""Training throughput of the paper's recipe on 1..N GPUs: iterations/s, samples/s, peak memory per GPU.

    torchrun --standalone --nproc_per_node=1 bench/bench_train.py     # BBBC recipe: dim 48, batch 8/GPU, patch 256
    torchrun --standalone --nproc_per_node=2 bench/bench_train.py --baseline 12.3   # scaling vs 1 GPU's samples/s
    python bench/bench_train.py --config synthetic_smoke --batch 2 --patch 64 --iters 3 --warmup 1   # CPU check

Each step is the real training step (DDP forward/backward with the multi-scale + FFT loss, gradient
clipping, AdamW, EMA update). Data generation stays off the critical path: every rank simulates a pool
of defocus pairs (``napari_dgno.synthetic``) once, keeps it on its device, and draws batches from it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the repository

from training.config import load_config  # noqa: E402
from training.distributed import barrier, cleanup, gather_objects, init_distributed  # noqa: E402
from training.ema import ModelEMA  # noqa: E402
from training.train import build_network, build_optimizer, train_step  # noqa: E402


def make_pool(size: int, patch: int, channels: int, seed: int,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` simulated (blurred, sharp) pairs, min-max normalised like BBBC006, on ``device``."""
    from napari_dgno.synthetic import make_pair

    kind = "tissue" if channels == 3 else "mixed"
    lqs, gts = [], []
    for i in range(size):
        blurred, sharp = make_pair(shape=(patch, patch), kind=kind, rng=np.random.default_rng([seed, i]))
        pair = []
        for image in (blurred, sharp):
            image = np.asarray(image, np.float32)
            image = image[..., None] if image.ndim == 2 else image
            if channels == 1:
                image = (image - image.min()) / max(float(image.max() - image.min()), 1e-8)
            pair.append(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))))
        lqs.append(pair[0])
        gts.append(pair[1])
    return torch.stack(lqs).to(device), torch.stack(gts).to(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="DGNO_BBBC006_w1_Face", help="network and optimiser settings")
    parser.add_argument("--batch", type=int, default=8, help="batch per GPU (paper: 8)")
    parser.add_argument("--patch", type=int, default=256, help="patch size (paper: 256)")
    parser.add_argument("--iters", type=int, default=200, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=20, help="untimed iterations first (kernels, cudnn autotune)")
    parser.add_argument("--pool", type=int, default=32, help="simulated pairs kept on each device")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (the paper trained in float32)")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls/convolutions")
    parser.add_argument("--scan-backend", default=None, help="sets NAPARI_DGNO_SCAN (auto, triton, mamba, torch)")
    parser.add_argument("--baseline", type=float, default=None, help="1-GPU samples/s, for the scaling efficiency")
    parser.add_argument("--json", default=None, help="append the result as one JSON line to this file")
    args = parser.parse_args(argv)

    if args.scan_backend:
        os.environ["NAPARI_DGNO_SCAN"] = args.scan_backend
    opt = load_config(args.config)
    info = init_distributed("auto")
    device = info.device
    torch.manual_seed(100 + info.rank)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32

    net = build_network(opt["network_g"]).to(device).train()
    ema = ModelEMA(net, float(opt["train"]["ema_decay"]))
    optimizer = build_optimizer(net, opt["train"]["optim_g"])
    model = net
    if info.distributed:
        import warnings

        from torch.nn.parallel import DistributedDataParallel

        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")

        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                        gradient_as_bucket_view=True)
    lq_pool, gt_pool = make_pool(args.pool, args.patch, net.in_channels, 1000 + info.rank, device)
    picker = torch.Generator(device=device).manual_seed(info.rank)

    from napari_dgno.model.scan import resolve_backend

    backend = resolve_backend(None, device, needs_grad=True)
    clip = float(opt["train"]["grad_clip_norm"]) if opt["train"]["use_grad_clip"] else None

    def step() -> None:
        idx = torch.randint(0, args.pool, (args.batch,), device=device, generator=picker)
        train_step(model, lq_pool[idx], gt_pool[idx], optimizer, grad_clip=clip,
                   fft_weight=float(opt["train"]["fft_loss_weight"]), bf16=args.bf16)
        ema.update(net)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    barrier(info)
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    sync()
    barrier(info)
    elapsed = time.perf_counter() - start

    memory = {"allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
              "reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30 if device.type == "cuda" else None}
    per_rank = gather_objects(info, {"rank": info.rank, "elapsed": elapsed, **memory})
    if info.is_main:
        slowest = max(r["elapsed"] for r in per_rank)
        its = args.iters / slowest
        samples = its * args.batch * info.world_size
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        params = sum(p.numel() for p in net.parameters()) / 1e6
        result = {
            "gpus": info.world_size, "device": name, "config": opt["name"], "params_m": round(params, 3),
            "batch_per_gpu": args.batch, "patch": args.patch, "precision": "bf16" if args.bf16 else "fp32",
            "tf32": args.tf32, "scan_backend": backend, "iters": args.iters, "it_per_s": round(its, 3),
            "samples_per_s": round(samples, 2), "samples_per_s_per_gpu": round(samples / info.world_size, 2),
            "peak_alloc_gib_per_gpu": [None if r["allocated_gib"] is None else round(r["allocated_gib"], 2)
                                       for r in per_rank],
            "peak_reserved_gib_per_gpu": [None if r["reserved_gib"] is None else round(r["reserved_gib"], 2)
                                          for r in per_rank],
            "torch": torch.__version__, "nccl_nvls_enable": os.environ.get("NCCL_NVLS_ENABLE"),
        }
        if args.baseline:
            result["scaling_efficiency"] = round(samples / (args.baseline * info.world_size), 3)
        print_table(result)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(result) + "\n")
    cleanup()
    return 0


def print_table(result: dict) -> None:
    rows = [("GPUs", result["gpus"]), ("device", result["device"]),
            ("network", f"{result['config']} ({result['params_m']} M params)"),
            ("batch/GPU x patch", f"{result['batch_per_gpu']} x {result['patch']}"),
            ("precision", result["precision"] + (" +TF32" if result["tf32"] else "")),
            ("scan backend", result["scan_backend"]), ("iterations/s", result["it_per_s"]),
            ("samples/s (total)", result["samples_per_s"]), ("samples/s per GPU", result["samples_per_s_per_gpu"]),
            ("peak allocated GiB per GPU", result["peak_alloc_gib_per_gpu"]),
            ("peak reserved GiB per GPU", result["peak_reserved_gib_per_gpu"])]
    if "scaling_efficiency" in result:
        rows.append(("scaling efficiency", result["scaling_efficiency"]))
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"| {k:<{width}} | {v} |" for k, v in rows))
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
