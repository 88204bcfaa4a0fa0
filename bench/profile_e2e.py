"""Where DGNO's GPU time goes, and what each inference knob buys, at 4 x 512 x 512 on one GPU.

Each named knob set is measured on a fresh copy of the same network (compiled again where it
compiles; Inductor's on-disk cache makes repeats cheap), replayed from a CUDA graph, against the
float32 eager output. With ``--profile`` the best float32 and bf16 sets are also broken down per
network stage (CUDA events around the top-level modules, compiled blocks, no graph) and per kernel
(torch profiler, top kernels by GPU time).

    python bench/profile_e2e.py [--sets NAME ...] [--profile] [--size 512 --batch 4]

Knob sets: ``fp32`` eager + graph with the fused forms (:mod:`napari_dgno.model.fusible`), ``-u``
without them; ``fp32-c`` compiled + graph as ``accelerate`` compiles on CUDA (the whole network),
``-cb`` the blocks alone, ``-c0`` without the fused forms; ``-cd``/``-af``/``-ma``: Inductor's
coordinate-descent tuning, aggressive fusion, max-autotune; ``+mm``:
Inductor's 1x1 convolutions as matrix products; ``tf32``: TF32 matmuls too (torch's default lets
cuDNN convolutions use TF32 already, matmuls not); ``+cl``: channels-last weights and input;
``-t``: the defaults before this session's kernels (depthwise-gate ``tiles`` kernel, GDFN width not
aligned, no DG operator kernels), ``-nopad``: the ``rows`` kernel without it, ``-tpad``: ``tiles`` with it;
``-nodg``: without the DG operator kernels (:mod:`napari_dgno.model.dg_fused`);
``-nobench``: cuDNN's algorithm search off (torch's default, and the engine's: it leaves the
process-wide flag alone); ``bf16...``: the same under bf16 autocast. All other sets search (as
``bench_e2e.py`` does).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_e2e import FLOP_PER_PIXEL, build, make_input, time_cuda  # noqa: E402

from napari_dgno.model import dg_fused, fusible  # noqa: E402
from napari_dgno.model.fast import accelerate  # noqa: E402

SETS = {
    "fp32-u": {"dtype": "fp32", "mode": "graphs", "fused": False},
    "fp32": {"dtype": "fp32", "mode": "graphs"},
    "fp32-nobench": {"dtype": "fp32", "mode": "graphs", "cudnn_benchmark": False},
    "fp32-u-nobench": {"dtype": "fp32", "mode": "graphs", "fused": False, "cudnn_benchmark": False},
    "fp32-c0": {"dtype": "fp32", "mode": "compile+graphs", "fused": False},
    "fp32-c": {"dtype": "fp32", "mode": "compile+graphs"},
    "fp32-c+mm": {"dtype": "fp32", "mode": "compile+graphs", "conv_1x1_as_mm": True},
    "tf32-c": {"dtype": "fp32", "mode": "compile+graphs", "tf32": True},
    "tf32-c+mm": {"dtype": "fp32", "mode": "compile+graphs", "conv_1x1_as_mm": True, "tf32": True},
    "bf16-u": {"dtype": "bf16", "mode": "graphs", "fused": False},
    "bf16": {"dtype": "bf16", "mode": "graphs"},
    "bf16-nobench": {"dtype": "bf16", "mode": "graphs", "cudnn_benchmark": False},
    "bf16-c0": {"dtype": "bf16", "mode": "compile+graphs", "fused": False},
    "bf16-c": {"dtype": "bf16", "mode": "compile+graphs"},
    "bf16-c+mm": {"dtype": "bf16", "mode": "compile+graphs", "conv_1x1_as_mm": True},
    "bf16-c+mm+cl": {"dtype": "bf16", "mode": "compile+graphs", "conv_1x1_as_mm": True, "channels_last": True},
    # The depthwise-gate kernel before the rows kernel and the GDFN padding (previous defaults), and each alone.
    "fp32-t": {"dtype": "fp32", "mode": "graphs", "cl_kernel": "tiles", "align": 1, "dg": False},
    "fp32-c-t": {"dtype": "fp32", "mode": "compile+graphs", "cl_kernel": "tiles", "align": 1, "dg": False},
    "fp32-c-nopad": {"dtype": "fp32", "mode": "compile+graphs", "align": 1},
    "bf16-t": {"dtype": "bf16", "mode": "graphs", "cl_kernel": "tiles", "align": 1, "dg": False},
    "bf16-c-t": {"dtype": "bf16", "mode": "compile+graphs", "cl_kernel": "tiles", "align": 1, "dg": False},
    "bf16-c-nopad": {"dtype": "bf16", "mode": "compile+graphs", "align": 1},
    "bf16-c-tpad": {"dtype": "bf16", "mode": "compile+graphs", "cl_kernel": "tiles"},
    # Without the DG operator kernels (napari_dgno.model.dg_fused), the rest as the defaults.
    "fp32-c-nodg": {"dtype": "fp32", "mode": "compile+graphs", "dg": False},
    "bf16-c-nodg": {"dtype": "bf16", "mode": "compile+graphs", "dg": False},
    "fp32-nodg": {"dtype": "fp32", "mode": "graphs", "dg": False},
    # "-c" sets compile what accelerate() compiles on CUDA (the whole network, since the seventh pass);
    # "-cb": the blocks alone (the default before). Inductor's own tuning knobs on top.
    "fp32-cb": {"dtype": "fp32", "mode": "compile+graphs", "scope": "blocks"},
    "bf16-cb": {"dtype": "bf16", "mode": "compile+graphs", "scope": "blocks"},
    "bf16-c+cl": {"dtype": "bf16", "mode": "compile+graphs", "channels_last": True},
    "fp32-c+cl": {"dtype": "fp32", "mode": "compile+graphs", "channels_last": True},
    "bf16-c-ma": {"dtype": "bf16", "mode": "compile+graphs", "compile_options": {"mode": "max-autotune-no-cudagraphs"}},
    "bf16-c-cd": {"dtype": "bf16", "mode": "compile+graphs", "inductor": {"coordinate_descent_tuning": True}},
    "fp32-c-cd": {"dtype": "fp32", "mode": "compile+graphs", "inductor": {"coordinate_descent_tuning": True}},
    "bf16-cb-cd": {"dtype": "bf16", "mode": "compile+graphs", "scope": "blocks",
                   "inductor": {"coordinate_descent_tuning": True}},
    "bf16-cb-af": {"dtype": "bf16", "mode": "compile+graphs", "scope": "blocks",
                   "inductor": {"aggressive_fusion": True}},
}
STAGES = ("SCM2", "SCM1", "patch_embed", "encoder_level1", "down1_2", "FAM2", "encoder_level2", "down2_3", "FAM1",
          "encoder_level3", "down3_4", "latent", "up4_3", "reduce_chan_level3", "conv000", "conv111",
          "up3_2", "reduce_chan_level2", "conv00", "conv11", "up2_1", "reduce_chan_level1", "conv0", "conv1", "output")


@contextlib.contextmanager
def knobs(spec: dict):
    """The knobs of a set; the rest at torch's defaults (cuDNN convolutions may use TF32, matmuls not)."""
    import torch._inductor.config as inductor

    saved = (torch.backends.cudnn.benchmark, fusible.ENABLED, inductor.conv_1x1_as_mm,
             torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    saved_fused = dict(fusible.CL_KERNEL), fusible.HIDDEN_ALIGN, dg_fused.ENABLED
    dg_fused.ENABLED = spec.get("dg", True)
    if "cl_kernel" in spec:
        fusible.CL_KERNEL.update(dict.fromkeys(fusible.CL_KERNEL, spec["cl_kernel"]))
    fusible.HIDDEN_ALIGN = spec.get("align", fusible.HIDDEN_ALIGN)
    saved_inductor = {key: getattr(inductor, key) for key in spec.get("inductor", {})}
    for key, value in spec.get("inductor", {}).items():
        setattr(inductor, key, value)
    torch.backends.cudnn.benchmark = spec.get("cudnn_benchmark", True)
    fusible.ENABLED = spec.get("fused", True)
    inductor.conv_1x1_as_mm = spec.get("conv_1x1_as_mm", False)
    torch.backends.cuda.matmul.allow_tf32 = spec.get("tf32", False)
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        (torch.backends.cudnn.benchmark, fusible.ENABLED, inductor.conv_1x1_as_mm,
         torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) = saved
        fusible.CL_KERNEL.update(saved_fused[0])
        fusible.HIDDEN_ALIGN = saved_fused[1]
        dg_fused.ENABLED = saved_fused[2]
        for key, value in saved_inductor.items():
            setattr(inductor, key, value)


def prepare(net: nn.Module, spec: dict, x: torch.Tensor, mode: str | None = None, scope: str | None = None):
    """A fresh accelerated copy of ``net`` and its input for ``spec`` (``mode``/``scope`` override the set's)."""
    torch._dynamo.reset()
    model = copy.deepcopy(net)
    if spec.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return accelerate(model, "cuda", mode or spec["mode"], compile_options=spec.get("compile_options"),
                      compile_scope=scope or spec.get("scope")), x


def prepare_to_profile(net: nn.Module, spec: dict, x: torch.Tensor):
    """As :func:`prepare`, without CUDA graphs and with only the blocks compiled, so that timers and
    profiler labels wrapped around the top-level stages run outside the compiled code."""
    return prepare(net, spec, x, "compile" if "compile" in spec["mode"] else "none", scope="blocks")


def autocast_for(spec: dict):
    return torch.autocast("cuda", dtype=torch.bfloat16) if spec["dtype"] == "bf16" else contextlib.nullcontext()


def measure(name: str, net: nn.Module, x: torch.Tensor, reference: torch.Tensor | None) -> dict:
    spec = SETS[name]
    with knobs(spec):
        t0 = time.perf_counter()
        model, xin = prepare(net, spec, x)

        def step():
            with torch.inference_mode(), autocast_for(spec):
                return model(xin)[-1]

        out = step().float()
        torch.cuda.synchronize()
        first = time.perf_counter() - t0
        ms = time_cuda(step, warmup=2, repeat=15)
        if hasattr(model, "release"):
            model.release()
    row = dict(set=name, ms=ms, mpx_s=x.numel() / (ms * 1e-3) / 1e6, first_s=first)
    if reference is not None:
        row["rel_l2"] = float((out - reference).norm() / reference.norm())
        row["max_abs"] = float((out - reference).abs().max())
    return row


class Timed(nn.Module):
    """Records CUDA events around ``inner`` (one bench-only wrapper per top-level stage)."""

    def __init__(self, inner: nn.Module, log: list):
        super().__init__()
        self.inner, self.log = inner, log

    def forward(self, *args):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = self.inner(*args)
        end.record()
        self.log.append((self, start, end))
        return out


def breakdown(name: str, net: nn.Module, x: torch.Tensor, kernels: int) -> None:
    """Per-stage GPU time (compiled blocks, no graph) and the top kernels, for knob set ``name``."""
    from torch.profiler import ProfilerActivity, profile

    spec = SETS[name]
    with knobs(spec):
        model, xin = prepare_to_profile(net, spec, x)
        log: list = []
        names = {}
        for stage in STAGES:
            wrapper = Timed(getattr(model, stage), log)
            names[wrapper] = stage
            setattr(model, stage, wrapper)
        with torch.inference_mode(), autocast_for(spec):
            for _ in range(3):
                model(xin)
            torch.cuda.synchronize()
            totals = dict.fromkeys(STAGES, 0.0)
            rounds = 5
            log.clear()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(rounds):
                model(xin)
            end.record()
            torch.cuda.synchronize()
            whole = start.elapsed_time(end) / rounds
            for wrapper, s, e in log:
                totals[names[wrapper]] += s.elapsed_time(e) / rounds
            print(f"\n## stages, {name} (compiled blocks, no graph), whole forward {whole:.2f} ms")
            print("| stage | ms | share |\n|---|---|---|")
            for stage, ms in sorted(totals.items(), key=lambda kv: -kv[1]):
                print(f"| {stage} | {ms:.2f} | {100 * ms / whole:.1f}% |")
            print(f"| (between stages) | {whole - sum(totals.values()):.2f} | |")
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                model(xin)
                torch.cuda.synchronize()
        print(f"\n## kernels, {name}")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=kernels, max_name_column_width=90))


LAYOUT_KERNELS = ("nchwToNhwc", "nhwcToNchw")


class Labelled(nn.Module):
    """Names ``inner``'s work in the profiler and notes the memory layout of its first input and output."""

    def __init__(self, inner: nn.Module, label: str, notes: dict):
        super().__init__()
        self.inner, self.label, self.notes = inner, label, notes

    def forward(self, *args):
        with torch.profiler.record_function(self.label):
            out = self.inner(*args)
        if self.label not in self.notes and isinstance(out, torch.Tensor):
            def layout(t: torch.Tensor) -> str:
                if t.dim() != 4:
                    return f"{tuple(t.shape)}"
                cl = t.is_contiguous(memory_format=torch.channels_last)
                return f"{tuple(t.shape)} {'NHWC' if cl else 'NCHW' if t.is_contiguous() else 'strided'}"
            self.notes[self.label] = f"in {layout(args[0])} -> out {layout(out)}"
        return out


def layout_trace(name: str, net: nn.Module, x: torch.Tensor) -> None:
    """Which convolutions (or compiled stages) cuDNN wraps in layout transposes, for knob set ``name``.

    Every convolution outside the compiled blocks and every top-level stage gets a profiler label;
    each transpose kernel is charged to the innermost label that launched it.
    """
    from napari_dgno.model.fast import COMPILED_BLOCKS
    from torch.profiler import ProfilerActivity, profile

    spec = SETS[name]
    with knobs(spec):
        model, xin = prepare_to_profile(net, spec, x)
        notes: dict = {}
        inside_blocks = {n for n, m in model.named_modules() if isinstance(m, COMPILED_BLOCKS)}
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)
                 and not any(n.startswith(b + ".") for b in inside_blocks)]
        for path in convs + [s for s in STAGES if hasattr(model, s)]:
            parent, _, child = path.rpartition(".")
            owner = model.get_submodule(parent) if parent else model
            inner = getattr(owner, child)
            setattr(owner, child, Labelled(inner, f"conv:{path}" if path in convs else f"stage:{path}", notes))
        labels = {m.label for m in model.modules() if isinstance(m, Labelled)}
        with torch.inference_mode(), autocast_for(spec):
            for _ in range(3):
                model(xin)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                model(xin)
                torch.cuda.synchronize()

    def own_kernels(evt):
        yield from getattr(evt, "kernels", [])
        for child in evt.cpu_children:
            if child.name not in labels:
                yield from own_kernels(child)

    charged: dict = {}
    for evt in prof.events():
        if evt.name in labels:
            for kernel in own_kernels(evt):
                if any(k in kernel.name for k in LAYOUT_KERNELS):
                    key = (evt.name, kernel.name.split("<")[0].split("::")[-1])
                    charged[key] = charged.get(key, 0.0) + kernel.duration / 1e3
    print(f"\n## cuDNN layout transposes, {name} (compiled blocks, no graph), ms per forward")
    print("| where | kernel | ms | layouts (first call) |\n|---|---|---|---|")
    for (label, kernel), ms in sorted(charged.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {kernel} | {ms:.3f} | {notes.get(label, '')} |")
    print(f"| total | | {sum(charged.values()):.3f} | |")
    print("\n## layouts of the convolutions outside the compiled blocks")
    for label in sorted(notes):
        print(f"- {label}: {notes[label]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="*", default=["fp32-u", "fp32", "fp32-c0", "fp32-c", "bf16-c0", "bf16-c"])
    parser.add_argument("--profile", nargs="*", default=[], help="knob sets to break down per stage and kernel")
    parser.add_argument("--kernels", type=int, default=30)
    parser.add_argument("--trace-layout", nargs="*", default=[], help="knob sets whose layout transposes to trace")
    parser.add_argument("--variant", choices=["face", "cell"], default="face")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    unknown = sorted(set(args.sets + args.profile + args.trace_layout) - set(SETS))
    if unknown:
        sys.exit(f"unknown knob sets {unknown}; choose from {sorted(SETS)}")
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, {args.batch} x {args.size}^2, "
          f"{args.variant}", flush=True)
    net = build(args.variant)
    net.routing = "argmax"
    x = make_input(args.batch, args.size)
    with torch.inference_mode(), knobs({"fused": False}):
        reference = net(x)[-1].float()
    rows = []
    for name in args.sets:
        try:
            row = measure(name, net, x, reference)
        except Exception as exc:  # one failing knob must not lose the others
            print(f"{name}: failed: {type(exc).__name__}: {str(exc)[:600]}", flush=True)
            continue
        rows.append(row)
        dev = f"{row['rel_l2']:.1e} (max {row['max_abs']:.1e})"
        tflops = row["mpx_s"] * FLOP_PER_PIXEL / 1e6
        print(f"{name:<14} {row['ms']:8.2f} ms {row['mpx_s']:7.2f} Mpx/s {tflops:6.1f} TFLOP/s "
              f"first call {row['first_s']:5.1f} s dev {dev}", flush=True)
    base = rows[0]["ms"] if rows else float("nan")
    first = rows[0]["set"] if rows else "-"
    print(f"\n| knob set | ms | Mpx/s | speed vs {first} | first call s | rel. L2 vs fp32 eager |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['ms']:.1f} | {r['mpx_s']:.2f} | {base / r['ms']:.2f}x | {r['first_s']:.0f} | "
              f"{r.get('rel_l2', float('nan')):.1e} |")
    for name in args.profile:
        try:
            breakdown(name, net, x, args.kernels)
        except Exception as exc:
            print(f"breakdown {name}: failed: {type(exc).__name__}: {str(exc)[:600]}", flush=True)
    for name in args.trace_layout:
        try:
            layout_trace(name, net, x)
        except Exception as exc:
            print(f"layout trace {name}: failed: {type(exc).__name__}: {str(exc)[:600]}", flush=True)
    print("\ndone", flush=True)


if __name__ == "__main__":
    main()
