"""The DG decoder's window operators as two Triton kernels, for GPU inference without ``torch.compile``.

Why: in eager PyTorch each DG operator is a dozen memory passes over the q/k/v map (the Swin
window permutes, Galerkin layer norms over 3-12 values, ~260,000 tiny per-window products, the
flux exchange): 10.7 ms for the finest one at 4 x 512 x 512 on an H200 (bench/bench_fused.py
--dg). Here one kernel builds every window's operators (volume, and for the Face variant the four
faces) straight from the q/k/v map, a second adds the fluxes from the neighbours' operators and
applies the result to the window's queries, writing the output map in the input's layout (2.3 ms).
Under ``torch.compile`` Inductor's fusion of the eager form is faster still, so there the eager form
runs (see :func:`applies`). Same mathematics as
:meth:`napari_dgno.model.dg.DGWindowOperator._apply_operators` in float32, other summation order
(~1e-7 relative); the eager form stays the reference and runs on CPU, with gradients, or with
:data:`napari_dgno.model.fusible.ENABLED` off.
"""

from __future__ import annotations

import functools
from types import ModuleType

import torch

from . import fusible
from .scan_triton import _cdiv, _next_pow2, _prev_pow2

FLUX_CODES = {"central": 0, "jump": 1, "avg_jump": 2}
#: Use these kernels where the fused forms apply (benchmarks switch them off alone to compare).
ENABLED = True
#: A program takes as many heads as keep its (tokens x heads x DP x DP) products near this size:
#: 8 heads at head width 3 (DP 4), 2 at 6, 1 at 12 for 8 x 8 windows.
OUTER_ELEMENTS = 8192


def applies(x: torch.Tensor, *params: torch.Tensor) -> bool:
    """CUDA inference outside ``torch.compile`` on the q/k/v map ``x`` (see
    :func:`napari_dgno.model.fusible.use_triton` and :func:`napari_dgno.model.fusible.indexable`).

    Under compile, Inductor's fusion of the eager form was faster on an H200 (whole network, 4 x
    512 x 512: 41.7 vs 44.2 ms bf16, 55.5 vs 56.9 ms fp32); without it these kernels are 2-5x
    faster than the eager form at the two finer levels (bench/bench_fused.py --dg).
    """
    return ENABLED and not torch.compiler.is_compiling() and fusible.use_triton(x, *params) and fusible.indexable(x)


@functools.cache
def _kernels() -> ModuleType:
    from . import dg_triton_kernels

    return dg_triton_kernels


def _output_like(qkv: torch.Tensor, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    b, c3, h, w = qkv.shape
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty((b, c3 // 3, h, w), dtype=dtype, device=qkv.device, memory_format=layout)


def dg_attention_triton(
    qkv: torch.Tensor,
    k_norm: tuple[torch.Tensor, torch.Tensor],
    v_norm: tuple[torch.Tensor, torch.Tensor],
    tau: torch.Tensor | None,
    *,
    heads: int,
    window: int,
    face: bool,
    flux_mode: str,
    dirichlet: bool,
    eps: float,
    out_dtype: torch.dtype,
    channels_last: bool,
) -> torch.Tensor:
    """q @ (volume + flux) per window and head, for the (B, 3C, H, W) output of ``qkv_proj``.

    ``k_norm``/``v_norm``: the Galerkin layer norms' (weight, bias), ``heads * C // heads`` values
    each. ``tau``: a one-element tensor (unused for ``central``). Returns (B, C, H, W) in
    ``out_dtype``, channels-last when ``channels_last``.
    """
    if flux_mode not in FLUX_CODES:
        raise ValueError(f"unknown flux_mode {flux_mode!r}; choose one of {', '.join(FLUX_CODES)}")
    b, c3, h, w = qkv.shape
    channels = c3 // 3
    if c3 != 3 * channels or channels % heads:
        raise ValueError(f"the q/k/v map needs 3 x a multiple of {heads} channels, got {c3}")
    if h % window or w % window:
        raise ValueError(f"DG operator input {h}x{w} is not a multiple of the {window}-pixel window")
    if flux_mode != "central" and (tau is None or tau.numel() != 1):
        raise ValueError(f"flux_mode {flux_mode!r} needs a one-element tau tensor")
    fusible.check_indexable(qkv)
    head_dim = channels // heads
    dp = max(2, _next_pow2(head_dim))
    grid_h, grid_w = h // window, w // window
    out = _output_like(qkv, out_dtype, channels_last)
    if out.numel() == 0:
        return out
    slots = 5 if face else 1
    ops = torch.empty((b, grid_h, grid_w, heads, slots, dp, dp), dtype=torch.float32, device=qkv.device)
    hb = _prev_pow2(max(1, min(heads, OUTER_ELEMENTS // (window * window * dp * dp))))  # heads per program
    grid = (b * grid_h * grid_w * _cdiv(heads, hb),)
    warps = 8 if window * window * hb * dp * dp > OUTER_ELEMENTS else 4
    kw, kb = (t.reshape(-1).contiguous() for t in k_norm)
    vw, vb = (t.reshape(-1).contiguous() for t in v_norm)
    kernels = _kernels()
    kernels.dg_operators_kernel[grid](
        qkv, kw, kb, vw, vb, ops, channels, heads, grid_h, grid_w, eps, *qkv.stride(),
        P=window, D=head_dim, DP=dp, HB=hb, FACE=face, num_warps=warps,
    )
    tau_arg = tau.reshape(1) if tau is not None else ops
    kernels.dg_apply_kernel[grid](
        qkv, ops, tau_arg, out, heads, grid_h, grid_w, *qkv.stride(), *out.stride(),
        P=window, D=head_dim, DP=dp, HB=hb, FACE=face, MODE=FLUX_CODES[flux_mode], DIRICHLET=dirichlet,
        num_warps=warps,
    )
    return out
