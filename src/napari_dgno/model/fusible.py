"""Fused forms of DGNO's small operations, for inference on GPUs and under ``torch.compile``.

What a profile of the network showed (bench/profile_e2e.py, docs/benchmarks.md), and the remedy:

* Depthwise 3x3 convolutions followed by a gate: GDFN's ``gelu(dw(x)[:C]) * dw(x)[C:]`` (its
  254-channel map is the largest tensor at level 1) and the ASSM's ``z * sigmoid(CPE(z))``. cuDNN
  runs NHWC -> conv -> NCHW transposes around them and the gate is one more pass.
  :func:`depthwise_gate`: one Triton kernel (:mod:`.dwgate_triton_kernels`), one read, one write.
  :func:`gated_feedforward` also pads the GDFN's hidden width (127 per half at level 1) with zero
  channels to a multiple of 32, so every channels-last row starts on a 16-byte boundary.
* The ASSM's sort of tokens by prompt, a gather along the pixels of a channels-last map: PyTorch's
  gather, and Inductor's (which also inlines the gate before it, re-reading neighbours at random
  positions), read it column by column. :func:`gather_tokens` reads whole token rows.
* The DG decoder's ~260,000 per-window products of 3x3 to 24x24 matrices per 4 x 512 x 512, tiny
  batched cuBLAS calls that Inductor cannot fuse. :func:`small_matmul` writes them as
  broadcast-and-sum reductions while compiling, which Inductor fuses with their neighbours.

The Triton kernels sit behind opaque custom ops (``napari_dgno::depthwise_gate``,
``napari_dgno::gather_tokens``) so that compiled graphs keep their inputs and outputs whole. Same
mathematics, different rounding order (~1e-7 relative in float32; the gather is exact). Inference
only: with gradients, on CPU, or with :data:`ENABLED` off, the plain eager forms run (the reference
for every test). Benchmarks switch :data:`ENABLED` to compare.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from .scan_triton import _cdiv, _next_pow2, interpreted, triton_available

#: Environment variable that switches the fused forms off (``NAPARI_DGNO_FUSED=0``), e.g. should a
#: Triton build fail on some GPU: the eager forms then run everywhere.
ENV_VAR = "NAPARI_DGNO_FUSED"
#: Use the fused forms where they apply. Read at call (and trace) time.
ENABLED = os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")
GATES = ("gelu", "sigmoid")
#: Channels-last kernel per gate: ``tiles`` (pixels x channels, nine shifted loads) or ``rows``
#: (a strip walked down the rows, three loads per output). Chosen with ``bench/bench_fused.py`` on
#: an H200: rows for the GDFN (0.53 vs 0.78 ms bf16 at 256 x 512 x 512 x 4, sixth pass), tiles for
#: the CPE (0.25 ms bf16, 0.33 fp32 at 96 channels; the best rows strip per dtype 0.23 / 0.29, but
#: no one strip beat the tiles in both dtypes and at every width).
CL_KERNEL = {"gelu": "rows", "sigmoid": "tiles"}
#: ``tiles`` kernel tile per gate: (elements, at most this many channels wide). From
#: ``bench/bench_fused.py`` on an H200: the gelu gate keeps two accumulators and spills at 2048.
CL_TILES = {"gelu": (1024, 64), "sigmoid": (2048, 32)}
#: ``rows`` kernel strip per gate: (pixels wide, at most this many channels, rows per program, warps).
#: The gelu strip from ``bench/bench_fused.py --cl --aligned`` on an H200 (sixth pass): 64 channels
#: (a whole 128-byte line per bf16 pixel) ran 1.17-1.86x faster than 32 at every GDFN width and dtype.
#: The rows kernel runs only where its loads are whole 16-byte vectors (:func:`_vector_aligned`; the
#: network pads the GDFN to such widths); other channels-last maps take the tiles kernel. At the
#: checkpoints' unaligned 254-channel GDFN input (bf16, H200) the rows kernel without vectors spilled
#: at 64 channels (840 bytes of stack per thread, ``bench/kernel_sass.py``) and took 2.75 ms, 1.36 at
#: 32 channels, against 1.41 for cuDNN + gate and 1.24 for the tiles kernel (sixth pass).
ROW_TILES = {"gelu": (32, 64, 32, 4), "sigmoid": (16, 32, 32, 2)}
#: The GDFN's hidden width is padded with zero channels up to a multiple of this for the fused
#: kernel (127 -> 128, 255 -> 256, 510 -> 512, 1021 -> 1024): rows of whole 16-byte vectors for the
#: depthwise kernel and the 1x1 convolutions, exactly the same result (a zero channel stays zero).
HIDDEN_ALIGN = 32
#: Token-gather tile: tokens x channels.
GATHER_BLOCK_L = 64
GATHER_BLOCK_D = 64


#: The kernels index within one image in 32 bits (the image's own offset is 64-bit): an image whose
#: elements span more than this (e.g. the GDFN's 256-channel map of a single 4096 x 4096 tile) takes
#: the eager form instead.
MAX_IMAGE_ELEMENTS = 2**31 - 1


def image_span(t: torch.Tensor) -> int:
    """Elements from the first to the last of one image of ``t`` (any strides), batch index fixed."""
    if t.numel() == 0:
        return 0
    return 1 + sum((n - 1) * abs(s) for n, s in zip(t.shape[1:], t.stride()[1:]))


def indexable(*tensors: torch.Tensor) -> bool:
    """Every image of every tensor within the kernels' 32-bit index range (:data:`MAX_IMAGE_ELEMENTS`)."""
    return all(image_span(t) <= MAX_IMAGE_ELEMENTS for t in tensors)


def check_indexable(*tensors: torch.Tensor) -> None:
    """Raise a ValueError naming the sizes when :func:`indexable` is false (the launchers call it)."""
    if not indexable(*tensors):
        spans = ", ".join(f"{image_span(t):,}" for t in tensors)
        raise ValueError(
            f"an image spans {spans} elements, beyond the fused kernels' 32-bit index range "
            f"({MAX_IMAGE_ELEMENTS:,}); use smaller tiles or the eager form"
        )


def small_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for batches of small matrices (inner and outer sizes of a few to a few dozen)."""
    if not (ENABLED and torch.compiler.is_compiling()):
        return torch.matmul(a, b)
    return (a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)


def depthwise_gate_reference(x: torch.Tensor, conv: nn.Conv2d, gate: str) -> torch.Tensor:
    """The eager form: ``gelu``: gelu(first half of conv(x)) * second half; ``sigmoid``: x * sigmoid(conv(x))."""
    y = conv(x)
    if gate == "gelu":
        a, b = y.chunk(2, dim=1)
        return F.gelu(a) * b
    if gate == "sigmoid":
        return x * torch.sigmoid(y)
    raise ValueError(f"unknown gate {gate!r}; choose one of {', '.join(GATES)}")


@functools.cache
def _kernels() -> ModuleType:
    from . import dwgate_triton_kernels

    return dwgate_triton_kernels


@functools.cache
def _fast_math() -> bool:
    """Whether the kernels are compiled for the GPU (their fast approximate ``exp2`` and reciprocal,
    inline PTX) rather than run by Triton's CPU interpreter (plain ``exp2`` and division)."""
    return not interpreted(_kernels().dwconv3x3_gate_rows_kernel)


def _vector_aligned(channels: int, *maps: torch.Tensor) -> bool:
    """Whether Triton's launcher will see 16-byte aligned maps and channel counts and strides that are
    multiples of 16 (what it specialises on), so that the kernels can load whole 16-byte vectors."""
    return channels % 16 == 0 and all(
        t.data_ptr() % 16 == 0 and all(stride % 16 == 0 for i, stride in enumerate(t.stride()) if i != 1) for t in maps
    )


def is_channels_last(x: torch.Tensor) -> bool:
    """Channels stored innermost (channel stride 1): the kernel then tiles pixels x channels."""
    return x.shape[1] > 1 and x.stride(1) == 1


def _empty_output(x: torch.Tensor, gate: str) -> torch.Tensor:
    """Contiguous in the input's layout (NCHW, or channels-last for a channels-last input)."""
    b, c_in, h, w = x.shape
    layout = torch.channels_last if is_channels_last(x) else torch.contiguous_format
    shape = (b, c_in // 2 if gate == "gelu" else c_in, h, w)
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=layout)


def depthwise_gate_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gate: str) -> torch.Tensor:
    """The Triton kernel on (B, C_in, H, W) ``x`` with a (C_in, 1, 3, 3) depthwise weight; any strides.

    Output (B, C_in // 2 for ``gelu`` else C_in, H, W) in ``x``'s dtype and layout (see :func:`_empty_output`).
    """
    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}; choose one of {', '.join(GATES)}")
    b, c_in, h, w = x.shape
    if tuple(weight.shape) != (c_in, 1, 3, 3):
        raise ValueError(f"depthwise_gate needs a ({c_in}, 1, 3, 3) weight, got {tuple(weight.shape)}")
    if gate == "gelu" and c_in % 2:
        raise ValueError(f"the gelu gate splits the channels in two halves; got {c_in} channels")
    out = _empty_output(x, gate)
    if out.numel() == 0:
        return out
    check_indexable(x, out)
    channels = out.shape[1]
    kernels = _kernels()
    flags = {"GATE": GATES.index(gate), "HAS_BIAS": bias is not None, "num_warps": 4, "FAST": _fast_math()}
    if is_channels_last(x) and CL_KERNEL[gate] == "rows" and _vector_aligned(channels, x, out):
        block_w, widest, rows, warps = ROW_TILES[gate]
        block_w = min(block_w, _next_pow2(w))
        block_c = min(widest, _next_pow2(channels))
        tiles_w, tiles_h = _cdiv(w, block_w), _cdiv(h, rows)
        grid = (b * tiles_h * tiles_w, _cdiv(channels, block_c))
        # Tap-major float32 taps and bias, zero-padded by a strip's width: unmasked vector loads.
        taps = F.pad(weight.reshape(c_in, 9).t().float(), (0, block_c))
        bias_arg = F.pad(bias.float(), (0, block_c)) if bias is not None else taps
        kernels.dwconv3x3_gate_rows_kernel[grid](
            x, taps, bias_arg, out, channels, h, w, tiles_w, tiles_h, taps.stride(0), x.stride(0), x.stride(2),
            x.stride(3), out.stride(0), out.stride(2), out.stride(3), BLOCK_W=block_w, BLOCK_C=block_c, ROWS=rows,
            **{**flags, "num_warps": warps},
        )
        return out
    weight = weight.reshape(c_in, 9).contiguous()
    bias_arg = bias.contiguous() if bias is not None else weight
    if is_channels_last(x):
        tile, widest = CL_TILES[gate]
        block_c = min(widest, _next_pow2(channels))
        block_p = tile // block_c
        tiles_p = _cdiv(h * w, block_p)
        grid = (b * tiles_p, _cdiv(channels, block_c))
        kernels.dwconv3x3_gate_cl_kernel[grid](
            x, weight, bias_arg, out, channels, h, w, tiles_p, x.stride(0), x.stride(2), x.stride(3),
            out.stride(0), out.stride(2), out.stride(3), BLOCK_P=block_p, BLOCK_C=block_c, **flags,
        )
        return out
    block_w = min(64, _next_pow2(w))
    block_h = min(max(1, 1024 // block_w), _next_pow2(h))
    tiles_w = _cdiv(w, block_w)
    tiles = _cdiv(h, block_h) * tiles_w
    kernels.dwconv3x3_gate_kernel[(b * channels * tiles,)](
        x, weight, bias_arg, out, channels, h, w, tiles_w, tiles, *x.stride(), *out.stride(),
        BLOCK_H=block_h, BLOCK_W=block_w, **flags,
    )
    return out


@torch.library.custom_op("napari_dgno::depthwise_gate", mutates_args=())
def depthwise_gate_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gate: str) -> torch.Tensor:
    """:func:`depthwise_gate_triton` as an opaque op: compiled graphs keep its input and output whole."""
    return depthwise_gate_triton(x, weight, bias, gate)


@depthwise_gate_op.register_fake
def _depthwise_gate_fake(x, weight, bias, gate):
    return _empty_output(x, gate)


@torch.compiler.assume_constant_result  # traced as a constant, not stepped into by Dynamo
def _triton_ready() -> bool:
    return triton_available()


def use_triton(x: torch.Tensor, *params: torch.Tensor) -> bool:
    """CUDA inference with Triton present and the forms enabled (the rule of every fused form)."""
    return (
        ENABLED
        and x.is_cuda
        and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in (x, *params)))
        and _triton_ready()
    )


def depthwise_gate(x: torch.Tensor, conv: nn.Conv2d, gate: str) -> torch.Tensor:
    """Depthwise 3x3 ``conv`` on ``x`` and the ``gate`` (see :func:`depthwise_gate_reference`).

    One fused Triton kernel for CUDA inference, the eager form everywhere else.
    """
    if not (use_triton(x, conv.weight) and indexable(x)):
        return depthwise_gate_reference(x, conv, gate)
    return depthwise_gate_op(x, conv.weight, conv.bias, gate)


def _pad_halves(t: torch.Tensor, hidden: int, padded: int) -> torch.Tensor:
    """(2 * hidden, ...) -> (2 * padded, ...): zeros appended to each half along the first axis."""
    zeros = t.new_zeros((padded - hidden, *t.shape[1:]))
    first, second = t.split(hidden)
    return torch.cat([first, zeros, second, zeros])


def aligned_hidden(hidden: int) -> int:
    """The GDFN hidden width the fused path computes with (see :data:`HIDDEN_ALIGN`)."""
    return _cdiv(hidden, HIDDEN_ALIGN) * HIDDEN_ALIGN


def gated_feedforward(x: torch.Tensor, project_in: nn.Conv2d, dwconv: nn.Conv2d, project_out: nn.Conv2d) -> torch.Tensor:
    """Restormer's GDFN, ``project_out(gelu(dw(project_in(x))[:h]) * dw(project_in(x))[h:])``.

    On the fused path the hidden width h is padded to :func:`aligned_hidden` with zero weights, built
    from the live parameters on every call (a few kilobytes; in-place weight updates are seen), so
    every row the kernels read starts on a 16-byte boundary. Elsewhere: the eager form.
    """
    hidden = project_out.weight.shape[1]
    padded = aligned_hidden(hidden)
    if not (use_triton(x, project_in.weight) and 2 * padded * x.shape[2] * x.shape[3] <= MAX_IMAGE_ELEMENTS):
        return project_out(depthwise_gate_reference(project_in(x), dwconv, "gelu"))
    if padded == hidden:
        return project_out(depthwise_gate_op(project_in(x), dwconv.weight, dwconv.bias, "gelu"))
    pad_bias = (lambda t: None if t is None else _pad_halves(t, hidden, padded))
    expanded = F.conv2d(x, _pad_halves(project_in.weight, hidden, padded), pad_bias(project_in.bias))
    gated = depthwise_gate_op(expanded, _pad_halves(dwconv.weight, hidden, padded), pad_bias(dwconv.bias), "gelu")
    weight_out = F.pad(project_out.weight, (0, 0, 0, 0, 0, padded - hidden))
    return F.conv2d(gated, weight_out, project_out.bias)


def gather_tokens_reference(z: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """(B, D, n) tokens of the (B, D, H, W) map ``z`` in the order ``order`` (B, n): ``z.flatten(2)[b, :, order[b]]``."""
    flat = z.flatten(2)
    return torch.gather(flat, 2, order[:, None, :].expand(-1, flat.shape[1], -1))


def _tokens_in_rows(z: torch.Tensor) -> bool:
    """Channels-last storage (channel stride 1, tokens a uniform stride apart): each token is one row."""
    b, d, h, w = z.shape
    return d > 1 and z.stride(1) == 1 and (h == 1 or z.stride(2) == w * z.stride(3))


def gather_tokens_triton(z: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """:func:`gather_tokens_reference` for a channels-last ``z``: rows read whole, written transposed."""
    if not _tokens_in_rows(z):
        raise ValueError("gather_tokens_triton needs a channels-last (B, D, H, W) map; use gather_tokens_reference")
    b, d, h, w = z.shape
    tokens = order.shape[1]
    if tuple(order.shape) != (b, tokens) or order.dtype != torch.int64:
        raise ValueError(f"order must be ({b}, n) int64, got {tuple(order.shape)} {order.dtype}")
    out = torch.empty((b, d, tokens), dtype=z.dtype, device=z.device)
    if out.numel() == 0:
        return out
    check_indexable(z, out)
    order = order.contiguous()
    block_d = min(GATHER_BLOCK_D, _next_pow2(d))
    tiles_l = _cdiv(tokens, GATHER_BLOCK_L)
    _kernels().gather_tokens_kernel[(b * tiles_l, _cdiv(d, block_d))](
        z, order, out, d, tokens, tiles_l, z.stride(0), z.stride(3), out.stride(0), out.stride(1),
        BLOCK_L=GATHER_BLOCK_L, BLOCK_D=block_d, num_warps=4,
    )
    return out


@torch.library.custom_op("napari_dgno::gather_tokens", mutates_args=())
def gather_tokens_op(z: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """:func:`gather_tokens_triton` as an opaque op (Inductor would otherwise read z column-wise)."""
    return gather_tokens_triton(z, order)


@gather_tokens_op.register_fake
def _gather_tokens_fake(z, order):
    return z.new_empty((z.shape[0], z.shape[1], order.shape[1]))


def gather_tokens(z: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """The ASSM's sort of tokens by prompt: one Triton kernel for channels-last CUDA maps at inference."""
    if not (use_triton(z) and _tokens_in_rows(z) and order.dtype == torch.int64 and indexable(z)):
        return gather_tokens_reference(z, order)
    return gather_tokens_op(z, order)
