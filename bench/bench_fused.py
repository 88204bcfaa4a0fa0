"""The fused kernels of napari_dgno.model.fusible on DGNO's shapes (batch 4), GPU time from CUDA graphs.

Depthwise 3x3 + gate (GDFN, CPE): the Triton kernels vs cuDNN + a separate gate. Token gather (the
ASSM's sort by prompt): the Triton kernel vs torch.gather, on channels-last maps.

Both input layouts: channels-last (what DGNO's 1x1 convolutions return for its permuted layer-norm
output: the layout the network actually feeds) and NCHW. Several tile shapes per kernel.

    python bench/bench_fused.py [--quick]   # one CUDA GPU; prints a table of GPU times (CUDA graphs)
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


def with_tiles(x, conv, gate, **tiles):
    """fusible.depthwise_gate_triton with other tile constants (restored after)."""
    saved = dict(fusible.CL_TILES)
    fusible.CL_TILES[gate] = (tiles["tile"], tiles["block_c"])
    try:
        return fusible.depthwise_gate_triton(x, conv.weight, conv.bias, gate)
    finally:
        fusible.CL_TILES.update(saved)


def main() -> None:
    torch.backends.cudnn.benchmark = True
    print(f"# {torch.cuda.get_device_name()}, batch 4")
    print("| gate | channels x size | layout | dtype | variant | ms | GB/s (1 read + 1 write) | max err vs cuDNN |")
    print("|---|---|---|---|---|---|---|---|")
    shapes = [("gelu", 254, 512, False), ("gelu", 508, 256, False), ("gelu", 1016, 128, False),
              ("gelu", 2032, 64, False), ("sigmoid", 96, 512, True), ("sigmoid", 192, 256, True),
              ("sigmoid", 384, 128, True), ("sigmoid", 768, 64, True)]
    layouts = ("channels-last", "nchw")
    if "--quick" in sys.argv:  # DGNO's layout and the first-level shapes only
        shapes, layouts = [shapes[0], shapes[4]], layouts[:1]
    for gate, c, s, bias in shapes:
        conv = nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=bias).cuda()
        for layout in layouts:
            for dtype in (torch.float32, torch.bfloat16):
                x = torch.randn(4, c, s, s, device="cuda", dtype=dtype)
                if layout == "channels-last":
                    x = x.contiguous(memory_format=torch.channels_last)
                conv_d = copy.deepcopy(conv).to(dtype)  # cuDNN in the input's dtype, as under autocast
                variants = {"cudnn + gate": lambda x=x, conv_d=conv_d: fusible.depthwise_gate_reference(x, conv_d, gate),
                            "triton (default tiles)": lambda x=x: fusible.depthwise_gate_triton(x, conv.weight, conv.bias, gate)}
                if layout == "channels-last":
                    for tile, block_c in ((1024, 64), (2048, 32), (1024, 32), (512, 64)):
                        variants[f"triton tile {tile} / {block_c} ch"] = (
                            lambda x=x, tile=tile, block_c=block_c: with_tiles(x, conv, gate, tile=tile, block_c=block_c))
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


if __name__ == "__main__":
    gather_table()
    main()
