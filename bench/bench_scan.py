"""Selective-scan backends on one GPU at DGNO's shapes: torch, triton and mamba-ssm's CUDA kernel.

For every shape (level 1 of a 256x256 tile and the three deeper levels, level 1 of 512x512 and
1024x1024 tiles; batch 1 and 4; n = 8) it times the forward with ``triton.testing.do_bench``
(median, L2 flushed between runs), the forward replayed from a CUDA graph (GPU time without Python
launch overhead; triton and mamba) and, for the 256x256 levels, forward + backward. It prints the
relative L2 error against a float64 reference (the torch backend in float64 on the GPU, first batch
element), the effective bandwidth (bytes of u, delta, B, C read once and y written once, over the
time) and the ratios triton / mamba.

    python bench/bench_scan.py [--out results.md] [--backends torch triton mamba] [--quick]
    python bench/bench_scan.py --check      # accuracy checks of the triton backend (about 30 s)
    python bench/bench_scan.py --sweep      # chunked vs single-launch configs per shape (~1-2 min)
    python bench/bench_scan.py --layouts    # chunked tilings on channel- and token-major inputs (~3 min)

``--sweep`` times the forward (eager with ``do_bench``, and replayed from a CUDA graph) of several
chunked and single-launch configs and mamba-ssm at DGNO's shapes (batch 1 and 4), checks each result
against float64 (rel L2 < 1e-5), and prints a markdown table, the best config per shape and the
single-launch length threshold the timings suggest (``SINGLE_*`` constants in scan_triton.py).
``--layouts`` times tilings of the chunked forward on the network's channel-major float32 inputs and
on token-major bf16 ones (u and delta stored (b, l, d), B a slice of the projection's output: what
a network that kept its tokens channels-last would pass), against today's default config, at
DGNO's four levels of a 512 tile and level 1 of 256 and 1024 tiles.
``--out PATH`` also writes the table (markdown for .md, CSV for .csv, both for any other name).
``--dry-run`` (with ``TRITON_INTERPRET=1``, no GPU) runs the same code on the CPU at tiny sizes, to
test this script itself.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import importlib.metadata
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_dgno.model.scan_mamba import mamba_available, selective_scan_mamba  # noqa: E402
from napari_dgno.model.scan_torch import selective_scan_torch  # noqa: E402

N_STATE = 8
DEVICE = "cuda"
DRY_RUN = False
# (b, d, l, label): DGNO's four levels of a 256x256 tile, and level 1 of 512x512 / 1024x1024 tiles.
LEVELS = [(96, 65536, "256 L1"), (192, 16384, "256 L2"), (384, 4096, "256 L3"), (768, 1024, "256 L4"),
          (96, 262144, "512 L1"), (96, 1048576, "1024 L1")]
TRAIN_LABELS = {"256 L1", "256 L2", "256 L3", "256 L4"}


def levels() -> list[tuple[int, int, str]]:
    """LEVELS, or for --dry-run the same levels shrunk to interpreter-sized inputs."""
    if not DRY_RUN:
        return LEVELS
    return [(max(1, d // 16), max(7, length // 2048) + 1, label) for d, length, label in LEVELS]


def make_inputs(b: int, d: int, length: int, seed: int = 0, dtype=torch.float32, bias_shift: float = 0.0):
    """DGNO-like inputs on the GPU: A = -exp(.), softplus(delta + bias) mostly around 0.1 to 1."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)

    def r(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, device=DEVICE, dtype=torch.float32)

    u, delta = r(b, d, length), r(b, d, length, scale=0.5)
    A = -torch.exp(r(d, N_STATE, scale=0.5))
    B, C = r(b, 1, N_STATE, length), r(b, 1, N_STATE, length)
    D, bias = r(d), r(d, scale=0.5) + bias_shift
    return [t.to(dtype) for t in (u, delta, A, B, C, D, bias)]


def reference(args, batch: slice = slice(0, 1)) -> torch.Tensor:
    """Float64 result for the first batch element (the torch backend; < 1e-12 of the sequential one)."""
    u, delta, A, B, C, D, bias = args
    f = torch.float64
    return selective_scan_torch(u[batch].to(f), delta[batch].to(f), A.to(f), B[batch].to(f), C[batch].to(f),
                                D.to(f), bias.to(f))


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.double() - ref).norm() / ref.norm())


def backends(names: list[str]) -> dict[str, Callable]:
    out: dict[str, Callable] = {}
    for name in names:
        if name == "torch":
            out[name] = selective_scan_torch
        elif name == "triton":
            from napari_dgno.model.scan_triton import selective_scan_triton

            out[name] = selective_scan_triton
        elif name == "mamba":
            if mamba_available():
                out[name] = selective_scan_mamba
            else:
                print("mamba_ssm not importable: skipping the mamba backend")
    return out


def bench_ms(fn: Callable, grad_to_none=None, rep: int = 100, warmup: int = 25) -> float:
    if DRY_RUN:  # no CUDA events on the CPU: one timed call is enough to exercise the code
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=warmup, rep=rep, grad_to_none=grad_to_none, return_mode="median"))


def graph_ms(fn: Callable, rep: int = 20) -> float:
    """Median ms of ``fn`` replayed from a CUDA graph: GPU time without Python launch overhead."""
    if DRY_RUN:
        return math.nan
    from triton.testing import do_bench_cudagraph

    try:
        return float(do_bench_cudagraph(fn, rep=rep, return_mode="median"))
    except Exception as e:  # capture can fail for reasons unrelated to the kernels
        print(f"  (CUDA-graph timing failed: {type(e).__name__}: {e})")
        return math.nan


def io_bytes(b: int, d: int, length: int) -> int:
    """u, delta read and y written (float32), B and C read once (shared by all channels)."""
    return 4 * (3 * b * d * length + 2 * b * N_STATE * length)


def run_benchmark(names: list[str], batches: list[int], quick: bool) -> list[dict]:
    fns = backends(names)
    rows = []
    for d, length, label in levels():
        for b in batches:
            args = make_inputs(b, d, length, seed=length + b)
            ref = reference(args)
            row = {"shape": label, "b": b, "d": d, "l": length}
            if "triton" in fns:
                from napari_dgno.model.scan_triton import default_config

                sms = 132 if DRY_RUN else torch.cuda.get_device_properties(0).multi_processor_count
                row["triton_config"] = describe(default_config(b, d, length, sms))
            for name, fn in fns.items():
                if name == "torch" and length * b > 2**20 and quick:
                    continue
                y = fn(*args)
                row[f"{name}_err"] = rel_err(y[:1], ref)
                del y
                ms = bench_ms(lambda: fn(*args), rep=50 if quick else 100)
                row[f"{name}_ms"] = ms
                row[f"{name}_GBs"] = io_bytes(b, d, length) / (ms * 1e-3) / 1e9
                if name != "torch":
                    row[f"{name}_graph_ms"] = graph_ms(lambda: fn(*args))
                if label in TRAIN_LABELS:
                    leaves = [a.detach().clone().requires_grad_() for a in args]
                    gy = torch.randn(b, d, length, device=DEVICE)

                    def step(fn=fn, leaves=leaves, gy=gy):
                        fn(*leaves).backward(gy)

                    row[f"{name}_fwdbwd_ms"] = bench_ms(step, grad_to_none=leaves, rep=50 if quick else 100)
                    del leaves, gy
                if not DRY_RUN:
                    torch.cuda.empty_cache()
            for key in ("ms", "graph_ms", "fwdbwd_ms"):
                if f"triton_{key}" in row and f"mamba_{key}" in row:
                    row[f"triton/mamba_{key}"] = row[f"triton_{key}"] / row[f"mamba_{key}"]
            print(format_row(row), flush=True)
            rows.append(row)
            del args, ref
            if not DRY_RUN:
                torch.cuda.empty_cache()
    return rows


def format_row(row: dict) -> str:
    parts = [f"{row['shape']:8s} b={row['b']:<2d} d={row['d']:<4d} l={row['l']:<8d}"]
    if "triton_config" in row:
        parts.append(f"triton default: {row['triton_config']}")
    for name in ("torch", "triton", "mamba"):
        if f"{name}_ms" in row:
            part = f"{name} {row[f'{name}_ms']:8.3f} ms {row[f'{name}_GBs']:6.0f} GB/s err {row[f'{name}_err']:.1e}"
            if f"{name}_graph_ms" in row:
                part += f" graph {row[f'{name}_graph_ms']:8.3f} ms"
            if f"{name}_fwdbwd_ms" in row:
                part += f" f+b {row[f'{name}_fwdbwd_ms']:8.3f} ms"
            parts.append(part)
    for key, what in (("ms", "fwd"), ("graph_ms", "graph"), ("fwdbwd_ms", "f+b")):
        if f"triton/mamba_{key}" in row:
            parts.append(f"triton/mamba {what} {row[f'triton/mamba_{key}']:.2f}")
    return " | ".join(parts)


def write_results(rows: list[dict], path: Path, header: str) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    targets = {".md": ["md"], ".csv": ["csv"]}.get(path.suffix, ["md", "csv"])
    for kind in targets:
        target = path if path.suffix in (".md", ".csv") else path.with_name(path.name + "." + kind)
        with open(target, "w", newline="") as f:
            if kind == "csv":
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(rows)
            else:
                f.write(header + "\n\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n")
                for row in rows:
                    cells = [_cell(row.get(k, "")) for k in keys]
                    f.write("| " + " | ".join(cells) + " |\n")
        print(f"wrote {target}")


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.2e}" if (v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e5)) else f"{v:.3f}"
    return str(v)


def environment() -> str:
    if DRY_RUN:
        return f"dry run on the CPU (Triton interpreter) | {datetime.date.today()}"

    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "absent"

    return (f"{torch.cuda.get_device_name()} | {datetime.date.today()} | torch {torch.__version__} | "
            f"triton {version('triton')} | mamba_ssm {version('mamba_ssm')}")


# ----------------------------------------------------------------------------------------- checks


def run_checks() -> bool:
    """Accuracy of the triton backend against float64 on the GPU; prints one line per check."""
    from napari_dgno.model.scan_triton import selective_scan_triton

    results: list[tuple[str, bool, str]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        results.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)

    sizes = [(1, 96, 65536), (3, 40, 1), (3, 40, 7), (3, 40, 1000), (3, 40, 4097), (4, 768, 1024)]
    big = (2, 96, 4096) if not DRY_RUN else (2, 6, 40)
    if DRY_RUN:
        sizes = [(1, 6, 65), (3, 5, 1), (3, 5, 7), (2, 5, 100)]
    for b, d, length in sizes:
        args = make_inputs(b, d, length, seed=length)
        out = torch.full((b, d, length), float("nan"), device=DEVICE)
        selective_scan_triton(*args, out=out)
        err = rel_err(out, reference(args, slice(None)))
        check(f"forward b={b} d={d} l={length}, NaN-poisoned out", bool(torch.isfinite(out).all()) and err < 1e-5,
              f"rel err {err:.1e}, all written {bool(torch.isfinite(out).all())}")
    for shift in (-30.0, 30.0):
        u, delta, A, B, C, D, bias = make_inputs(*big, seed=3, bias_shift=shift)
        A = A * torch.logspace(-3, 3, N_STATE, device=DEVICE)
        args = [u, delta, A, B, C, D, bias]
        y = selective_scan_triton(*args)
        err = rel_err(y, reference(args, slice(None)))
        check(f"extreme delta+bias ~ {shift:+.0f}, |A| to 1e3", bool(torch.isfinite(y).all()) and err < 1e-5,
              f"rel err {err:.1e}")
    from napari_dgno.model.scan_triton import ScanConfig

    args = make_inputs(*big, seed=8)
    ref = reference(args, slice(None))
    for bd, tile, warps in SINGLE_TILINGS:
        cfg = ScanConfig(single=True, block_d=bd, tile=tile, num_warps=warps)
        err = rel_err(selective_scan_triton(*args, config=cfg), ref)
        check(f"single launch {describe(cfg)} at {big}", err < 1e-5, f"rel err {err:.1e}")
    low = make_inputs(*big, seed=4, dtype=torch.bfloat16)
    y = selective_scan_triton(*low)
    err = rel_err(y, reference(low, slice(None)))
    check("bf16 inputs, float32 result", y.dtype == torch.float32 and err < 1e-5, f"rel err {err:.1e}")
    u, delta, A, B, C, D, bias = make_inputs(*big, seed=5)
    proj = torch.cat([torch.randn(big[0], 6, big[2], device=DEVICE), B[:, 0], C[:, 0]], dim=1)
    Bs, Cs = proj[:, 6:6 + N_STATE].unsqueeze(1), proj[:, 6 + N_STATE:].unsqueeze(1)
    y = selective_scan_triton(u.transpose(1, 2).contiguous().transpose(1, 2), delta, A, Bs, Cs, D, bias)
    err = rel_err(y, reference([u, delta, A, B, C, D, bias], slice(None)))
    check("strided u, B and C slices of one projection", err < 1e-5, f"rel err {err:.1e}")
    for b, d, length in [big, (1, 40, 1000), (2, 8, 7)] if not DRY_RUN else [big, (2, 3, 7)]:
        args = make_inputs(b, d, length, seed=6 + length)
        ours = [a.clone().requires_grad_() for a in args]
        ref = [a.double().requires_grad_() for a in args]
        gy = torch.randn(b, d, length, device=DEVICE)
        selective_scan_triton(*ours).backward(gy)
        selective_scan_torch(*ref).backward(gy.double())
        errs = {n: rel_err(a.grad, r.grad) for n, a, r in zip(("u", "delta", "A", "B", "C", "D", "bias"), ours, ref)}
        worst = max(errs, key=errs.get)
        check(f"gradients b={b} d={d} l={length}", errs[worst] < 1e-4, f"worst {worst} {errs[worst]:.1e}")
    if mamba_available():
        args = make_inputs(1, 96, 65536, seed=7)
        err = rel_err(selective_scan_triton(*args), selective_scan_mamba(*args).double())
        check("triton vs mamba_ssm at (1, 96, 65536)", err < 1e-5, f"rel diff {err:.1e}")
    failed = [name for name, ok, _ in results if not ok]
    print(f"{len(results) - len(failed)}/{len(results)} checks passed" + (f"; FAILED: {failed}" if failed else ""))
    return not failed


# ------------------------------------------------------------------------------------------ sweep

# The sweep's shapes (d, l), and its single-launch tilings (block_d, tile, num_warps): 4 consecutive
# float32 steps per thread need tile = 128 * num_warps; block_d = 4 spills registers on sm_90.
SWEEP_SHAPES = [(96, 65536), (192, 16384), (384, 4096), (768, 1024), (96, 262144)]
SINGLE_TILINGS = [(1, 512, 4), (2, 512, 4), (1, 256, 2), (1, 1024, 8)]
SWEEP_TOL = 1e-5


def describe(cfg) -> str:
    """A short name for a forward config: ``single bd=1 T=512 w=4`` or ``chunked c=256``."""
    if cfg.single:
        return f"single bd={cfg.block_d} T={cfg.tile} w={cfg.num_warps}"
    return f"chunked c={cfg.chunk}"


def sweep_candidates(b: int, d: int, length: int, sms: int) -> list:
    """Chunked with the rule's chunk, half and double; single launch with SINGLE_TILINGS and the
    rule's own tiling; and the default config (one of those)."""
    from napari_dgno.model.scan_triton import ScanConfig, chunked_config, default_config, single_launch_config

    base = chunked_config(b, d, length, sms)
    chunks = sorted({max(16, base.chunk // 2), base.chunk, min(1024, base.chunk * 2)})
    cands = [dataclasses.replace(base, chunk=c) for c in chunks]
    singles = [single_launch_config(b, d, sms)]
    singles += [ScanConfig(single=True, block_d=bd, tile=t, num_warps=w) for bd, t, w in SINGLE_TILINGS]
    for cfg in [*singles, default_config(b, d, length, sms)]:
        if cfg not in cands:
            cands.append(cfg)
    return cands


def sweep_shapes() -> list[tuple[int, int]]:
    if not DRY_RUN:
        return SWEEP_SHAPES
    return [(d // 96 + 1, max(7, length // 4096) + 2) for d, length in SWEEP_SHAPES]  # interpreter-sized


def run_sweep() -> list[dict]:
    """Forward time (eager and CUDA graph) of chunked and single-launch configs per DGNO shape."""
    from napari_dgno.model.scan_triton import default_config, selective_scan_triton

    sms = 132 if DRY_RUN else torch.cuda.get_device_properties(0).multi_processor_count
    mamba = mamba_available()
    rows = []
    for d, length in sweep_shapes():
        for b in (1, 4):
            args = make_inputs(b, d, length, seed=length + b)
            ref = torch.cat([reference(args, slice(i, i + 1)) for i in range(b)])
            default = default_config(b, d, length, sms)
            cands = [(describe(cfg), cfg) for cfg in sweep_candidates(b, d, length, sms)]
            if mamba:
                cands.append(("mamba", None))
            for name, cfg in cands:
                fn = _forward_fn(selective_scan_triton, args, cfg)
                err = rel_err(fn(), ref)
                rows.append({"d": d, "l": length, "b": b, "config": name, "default": cfg == default,
                             "eager_ms": bench_ms(fn, rep=15, warmup=5), "graph_ms": graph_ms(fn, rep=10),
                             "rel_err": err, "ok": err < SWEEP_TOL})
            print(_best_line(rows, d, length, b), flush=True)
            del args, ref
            if not DRY_RUN:
                torch.cuda.empty_cache()
    print()
    print(sweep_table(rows))
    print()
    for line in sweep_summary(rows):
        print(line)
    return rows


def _forward_fn(triton_scan: Callable, args: list, cfg) -> Callable[[], torch.Tensor]:
    """The timed call: the triton backend with ``cfg``, or mamba-ssm for ``cfg=None``."""
    if cfg is None:
        return lambda: selective_scan_mamba(*args)
    return lambda: triton_scan(*args, config=cfg)


def _best(rows: list[dict], key: str, family: str | None = None) -> dict | None:
    """The fastest correct row for ``key`` (eager_ms / graph_ms), optionally of one family."""
    ok = [r for r in rows if r["ok"] and not math.isnan(r[key])
          and (family is None or r["config"].startswith(family))]
    return min(ok, key=lambda r: r[key]) if ok else None


def _best_line(rows: list[dict], d: int, length: int, b: int) -> str:
    mine = [r for r in rows if (r["d"], r["l"], r["b"]) == (d, length, b)]
    default = next(r for r in mine if r["default"])
    parts = [f"d={d:<4d} l={length:<7d} b={b}: default {default['config']} {default['eager_ms']:.3f} ms"]
    for key in ("eager_ms", "graph_ms"):
        best = _best(mine, key)
        if best is not None:
            parts.append(f"best {key[:-3]} {best['config']} {best[key]:.3f} ms")
    bad = [r["config"] for r in mine if not r["ok"]]
    if bad:
        parts.append(f"FAILED accuracy: {bad}")
    return " | ".join(parts)


def sweep_table(rows: list[dict]) -> str:
    """Markdown: one line per (shape, batch, candidate), the default marked with *."""
    lines = ["| d | l | b | config | eager ms | graph ms | rel err |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        name = r["config"] + (" *" if r["default"] else "")
        err = f"{r['rel_err']:.1e}" + ("" if r["ok"] else " FAIL")
        lines.append(f"| {r['d']} | {r['l']} | {r['b']} | {name} | {r['eager_ms']:.3f} | {r['graph_ms']:.3f} | {err} |")
    return "\n".join(lines)


def sweep_summary(rows: list[dict]) -> list[str]:
    """Best config per shape, and the single-launch length threshold the timings suggest."""
    lines = ["| d | l | b | best eager | best graph | default | default / best eager |", "|---|---|---|---|---|---|---|"]
    wins = {"eager_ms": {}, "graph_ms": {}}  # length -> [single beats chunked, per shape and batch]
    for key in dict.fromkeys((r["d"], r["l"], r["b"]) for r in rows):
        mine = [r for r in rows if (r["d"], r["l"], r["b"]) == key]
        best = {k: _best(mine, k) for k in ("eager_ms", "graph_ms")}
        default = next(r for r in mine if r["default"])
        cells = [f"{b['config']} {b[k]:.3f}" if b else "-" for k, b in best.items()]
        ratio = default["eager_ms"] / best["eager_ms"]["eager_ms"] if best["eager_ms"] else math.nan
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {cells[0]} | {cells[1]} | {default['config']} | {ratio:.2f} |")
        for k, by_length in wins.items():
            single, chunked = _best(mine, k, "single"), _best(mine, k, "chunked")
            if single and chunked:
                by_length.setdefault(key[1], []).append(single[k] < chunked[k])
    rule = []
    for k, by_length in wins.items():
        if not by_length:
            rule.append(f"{k[:-3]}: no timings")
            continue
        single_at = [length for length, won in by_length.items() if all(won)]
        chunked_at = [length for length, won in by_length.items() if not any(won)]
        rule.append(f"{k[:-3]}: single wins at every batch for l in {sorted(single_at)}, chunked for l in "
                    f"{sorted(chunked_at)} -> SINGLE_MAX_LENGTH ~ {max(single_at) if single_at else 0}")
    from napari_dgno.model import scan_triton as st

    lines.append("")
    lines.append("suggested rule: " + "; ".join(rule) + f" (now: single for l <= {st.SINGLE_MAX_LENGTH}, or any l "
                 f"with >= {st.SINGLE_MIN_PROGRAMS_PER_SM} programs per SM)")
    return lines


# ------------------------------------------------------------------------------ token-major sweep

# (d, l, label) of the network's four levels at 512 tiles, level 1 at 256 and 1024.
NETWORK_SHAPES = [(96 * 2**k, (512 >> k) ** 2, f"512 L{k + 1}") for k in range(4)]
NETWORK_SHAPES += [(96, 256**2, "256 L1"), (96, 1024**2, "1024 L1")]
# (channels per program, warps, chunk factor vs the rule, width, stages)
LAYOUT_TILINGS = [(32, 1, 1, 4, 1), (32, 1, 1, 4, 2), (32, 1, 1, 4, 3), (32, 1, 0.5, 4, 3), (32, 1, 2, 4, 3),
                  (32, 1, 1, 1, 2), (32, 1, 1, 2, 2), (64, 2, 1, 4, 2)]


def token_major_inputs(b: int, d: int, length: int, dtype: torch.dtype, seed: int = 0) -> list:
    """make_inputs' values laid out as a token-major network would pass them: u and delta stored
    (b, l, d) in ``dtype``, B a slice of one (b, l, r + 2n) projection output, C (float32) token-major."""
    u, delta, A, B, C, D, bias = make_inputs(b, d, length, seed=seed)
    rank = math.ceil(d / 16)
    xdbl = torch.zeros(b, length, rank + 2 * N_STATE, device=DEVICE, dtype=dtype)
    xdbl[:, :, rank:rank + N_STATE] = B[:, 0].transpose(1, 2).to(dtype)
    Bs = xdbl[:, :, rank:rank + N_STATE].transpose(1, 2).unsqueeze(1)
    Cs = C[:, 0].transpose(1, 2).contiguous().transpose(1, 2).unsqueeze(1)

    def tm(t):
        return t.to(dtype).transpose(1, 2).contiguous().transpose(1, 2)
    return [tm(u), tm(delta), A, Bs, Cs, D, bias]


def run_layout_sweep() -> list[dict]:
    """Tilings of the chunked forward on the network's channel-major float32 inputs and on token-major
    bf16 ones, vs today's default config on the former."""
    from napari_dgno.model.scan_triton import ScanConfig, chunked_config, default_config, selective_scan_triton

    sms = 132 if DRY_RUN else torch.cuda.get_device_properties(0).multi_processor_count
    shapes = NETWORK_SHAPES if not DRY_RUN else [(d // 96 + 1, max(7, length // 8192) + 2, lab)
                                                  for d, length, lab in NETWORK_SHAPES[:2]]
    rows = []
    for d, length, label in shapes:
        for b in (4, 1) if label == "512 L1" else (4,):
            base_args = make_inputs(b, d, length, seed=length + b)
            default = default_config(b, d, length, sms)
            rule = chunked_config(b, d, length, sms)
            best_line = []
            for layout, args in (("fp32 channel-major", base_args),
                                 ("bf16 token-major", token_major_inputs(b, d, length, torch.bfloat16, length + b))):
                ref = torch.cat([reference([t.float() for t in args], slice(i, i + 1)) for i in range(b)])
                cands = [("default " + describe(default), default)] if layout.startswith("fp32") else []
                for bd, warps, factor, width, stages in LAYOUT_TILINGS:
                    chunk = max(width, int(min(4096, max(16, rule.chunk * factor))))
                    cfg = ScanConfig(block_d=bd, chunk=chunk, num_warps=warps, width=width, stages=stages)
                    cands.append((f"chunked bd={bd} c={chunk} w={width} s={stages}", cfg))
                for name, cfg in cands:
                    fn = _forward_fn(selective_scan_triton, args, cfg)
                    err = rel_err(fn(), ref)
                    rows.append({"shape": label, "b": b, "inputs": layout, "config": name,
                                 "graph_ms": graph_ms(fn, rep=10), "rel_err": err})
                mine = [r for r in rows if (r["shape"], r["b"], r["inputs"]) == (label, b, layout)]
                best = min(mine, key=lambda r: r["graph_ms"] if r["graph_ms"] == r["graph_ms"] else math.inf)
                best_line.append(f"{layout}: {best['config']} {best['graph_ms']:.3f}")
                del args, ref
            base = next(r for r in rows if (r["shape"], r["b"]) == (label, b) and r["config"].startswith("default"))
            print(f"{label:8s} b={b} default {base['graph_ms']:.3f} ms | best " + " | ".join(best_line), flush=True)
            for r in rows:
                if (r["shape"], r["b"]) == (label, b):
                    r["vs_default"] = r["graph_ms"] / base["graph_ms"]  # NaN without CUDA timings
            del base_args
            if not DRY_RUN:
                torch.cuda.empty_cache()
    print()
    print("| shape | b | inputs | config | graph ms | vs default | rel err |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} | {r['b']} | {r['inputs']} | {r['config']} | {r['graph_ms']:.3f} | "
              f"{r['vs_default']:.2f} | {r['rel_err']:.1e} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["torch", "triton", "mamba"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions; skip torch on the largest inputs")
    parser.add_argument("--check", action="store_true", help="run the accuracy checks of the triton backend")
    parser.add_argument("--sweep", action="store_true", help="time several triton tile configurations")
    parser.add_argument("--layouts", action="store_true", help="chunked tilings on channel- and token-major inputs")
    parser.add_argument("--out", type=Path, help="also write the results to this file (.md, .csv, or both)")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (needs TRITON_INTERPRET=1)")
    opts = parser.parse_args()
    if opts.dry_run:
        global DEVICE, DRY_RUN
        DEVICE, DRY_RUN = "cpu", True
    elif not torch.cuda.is_available():
        print("bench_scan.py needs a CUDA GPU")
        return 2
    header = environment()
    print(header, flush=True)
    t0 = time.perf_counter()
    if opts.check:
        ok = run_checks()
        print(f"checks took {time.perf_counter() - t0:.0f} s")
        return 0 if ok else 1
    if opts.layouts:
        run_layout_sweep()
        print(f"took {time.perf_counter() - t0:.0f} s")
        return 0
    rows = run_sweep() if opts.sweep else run_benchmark(opts.backends, opts.batches, opts.quick)
    print(f"took {time.perf_counter() - t0:.0f} s")
    if opts.out:
        write_results(rows, opts.out, header)
    return 0


if __name__ == "__main__":
    sys.exit(main())
