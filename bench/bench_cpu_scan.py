"""CPU speed of the pure-PyTorch selective scan: the current backend against its first version.

Prints one row per shape: old ms, new ms (medians of interleaved runs), speed-up, and the relative
L2 error of each float32 result against the new backend run in float64 (which the tests hold to
< 1e-12 of the sequential reference), computed without the D u skip term, which would hide scan
errors. Inputs have the statistics of DGNO's scans at initialisation ("init") or wider deltas and
|A| ("heavy", many channels too fast for the factorised form). With ``--forward`` it also times a
full-size DGNO forward (``DGNO_BBBC006_w1_Face``, random weights, inference mode) with each scan.

    python bench/bench_cpu_scan.py [--threads 2] [--repeats 5] [--forward [--forward-only]] [--sizes 256 512]

Timings on a shared machine are noisy: old and new always run alternately in the same process.
When other processes keep the cores busy, every OpenMP parallel region of torch can wait milliseconds
for a descheduled worker under the default wait policy, so timings then count parallel regions
rather than work; ``OMP_WAIT_POLICY=PASSIVE`` (set before Python starts) avoids that.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable

import torch

from napari_dgno.model import scan as scan_dispatch
from napari_dgno.model.scan_reference import compute_dtype, prepare_delta
from napari_dgno.model.scan_torch import selective_scan_torch

# (b, d, l) of DGNO's scans: level 1 of a 256x256 tile, of a 512x512 tile, and deeper levels.
SHAPES = [(1, 96, 65536), (1, 96, 262144), (1, 192, 16384), (1, 384, 4096), (1, 768, 1024), (3, 96, 16384)]


def _old_default_chunk(length: int) -> int:
    if length <= 16:
        return max(length, 1)
    return int(min(1024, max(16, 2 ** round(math.log2(math.sqrt(length))))))


def old_selective_scan_torch(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, chunk=None):
    """The first ``scan_torch`` (three-pass chunked scan), kept verbatim as the baseline."""
    dtype = compute_dtype(u, delta, A, B, C)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    delta = prepare_delta(delta, delta_bias, delta_softplus)
    b, d, length = u.shape
    n = A.shape[1]
    if length == 0:
        return u.clone()
    steps = chunk or _old_default_chunk(length)
    pad = (-length) % steps
    x = delta * u
    Bm, Cm = B[:, 0], C[:, 0]
    if pad:
        delta, x = (torch.nn.functional.pad(t, (0, pad)) for t in (delta, x))
        Bm, Cm = (torch.nn.functional.pad(t, (0, pad)) for t in (Bm, Cm))
    nc = (length + pad) // steps
    dt_t = delta.view(b, d, nc, steps).permute(3, 0, 2, 1).contiguous()
    x_t = x.view(b, d, nc, steps).permute(3, 0, 2, 1).contiguous()
    B_t = Bm.view(b, n, nc, steps).permute(3, 0, 2, 1).unsqueeze(3)
    C_t = Cm.view(b, n, nc, steps).permute(3, 0, 2, 1).unsqueeze(4).contiguous()
    A_ = A.view(1, 1, d, n)
    differentiable = torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C))
    h = u.new_zeros(b, nc, d, n)
    ys = []
    for t in range(steps):
        decay = torch.exp(dt_t[t].unsqueeze(-1) * A_)
        inp = x_t[t].unsqueeze(-1) * B_t[t]
        if differentiable:
            h = decay * h + inp
        else:
            h.mul_(decay).add_(inp)
        ys.append(torch.matmul(h, C_t[t]).squeeze(-1))
    y = torch.stack(ys, dim=0)
    if nc > 1:
        chunk_decay = torch.exp(dt_t.sum(0).unsqueeze(-1) * A_)
        state = u.new_zeros(b, d, n)
        incoming = [state]
        for c in range(nc - 1):
            state = chunk_decay[:, c] * state + h[:, c]
            incoming.append(state)
        s_in = torch.stack(incoming, dim=1)
        cum = dt_t.cumsum(0)
        c_t = C_t.squeeze(-1)
        for k in range(n):
            y = y + torch.exp(cum * A[:, k]) * s_in[..., k] * c_t[..., k, None]
    y = y.permute(1, 3, 2, 0).reshape(b, d, nc * steps)[:, :, :length]
    if D is not None:
        y = y + u * D.to(dtype)[:, None]
    return y


def dgno_like_inputs(b: int, d: int, length: int, heavy: bool = False, seed: int = 0):
    """Inputs with the statistics of DGNO's scans at initialisation (measured on a real forward).

    ``heavy`` widens delta and A (delta ~ 0.1..3, |A| up to 16), as a trained model may have, so
    that many chunks take the stepwise fallback.
    """
    g = torch.Generator().manual_seed(seed)
    n = 8
    u = 0.3 * torch.randn(b, d, length, generator=g)
    delta = 0.1 * torch.randn(b, d, length, generator=g)
    dt = torch.exp(torch.rand(d, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    bias = dt + torch.log(-torch.expm1(-dt))
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)
    if heavy:
        bias = torch.randn(d, generator=g)
        delta = delta * 5
        A = A * 2
    B = 0.15 * torch.randn(b, 1, n, length, generator=g)
    C = 0.15 * torch.randn(b, 1, n, length, generator=g)
    D = torch.ones(d)
    return u, delta, A, B, C, D, bias


def rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.double() - ref.double()).norm() / ref.double().norm())


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, run alternately ``repeats`` times after one warm-up."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_scans(repeats: int, shapes, heavy: bool) -> None:
    print(f"\n{'shape (b, d, l)':<20} {'inputs':<7} {'old ms':>9} {'new ms':>9} {'speed-up':>9} "
          f"{'old rel':>9} {'new rel':>9}")
    for b, d, length in shapes:
        args = dgno_like_inputs(b, d, length, heavy)
        with torch.inference_mode():
            t = interleaved({"old": lambda: old_selective_scan_torch(*args),
                             "new": lambda: selective_scan_torch(*args)}, repeats)
            no_skip = args[:5] + (None,) + args[6:]  # D u would dominate y and hide scan errors
            truth = selective_scan_torch(*(a.double() if a is not None else None for a in no_skip))
            e_old = rel(old_selective_scan_torch(*no_skip), truth)
            e_new = rel(selective_scan_torch(*no_skip), truth)
        print(f"{str((b, d, length)):<20} {'heavy' if heavy else 'init':<7} {t['old'] * 1e3:9.1f} "
              f"{t['new'] * 1e3:9.1f} {t['old'] / t['new']:8.1f}x {e_old:9.1e} {e_new:9.1e}")


def bench_forward(repeats: int, sizes) -> None:
    import napari_dgno
    import napari_dgno.registry

    cfg = napari_dgno.registry.get_model_info("DGNO_BBBC006_w1_Face").network_g
    torch.manual_seed(0)
    net = napari_dgno.DGNO(**cfg).eval()
    impl = scan_dispatch._IMPLEMENTATIONS

    def forward_with(fn, x):
        def run():
            saved = impl["torch"]
            impl["torch"] = fn
            try:
                with scan_dispatch.use_backend("torch"), torch.inference_mode():
                    return net(x)[-1]
            finally:
                impl["torch"] = saved
        return run

    print(f"\n{'DGNO forward':<20} {'old s':>9} {'new s':>9} {'speed-up':>9} {'max |diff|':>11}")
    for size in sizes:
        x = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(size))
        old, new = forward_with(old_selective_scan_torch, x), forward_with(selective_scan_torch, x)
        t = interleaved({"old": old, "new": new}, repeats)
        diff = float((old() - new()).abs().max())
        print(f"{f'{size}x{size}':<20} {t['old']:9.2f} {t['new']:9.2f} {t['old'] / t['new']:8.1f}x {diff:11.1e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--forward", action="store_true", help="also time full DGNO forwards")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="tile sizes for --forward")
    p.add_argument("--no-heavy", action="store_true", help="skip the large-delta inputs")
    p.add_argument("--forward-only", action="store_true", help="skip the scan tables")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.backends.cpu.get_cpu_capability()
    policy = os.environ.get("OMP_WAIT_POLICY", "default")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability {cpu}, "
          f"OMP_WAIT_POLICY {policy}")
    if not args.forward_only:
        bench_scans(args.repeats, SHAPES, heavy=False)
        if not args.no_heavy:
            bench_scans(args.repeats, SHAPES[:1] + SHAPES[2:4], heavy=True)
    if args.forward or args.forward_only:
        bench_forward(max(1, args.repeats // 2), args.sizes)


if __name__ == "__main__":
    main()
