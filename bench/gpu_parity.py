"""On a CUDA GPU: do the scan backends agree, and does the whole network give the same outputs?

1. Each backend (torch, triton, mamba when importable) against a float64 reference on DGNO's scan
   shapes (random inputs drawn like the network's: softplus deltas, A = -exp(A_log)).
2. The full-size DGNO (float32, deterministic routing, random perturbed weights) run with each
   backend on the same 256x256 and 512x512 inputs: relative L2 difference of the full-resolution
   output, and whether the routing (argmax prompt per token) is identical.

    python bench/gpu_parity.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_dgno.model import DGNO, scan  # noqa: E402
from napari_dgno.registry import get_model_info  # noqa: E402

SHAPES = [(96, 65536), (192, 16384), (384, 4096), (768, 1024), (96, 262144)]


def scan_inputs(b: int, d: int, length: int, n: int = 8, seed: int = 0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    u = torch.randn(b, d, length, device="cuda", generator=g)
    delta = torch.randn(b, d, length, device="cuda", generator=g) * 0.5
    A = -torch.exp(torch.randn(d, n, device="cuda", generator=g) * 0.5 + torch.log(torch.arange(1, n + 1, device="cuda")))
    B = torch.randn(b, 1, n, length, device="cuda", generator=g)
    C = torch.randn(b, 1, n, length, device="cuda", generator=g)
    D = torch.randn(d, device="cuda", generator=g)
    bias = torch.randn(d, device="cuda", generator=g) * 0.5 - 3.0
    return u, delta, A, B, C, D, bias


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("gpu_parity needs a CUDA GPU")
    backends = [b for b in ("torch", "triton", "mamba") if b in scan.available_backends("cuda")]
    print(f"# {torch.cuda.get_device_name()}; backends: {', '.join(backends)}")
    print("\n| d | l | " + " | ".join(f"{b} rel. err" for b in backends) + " |")
    print("|---|---|" + "---|" * len(backends))
    worst = {b: 0.0 for b in backends}
    for d, length in SHAPES:
        args = scan_inputs(1, d, length)
        ref = scan.selective_scan(*(a.double() for a in args), backend="torch")
        errs = []
        for b in backends:
            out = scan.selective_scan(*args, backend=b).double()
            err = float((out - ref).norm() / ref.norm())
            worst[b] = max(worst[b], err)
            errs.append(f"{err:.2e}")
        print(f"| {d} | {length} | " + " | ".join(errs) + " |", flush=True)

    torch.manual_seed(0)
    for name in ("DGNO_BBBC006_w1_Face", "DGNO_BBBC006_w1_Cell"):
        net = DGNO(**get_model_info(name).network_g)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.02 * torch.randn_like(p))
        net = net.cuda().eval()
        for size in (256, 512):
            x = torch.rand(2, 1, size, size, device="cuda")
            outs, routes = {}, {}
            for b in backends:
                chosen = []
                hooks = [m.route.register_forward_hook(lambda m, i, o: chosen.append(o.argmax(-1)))
                         for m in net.modules() if hasattr(m, "route")]
                with torch.inference_mode(), scan.use_backend(b):
                    outs[b] = net(x)[-1].double()
                for h in hooks:
                    h.remove()
                routes[b] = chosen
            ref_b = "mamba" if "mamba" in backends else "torch"
            for b in backends:
                if b == ref_b:
                    continue
                same_routes = all(torch.equal(r1, r2) for r1, r2 in zip(routes[b], routes[ref_b]))
                err = float((outs[b] - outs[ref_b]).norm() / outs[ref_b].norm())
                print(f"{name} 2x{size}: {b} vs {ref_b}: output rel. L2 {err:.2e}, routing identical: {same_routes}")
    print("\nworst scan error per backend:", {b: f"{e:.2e}" for b, e in worst.items()})


if __name__ == "__main__":
    main()
