"""What the scan and depthwise-gate kernels' inner loops cost in sm_90 instructions, without a GPU.

Compiles the chunked forward kernel (``_seq_chunk_kernel``) and the single-launch kernel
(``_scan_single_kernel``) for an H100/H200 (sm_90) offline, with Triton's own ``ptxas``, reads the
machine code back with its bundled ``cuobjdump``, finds each loop (a backward branch) and prints
registers per thread, the loop's instructions per state and step, and its most frequent opcodes.
``--dwgate`` does the same for the depthwise-gate kernels (instructions per output element of the
rows kernel's loop and of the whole tiles kernel, for the GDFN's gelu gate and the CPE's sigmoid
gate, bf16 maps as under autocast).
Device time is scarce; this shows what a change does to the loop before spending any.

    python bench/kernel_sass.py [--layout channel-major|token-major] [--widths 1 2 4 8] [--stages 1 2 3] [--unaligned]
    python bench/kernel_sass.py --dwgate

Integer arguments equal to 1 in the chosen layout are compiled as the constant 1, as Triton's
launcher specialises them; pointers are marked 16-byte aligned and the integers that are multiples
of 16 at DGNO's shapes as such (Triton's launcher does the same at run time), which decides the
kernels' register layouts: without these hints (``--unaligned``, as the fifth session's table was
made) the single-launch scan keeps one step per thread and issues twice the instructions. Needs
Triton, not a GPU.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

N_STATE = 8
# Integer arguments that are NOT multiples of 16 at DGNO's shapes (A is (d, n = 8); token-major B
# and C are (b, l, n = 8)); every other non-unit integer is (lengths 4096-1,048,576, widths 96-768),
# and Triton's launcher marks those, and the 16-byte aligned pointers, as divisible by 16.
SMALL_STRIDES = {"channel-major": ("s_ad",), "token-major": ("s_ad", "s_Ml", "s_Cl")}
# Strides equal to 1, per kernel and layout (channel-major: (b, d, l) with l contiguous).
UNIT_STRIDES = {
    ("chunked", "channel-major"): ("s_vl", "s_tl", "s_Ml", "s_Cl", "s_yl", "s_an", "s_D", "s_bias"),
    ("chunked", "token-major"): ("s_vd", "s_td", "s_Mn", "s_Cn", "s_yd", "s_an", "s_D", "s_bias"),
    ("single", "channel-major"): ("s_ul", "s_tl", "s_Bl", "s_Cl", "s_yl", "s_an", "s_D", "s_bias"),
}


def _tools() -> Path:
    import triton

    return Path(triton.__file__).parent / "backends" / "nvidia" / "bin"


def compile_sm90(fn, unit_strides: tuple[str, ...], constants: dict, num_warps: int,
                 pointers: dict[str, str] | None = None, aligned: tuple[str, ...] = ()):
    """``fn`` compiled for sm_90: float32 pointers (unless ``pointers`` names another type), i32
    scalars, the named strides fixed at 1. ``aligned`` names integer arguments known to be multiples
    of 16, as Triton's launcher marks them; when given, every pointer is marked 16-byte aligned too."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature, fixed, attrs = {}, dict(constants), {}
    for index, name in enumerate(fn.arg_names):
        if name in constants:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = (pointers or {}).get(name, "*fp32")
            if aligned:
                attrs[(index,)] = [["tt.divisibility", 16]]
        elif name in unit_strides:
            signature[name], fixed[name] = "constexpr", 1
        else:
            signature[name] = "i32"
            if name in aligned:
                attrs[(index,)] = [["tt.divisibility", 16]]
    constexprs = {(fn.arg_names.index(k),): v for k, v in fixed.items()}
    source = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})


def sass_of(compiled) -> tuple[str, str]:
    """(resource-usage line, SASS listing) of a compiled kernel's cubin."""
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(compiled.asm["cubin"])
    try:
        tool = str(_tools() / "cuobjdump")
        usage = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True, text=True, check=True)
        sass = subprocess.run([tool, "-sass", f.name], capture_output=True, text=True, check=True)
    finally:
        os.unlink(f.name)
    line = next((ln.strip() for ln in usage.stdout.splitlines() if "REG:" in ln), "")
    return line, sass.stdout


def loops(sass: str) -> list[list[str]]:
    """The instructions of each loop body (from a backward branch's target to the branch)."""
    code = []
    for ln in sass.splitlines():
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", ln)
        if m:
            code.append((int(m.group(1), 16), m.group(2).strip()))
    bodies = []
    for address, text in code:
        m = re.search(r"BRA (?:`\(.*?\) )?0x([0-9a-f]+)", text)
        if m and int(m.group(1), 16) < address:
            start = int(m.group(1), 16)
            bodies.append([t for a, t in code if start <= a <= address])
    return bodies


# Opcode families, to split a loop's instructions by kind.
KINDS = {
    "integer address and mask": ("IMAD", "IADD3", "ISETP", "LEA", "SHF", "LOP3", "SEL", "VIADD", "IMNMX", "PLOP3",
                                 "P2R", "R2P"),
    "float math": ("FFMA", "FMUL", "FADD", "MUFU", "FSETP", "FSEL", "FMNMX", "HFMA2", "HADD2", "HMUL2", "F2F"),
    "loads and stores": ("LDG", "STG", "LDS", "STS", "LDGSTS"),
    "bf16 unpacking": ("PRMT", "F2FP", "I2F", "F2I"),
}


def opcode(text: str) -> str:
    return re.sub(r"^@!?U?P\w+\s+", "", text).split()[0].split(".")[0]


def scan_aligned(fn, layout: str, unit_strides: tuple[str, ...], constants: dict, aligned: bool) -> tuple[str, ...]:
    """The integer arguments a launch at DGNO's shapes sees as multiples of 16 (none if not ``aligned``)."""
    if not aligned:
        return ()
    skip = set(unit_strides) | set(constants) | set(SMALL_STRIDES[layout])
    return tuple(n for n in fn.arg_names if not n.endswith("_ptr") and n not in skip)


def scan_row(kernel: str, tiling: str, compiled, steps_per_trip: int) -> str:
    """A table row: registers, the longest loop's instructions per state and step, its top opcodes."""
    usage, sass = sass_of(compiled)
    regs = usage.split()[0] if usage else "?"
    bodies = loops(sass)
    if not bodies:
        return f"| {kernel} | {tiling} | {regs} | - | no loop found |"
    body = max(bodies, key=len)
    top = ", ".join(f"{k} {v}" for k, v in collections.Counter(opcode(t) for t in body).most_common(6))
    return f"| {kernel} | {tiling} | {regs} | {len(body) / steps_per_trip / N_STATE:.1f} | {top} |"


# What a launch at DGNO's widths sees: 16-byte aligned maps and strides that are multiples of 16.
DWGATE_ALIGNED = ("channels", "height", "width", "w_stride", "s_xb", "s_xh", "s_xw", "s_ob", "s_oh", "s_ow")


def dwgate_table() -> None:
    """The rows kernel with the library's strips (``fusible.ROW_TILES``) and the tiles kernel with its
    tiles (``fusible.CL_TILES``), bf16 maps, float32 weights, aligned as at DGNO's widths."""
    from napari_dgno.model import dwgate_triton_kernels as kernels
    from napari_dgno.model import fusible

    print("# sm_90, offline; channels-last bf16 maps, float32 weights and bias, 16-byte aligned")
    print("| gate | kernel, tile (warps) | registers | instructions per output | "
          + " | ".join(KINDS) + " |")
    print("|---|---|---|---|" + "---|" * len(KINDS))
    bf16 = {"x_ptr": "*bf16", "out_ptr": "*bf16"}
    for gate, index in (("gelu", 0), ("sigmoid", 1)):
        flags = {"GATE": index, "HAS_BIAS": True, "FAST": True}
        block_w, block_c, rows, warps = fusible.ROW_TILES[gate]
        compiled = compile_sm90(kernels.dwconv3x3_gate_rows_kernel, (), dict(flags, BLOCK_W=block_w,
                                BLOCK_C=block_c, ROWS=rows), warps, bf16, DWGATE_ALIGNED)
        usage, sass = sass_of(compiled)
        bodies = loops(sass)
        # the loop: one output row of the strip per trip
        body = max(bodies, key=len) if bodies else []
        label = f"rows {block_w} x {block_c} x {rows} rows, loop ({warps})"
        print(_kinds_row(gate, label, usage, body, block_w * block_c // (32 * warps)), flush=True)
        tile, widest = fusible.CL_TILES[gate]
        constants = dict(flags, BLOCK_P=tile // widest, BLOCK_C=widest)
        compiled = compile_sm90(kernels.dwconv3x3_gate_cl_kernel, (), constants, 4, bf16, DWGATE_ALIGNED)
        usage, sass = sass_of(compiled)
        label = f"tiles {tile // widest} x {widest}, whole kernel (4)"
        print(_kinds_row(gate, label, usage, _instructions(sass), tile // (32 * 4)), flush=True)


def _instructions(sass: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"/\*[0-9a-f]{4,}\*/\s+(.*?);", sass)]


def _kinds_row(gate: str, label: str, usage: str, body: list[str], outputs: int) -> str:
    counts = collections.Counter(opcode(t) for t in body)
    kinds = " | ".join(f"{sum(counts[o] for o in ops) / outputs:.1f}" for ops in KINDS.values())
    regs = usage.split()[0].removeprefix("REG:") if usage else "?"
    return f"| {gate} | {label} | {regs} | {len(body) / outputs:.1f} | {kinds} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", choices=["channel-major", "token-major"], default="channel-major")
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 4, 8], help="chunked: steps per loop trip")
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--dwgate", action="store_true", help="the depthwise-gate rows kernel instead of the scan")
    parser.add_argument("--unaligned", action="store_true",
                        help="scan kernels without alignment hints (as the fifth session's table was made)")
    opts = parser.parse_args()
    if opts.dwgate:
        dwgate_table()
        return 0
    from napari_dgno.model import scan_triton_kernels as kernels

    flags = {"HAS_D": True, "HAS_BIAS": True, "SOFTPLUS": True}
    hints = "no alignment hints" if opts.unaligned else "16-byte aligned, strides as at DGNO's shapes"
    print(f"# sm_90, offline; {opts.layout} inputs, n = {N_STATE}, float32 pointers, {hints}")
    print("| kernel | tiling | registers | loop instructions per state and step | top opcodes in the loop |")
    print("|---|---|---|---|---|")
    for mode, label in ((1, "chunked summary"), (0, "chunked apply")):
        for width in opts.widths:
            for stages in opts.stages:
                constants = dict(flags, N=N_STATE, BD=32, W=width, K=1024 // width, STAGES=stages, MODE=mode,
                                 HAS_STATE=mode == 0)
                units = UNIT_STRIDES[("chunked", opts.layout)]
                hinted = scan_aligned(kernels._seq_chunk_kernel, opts.layout, units, constants, not opts.unaligned)
                compiled = compile_sm90(kernels._seq_chunk_kernel, units, constants, num_warps=1, aligned=hinted)
                print(scan_row(label, f"32 channels, width {width}, stages {stages}", compiled, width), flush=True)
    if opts.layout == "channel-major":
        for tile, warps in ((512, 4), (256, 2)):
            for stages in opts.stages:
                constants = dict(flags, N=N_STATE, NP=N_STATE, BD=1, T=tile, STAGES=stages, INTERP_L=0)
                units = UNIT_STRIDES[("single", opts.layout)]
                hinted = scan_aligned(kernels._scan_single_kernel, opts.layout, units, constants, not opts.unaligned)
                compiled = compile_sm90(kernels._scan_single_kernel, units, constants, num_warps=warps, aligned=hinted)
                # every thread holds tile / (32 * warps) steps of each of the N states
                print(scan_row("single launch", f"tile {tile}, {warps} warps, stages {stages}", compiled,
                               tile // (32 * warps)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
