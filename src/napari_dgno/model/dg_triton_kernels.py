"""Triton kernels of :mod:`.dg_fused` (imported only with Triton): the DG decoder's per-window
Galerkin operators with their numerical flux, in two launches.

1. ``dg_operators_kernel``: one program per (window, block of HB heads) loads the window's P*P keys
   and values (D channels per head, padded to DP), applies the Galerkin layer norm, and stores the volume operator
   k^T v / P^2 and, for the Face variant, the four face operators (the P tokens of each window
   edge, / P) as DP x DP float32 tiles in ``ops`` (B, Gh, Gw, heads, slots, DP, DP).
2. ``dg_apply_kernel``: one program per (window, head block) reads its operators and its neighbours',
   adds the interface and boundary fluxes in the order of :func:`napari_dgno.model.dg.accumulate_flux`,
   and writes q @ (volume + flux) for the window's P*P queries into the output map.

Products are broadcast-and-sum in float32 (D is 3 to 12: too small for tensor cores).
"""

from __future__ import annotations

import triton
import triton.language as tl

CENTRAL = tl.constexpr(0)
JUMP = tl.constexpr(1)
AVG_JUMP = tl.constexpr(2)


@triton.jit
def _program(grid_h, grid_w, heads, HB: tl.constexpr):
    """(image, window row, window column, the program's HB heads as an (1, HB, 1) column).

    Head blocks vary fastest, so the programs of one window run side by side and share its pixels
    in L2."""
    pid = tl.program_id(0)
    blocks = tl.cdiv(heads, HB)
    window = pid // blocks
    hh = (pid % blocks) * HB + tl.arange(0, HB)[None, :, None]
    return window // (grid_h * grid_w), (window // grid_w) % grid_h, window % grid_w, hh


@triton.jit
def _window_pixels(ptr, b, gi, gj, s_b, s_h, s_w, P: tl.constexpr):
    """Pointers to the window's P*P pixels (row-major, a (P*P, 1, 1) column) and their row and column."""
    t = tl.arange(0, P * P)[:, None, None]
    row = t // P
    col = t % P
    return ptr + b.to(tl.int64) * s_b + (gi * P + row) * s_h + (gj * P + col) * s_w, row, col


@triton.jit
def _galerkin_norm(x, w, bias, valid, D: tl.constexpr, eps):
    """SRNO's layer norm over the D valid channels of each head: unbiased std, eps added to the std."""
    mean = tl.sum(x, axis=2)[:, :, None] / D
    centred = tl.where(valid, x - mean, 0.0)
    var = tl.sum(centred * centred, axis=2)[:, :, None] / (D - 1)
    std = tl.sqrt(tl.maximum(var, 1e-30))
    return tl.where(valid, w * centred / (std + eps) + bias, 0.0)


@triton.jit
def _slot_offsets(b, gi, gj, hh, heads, grid_h, grid_w, slot, SLOTS: tl.constexpr, DP: tl.constexpr):
    """Offsets of operator ``slot`` of window (gi, gj) for heads ``hh``: an (HB, DP, DP) block."""
    tile = tl.arange(0, DP)[None, :, None] * DP + tl.arange(0, DP)[None, None, :]
    window = (b * grid_h + gi) * grid_w + gj
    return ((window.to(tl.int64) * heads + hh.reshape(hh.shape[1], 1, 1)) * SLOTS + slot) * (DP * DP) + tile


@triton.jit
def _head_block_mask(hh, heads, DP: tl.constexpr):
    """(HB, DP, DP) mask of the program's operator tiles: heads past the last one are off."""
    return (hh.reshape(hh.shape[1], 1, 1) < heads) & (tl.arange(0, DP)[None, :, None] >= 0)


@triton.jit
def dg_operators_kernel(
    qkv_ptr, kw_ptr, kb_ptr, vw_ptr, vb_ptr, ops_ptr,
    channels, heads, grid_h, grid_w, eps,
    s_b, s_c, s_h, s_w,
    P: tl.constexpr, D: tl.constexpr, DP: tl.constexpr, HB: tl.constexpr, FACE: tl.constexpr,
):
    b, gi, gj, hh = _program(grid_h, grid_w, heads, HB)
    pixels, row, col = _window_pixels(qkv_ptr, b, gi, gj, s_b, s_h, s_w, P)
    i = tl.arange(0, DP)[None, None, :]
    valid = (i < D) & (hh < heads) & (row >= 0)  # (P*P, HB, DP)
    channel = hh * D + i
    k = tl.load(pixels + (channels + channel) * s_c, mask=valid, other=0.0).to(tl.float32)
    v = tl.load(pixels + (2 * channels + channel) * s_c, mask=valid, other=0.0).to(tl.float32)
    params = (i < D) & (hh < heads)
    k = _galerkin_norm(k, tl.load(kw_ptr + channel, mask=params, other=0.0),
                       tl.load(kb_ptr + channel, mask=params, other=0.0), valid, D, eps)
    v = _galerkin_norm(v, tl.load(vw_ptr + channel, mask=params, other=0.0),
                       tl.load(vb_ptr + channel, mask=params, other=0.0), valid, D, eps)
    outer = k[:, :, :, None] * v[:, :, None, :]  # (P*P, HB, DP, DP)
    SLOTS: tl.constexpr = 5 if FACE else 1
    keep = _head_block_mask(hh, heads, DP)
    out = ops_ptr + _slot_offsets(b, gi, gj, hh, heads, grid_h, grid_w, 0, SLOTS, DP)
    tl.store(out, tl.sum(outer, axis=0) / (P * P), mask=keep)
    if FACE:  # left, right, top, bottom: the P tokens of window column 0, column P-1, row 0, row P-1
        block = DP * DP
        tl.store(out + 1 * block, tl.sum(tl.where((col == 0)[:, :, :, None], outer, 0.0), axis=0) / P, mask=keep)
        tl.store(out + 2 * block, tl.sum(tl.where((col == P - 1)[:, :, :, None], outer, 0.0), axis=0) / P, mask=keep)
        tl.store(out + 3 * block, tl.sum(tl.where((row == 0)[:, :, :, None], outer, 0.0), axis=0) / P, mask=keep)
        tl.store(out + 4 * block, tl.sum(tl.where((row == P - 1)[:, :, :, None], outer, 0.0), axis=0) / P, mask=keep)


@triton.jit
def _flux(kl, kr, tau, MODE: tl.constexpr):
    """Numerical flux F(kl, kr) across a face (see :func:`napari_dgno.model.dg.interface_flux`)."""
    if MODE == CENTRAL:
        return 0.5 * (kl + kr)
    elif MODE == JUMP:
        return -tau * (kr - kl)
    else:
        return 0.5 * (kl + kr) - tau * (kr - kl)


@triton.jit
def _operator(ops_ptr, b, gi, gj, hh, heads, grid_h, grid_w, slot, keep, SLOTS: tl.constexpr, DP: tl.constexpr):
    """Operator ``slot`` of window (gi, gj), heads ``hh`` (zeros where ``keep`` is false)."""
    at = ops_ptr + _slot_offsets(b, gi, gj, hh, heads, grid_h, grid_w, slot, SLOTS, DP)
    return tl.load(at, mask=keep, other=0.0)


@triton.jit
def dg_apply_kernel(
    qkv_ptr, ops_ptr, tau_ptr, out_ptr,
    heads, grid_h, grid_w,
    s_b, s_c, s_h, s_w,
    s_ob, s_oc, s_oh, s_ow,
    P: tl.constexpr, D: tl.constexpr, DP: tl.constexpr, HB: tl.constexpr, FACE: tl.constexpr, MODE: tl.constexpr,
    DIRICHLET: tl.constexpr,
):
    b, gi, gj, hh = _program(grid_h, grid_w, heads, HB)
    SLOTS: tl.constexpr = 5 if FACE else 1
    WEST: tl.constexpr = 1 if FACE else 0
    EAST: tl.constexpr = 2 if FACE else 0
    NORTH: tl.constexpr = 3 if FACE else 0
    SOUTH: tl.constexpr = 4 if FACE else 0
    tau = 0.0
    if MODE != CENTRAL:
        tau = tl.load(tau_ptr).to(tl.float32)
    keep = _head_block_mask(hh, heads, DP)
    has_e, has_w, has_s, has_n = gj < grid_w - 1, gj > 0, gi < grid_h - 1, gi > 0
    volume = _operator(ops_ptr, b, gi, gj, hh, heads, grid_h, grid_w, 0, keep, SLOTS, DP)
    own_w = _operator(ops_ptr, b, gi, gj, hh, heads, grid_h, grid_w, WEST, keep, SLOTS, DP)
    own_e = _operator(ops_ptr, b, gi, gj, hh, heads, grid_h, grid_w, EAST, keep, SLOTS, DP)
    own_n = _operator(ops_ptr, b, gi, gj, hh, heads, grid_h, grid_w, NORTH, keep, SLOTS, DP)
    own_s = _operator(ops_ptr, b, gi, gj, hh, heads, grid_h, grid_w, SOUTH, keep, SLOTS, DP)
    # Same order as accumulate_flux: horizontal faces (+ right, - left), vertical (+ below, - above).
    flux = tl.zeros(volume.shape, dtype=tl.float32)
    right_w = _operator(ops_ptr, b, gi, gj + 1, hh, heads, grid_h, grid_w, WEST, keep & has_e, SLOTS, DP)
    flux += tl.where(has_e, _flux(own_e, right_w, tau, MODE), 0.0)
    left_e = _operator(ops_ptr, b, gi, gj - 1, hh, heads, grid_h, grid_w, EAST, keep & has_w, SLOTS, DP)
    flux -= tl.where(has_w, _flux(left_e, own_w, tau, MODE), 0.0)
    below_n = _operator(ops_ptr, b, gi + 1, gj, hh, heads, grid_h, grid_w, NORTH, keep & has_s, SLOTS, DP)
    flux += tl.where(has_s, _flux(own_s, below_n, tau, MODE), 0.0)
    above_s = _operator(ops_ptr, b, gi - 1, gj, hh, heads, grid_h, grid_w, SOUTH, keep & has_n, SLOTS, DP)
    flux -= tl.where(has_n, _flux(above_s, own_n, tau, MODE), 0.0)
    if DIRICHLET:  # the official quirk: each boundary cell passes the face opposite the boundary
        none = tl.zeros(volume.shape, dtype=tl.float32)
        flux += tl.where(gj == 0, _flux(own_e, none, tau, MODE), 0.0)
        flux += tl.where(gj == grid_w - 1, _flux(own_w, none, tau, MODE), 0.0)
        flux += tl.where(gi == 0, _flux(own_s, none, tau, MODE), 0.0)
        flux += tl.where(gi == grid_h - 1, _flux(own_n, none, tau, MODE), 0.0)
    operator = volume + flux  # (HB, DP, DP)
    pixels, row, _ = _window_pixels(qkv_ptr, b, gi, gj, s_b, s_h, s_w, P)
    i = tl.arange(0, DP)[None, None, :]
    valid = (i < D) & (hh < heads) & (row >= 0)
    channel = hh * D + i
    q = tl.load(pixels + channel * s_c, mask=valid, other=0.0).to(tl.float32)
    out = tl.sum(q[:, :, :, None] * operator[None, :, :, :], axis=2)  # (P*P, HB, DP)
    target, _, _ = _window_pixels(out_ptr, b, gi, gj, s_ob, s_oh, s_ow, P)
    tl.store(target + channel * s_oc, out.to(out_ptr.dtype.element_ty), mask=valid)
