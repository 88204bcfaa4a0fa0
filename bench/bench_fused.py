"""The fused kernels of napari_dgno.model.fusible on DGNO's shapes (batch 4), GPU time from CUDA graphs.

Depthwise 3x3 + gate (GDFN, CPE): the Triton kernels vs cuDNN + a separate gate. Token gather (the
ASSM's sort by prompt): the Triton kernel vs torch.gather, on channels-last maps. For channels-last
maps both kernels (``tiles``, ``rows``) with several tile shapes, at the checkpoints' GDFN widths
and at the aligned widths the fused path pads them to. ``--defaults`` times only cuDNN + gate and the
library's default kernel (e.g. to compare two versions of the library on one machine).

Both input layouts: channels-last (what DGNO's 1x1 convolutions return for its permuted layer-norm
output: the layout the network actually feeds) and NCHW. Several tile shapes per kernel.

    python bench/bench_fused.py [--quick | --cl] [--aligned] [--defaults] [--gelu]  # one GPU, CUDA graph times
    python bench/bench_fused.py --dg               # the DG operator: torch vs the Triton kernels
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_dgno.model import fusible  # noqa: E402


def graph_ms(fn) -> float:
    import triton.testing

    return triton.testing.do_bench_cudagraph(fn, rep=50)


def with_kernel(x, conv, gate, kind, setting):
    """fusible.depthwise_gate_triton with the channels-last ``kind`` kernel (``tiles`` or ``rows``)
    and its tile ``setting`` (an entry of fusible.CL_TILES / ROW_TILES), restored after."""
    table = fusible.CL_TILES if kind == "tiles" else fusible.ROW_TILES
    saved = dict(table), dict(fusible.CL_KERNEL)
    table[gate], fusible.CL_KERNEL[gate] = setting, kind
    try:
        return fusible.depthwise_gate_triton(x, conv.weight, conv.bias, gate)
    finally:
        table.update(saved[0])
        fusible.CL_KERNEL.update(saved[1])


ROW_STRIPS = {"gelu": [(32, 64, 32, 4), (32, 32, 32, 4), (16, 64, 32, 2), (32, 128, 32, 8), (64, 64, 32, 8),
                      (32, 64, 64, 4), (32, 64, 16, 4)],
              "sigmoid": [(32, 32, 32, 4), (16, 32, 32, 2), (32, 32, 16, 2), (64, 32, 32, 4), (16, 64, 32, 4)]}


def main() -> None:
    torch.backends.cudnn.benchmark = True
    print(f"# {torch.cuda.get_device_name()}, batch 4")
    print("| gate | channels x size | layout | dtype | variant | ms | GB/s (1 read + 1 write) | max err vs cuDNN |")
    print("|---|---|---|---|---|---|---|---|")
    # GDFN: the checkpoints' hidden widths (2 x 127, 255, 510, 1021) and the aligned ones the fused
    # path pads them to (fusible.HIDDEN_ALIGN); the ASSM's CPE at 96-768 channels.
    shapes = [("gelu", 254, 512, False), ("gelu", 256, 512, False), ("gelu", 510, 256, False),
              ("gelu", 512, 256, False), ("gelu", 1020, 128, False), ("gelu", 1024, 128, False),
              ("gelu", 2042, 64, False), ("gelu", 2048, 64, False), ("sigmoid", 96, 512, True),
              ("sigmoid", 192, 256, True), ("sigmoid", 384, 128, True), ("sigmoid", 768, 64, True)]
    layouts = ("channels-last", "nchw")
    if "--quick" in sys.argv:  # DGNO's layout and the first-level shapes only
        shapes, layouts = [shapes[0], shapes[1], shapes[8]], layouts[:1]
    elif "--cl" in sys.argv:  # DGNO's layout only
        layouts = layouts[:1]
    if "--gelu" in sys.argv:  # the GDFN's gate only
        shapes = [sh for sh in shapes if sh[0] == "gelu"]
    if "--aligned" in sys.argv:  # the widths the fused path runs at (the GDFN's padded to fusible.HIDDEN_ALIGN)
        shapes = [sh for sh in shapes if sh[0] == "sigmoid" or sh[1] % 64 == 0]
    for gate, c, s, bias in shapes:
        conv = nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=bias).cuda()
        for layout in layouts:
            for dtype in (torch.float32, torch.bfloat16):
                x = torch.randn(4, c, s, s, device="cuda", dtype=dtype)
                if layout == "channels-last":
                    x = x.contiguous(memory_format=torch.channels_last)
                conv_d = copy.deepcopy(conv).to(dtype)  # cuDNN in the input's dtype, as under autocast
                variants = {"cudnn + gate": lambda x=x, conv_d=conv_d: fusible.depthwise_gate_reference(x, conv_d, gate),
                            "triton (defaults)": lambda x=x: fusible.depthwise_gate_triton(x, conv.weight, conv.bias, gate)}
                if layout == "channels-last" and "--defaults" not in sys.argv:
                    for tile in ((1024, 64), (2048, 32)):
                        variants["tiles {} / {} ch".format(*tile)] = (
                            lambda x=x, tile=tile: with_kernel(x, conv, gate, "tiles", tile))
                    for strip in ROW_STRIPS[gate]:
                        variants["rows {} px / {} ch / {} rows / {} warps".format(*strip)] = (
                            lambda x=x, strip=strip: with_kernel(x, conv, gate, "rows", strip))
                with torch.inference_mode():
                    ref = fusible.depthwise_gate_reference(x, conv_d, gate).float()
                    nbytes = x.numel() * x.element_size() * (1.5 if gate == "gelu" else 2)
                    for name, fn in variants.items():
                        try:
                            err = (fn().float() - ref).abs().max().item()
                            ms = graph_ms(fn)
                            print(f"| {gate} | {c} x {s} | {layout} | {str(dtype)[6:]} | {name} | {ms:.3f} | "
                                  f"{nbytes / ms / 1e6:.0f} | {err:.1e} |", flush=True)
                        except Exception as exc:  # one failing variant must not lose the table
                            print(f"| {gate} | {c} x {s} | {layout} | {str(dtype)[6:]} | {name} | failed: "
                                  f"{type(exc).__name__}: {str(exc)[:200]} |", flush=True)


def gather_table() -> None:
    print("\n| token gather | channels x size | dtype | torch.gather ms | triton ms | speed-up | equal |")
    print("|---|---|---|---|---|---|---|")
    for c, s in ((96, 512), (192, 256), (384, 128), (768, 64)):
        for dtype in (torch.float32, torch.bfloat16):
            z = torch.randn(4, c, s, s, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
            order = torch.argsort(torch.randint(0, 64, (4, s * s), device="cuda"), dim=1, stable=True)
            with torch.inference_mode():
                equal = torch.equal(fusible.gather_tokens_reference(z, order), fusible.gather_tokens_triton(z, order))
                ref_ms = graph_ms(lambda z=z, order=order: fusible.gather_tokens_reference(z, order))
                ms = graph_ms(lambda z=z, order=order: fusible.gather_tokens_triton(z, order))
            print(f"| | {c} x {s} | {str(dtype)[6:]} | {ref_ms:.3f} | {ms:.3f} | {ref_ms / ms:.2f}x | {equal} |", flush=True)


def dg_table() -> None:
    """The DG decoder's operator (Face avg_jump/dirichlet, Cell jump/neumann) at a 4 x 512 tile's three
    widths: the eager torch form vs the two Triton kernels (napari_dgno.model.dg_fused), whole module."""
    from napari_dgno.model.dg import DGWindowOperator

    print("\n| DG operator | channels x size | dtype | torch ms | triton ms | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for variant, flux, boundary in (("face", "avg_jump", "dirichlet"), ("cell", "jump", "neumann")):
        for c, s in ((48, 512), (96, 256), (192, 128)):
            op = DGWindowOperator(c, variant, 8, flux, 0.25, True, boundary).cuda().eval()
            x = torch.randn(4, c, s, s, device="cuda").contiguous(memory_format=torch.channels_last)
            for dtype in (torch.float32, torch.bfloat16):
                cast = torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32)

                def run(op=op, x=x, cast=cast):
                    with cast:
                        return op(x)

                with torch.inference_mode():
                    fusible.ENABLED = False
                    try:
                        ref, ref_ms = run().float(), graph_ms(run)
                    finally:
                        fusible.ENABLED = True
                    diff, ms = (run().float() - ref).abs().max().item(), graph_ms(run)
                print(f"| {variant} | {c} x {s} | {str(dtype)[6:]} | {ref_ms:.3f} | {ms:.3f} | {ref_ms / ms:.2f}x | "
                      f"{diff:.1e} |", flush=True)


if __name__ == "__main__":
    if "--dg" in sys.argv:
        dg_table()
        sys.exit()
    gather_table()
    main()
