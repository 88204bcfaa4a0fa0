"""Triton kernels of :mod:`.fusible` (imported only with Triton): depthwise 3x3 convolution fused
with DGNO's gates, and the ASSM's token gather.

NCHW (a program computes a BLOCK_H x BLOCK_W tile of one channel) and two for channels-last maps
(what a 1x1 convolution returns for DGNO's permuted layer-norm output; loads contiguous in
channels): BLOCK_P consecutive pixels x BLOCK_C channels with the nine taps as nine shifted loads
(neighbouring programs' halos come from L1/L2), or a strip of BLOCK_W pixels x BLOCK_C channels
walked down ROWS rows, each input row loaded once (three shifted loads) and added into the three
output rows it touches, so the loads per output fall from nine to three. Accumulated in float32,
then gated and stored in the output's dtype:

* ``GATE == 0`` (GDFN): ``out[c] = gelu(dw(x)[c]) * dw(x)[c + C]`` for an input of 2C channels;
* ``GATE == 1`` (ASSM's CPE): ``out[c] = x[c] * sigmoid(dw(x)[c])``.

The gates are branch-free (:func:`_gelu`, :func:`_sigmoid`): compiled for the GPU they use the
approximate ``ex2`` and reciprocal instructions (``FAST``), under Triton's CPU interpreter plain
``exp2`` and division; both stay within 1e-5 relative of the float64 truth (tests/test_fusible.py).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _ptx(x, INSTRUCTION: tl.constexpr):
    """One approximate float32 PTX instruction (``$0`` result, ``$1`` argument), no range fix-ups."""
    return tl.inline_asm_elementwise(INSTRUCTION, "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def _rcp(x, FAST: tl.constexpr):
    """1 / x; on the GPU one approximate reciprocal (1 ulp; x >= 1 wherever it is used here)."""
    if FAST:
        return _ptx(x, "rcp.approx.ftz.f32 $0, $1;")
    return 1.0 / x


@triton.jit
def _exp2(x, FAST: tl.constexpr):
    """2 ** x; on the GPU one ``ex2.approx.ftz`` (results below 2**-126 flush to zero)."""
    if FAST:
        return _ptx(x, "ex2.approx.ftz.f32 $0, $1;")
    return tl.exp2(x)


@triton.jit
def _gelu(x, FAST: tl.constexpr):
    """``x * Phi(x) = 0.5 x erfc(-x / sqrt(2))`` (torch's exact gelu) with erfc from Numerical
    Recipes' Chebyshev fit, relative error < 1.2e-7 for every argument, so the negative tail keeps
    its relative precision. Branch-free: about 20 instructions against about 35 for ``erf``'s
    two-polynomial form, whose coefficient selects dominated the GDFN kernel."""
    z = tl.abs(x) * 0.7071067811865476
    t = _rcp(1.0 + 0.5 * z, FAST)
    p = 0.17087277 * t - 0.82215223
    p = p * t + 1.48851587
    p = p * t - 1.13520398
    p = p * t + 0.27886807
    p = p * t - 0.18628806
    p = p * t + 0.09678418
    p = p * t + 0.37409196
    p = p * t + 1.00002368
    p = p * t - 1.26551223
    tail = t * _exp2((p - z * z) * 1.4426950408889634, FAST)  # erfc(z)
    return x * tl.where(x >= 0, 1.0 - 0.5 * tail, 0.5 * tail)


@triton.jit
def _sigmoid(x, FAST: tl.constexpr):
    """``1 / (1 + exp(-x))``: 0 for very negative x (exp overflows to inf), 1 for very positive."""
    return _rcp(1.0 + _exp2(x * -1.4426950408889634, FAST), FAST)


@triton.jit
def _taps(base, w_ptr, c, rows, cols, height, width, s_h, s_w):
    acc = tl.zeros(rows.shape, dtype=tl.float32) + tl.zeros(cols.shape, dtype=tl.float32)
    for i in tl.static_range(3):
        for j in tl.static_range(3):
            r = rows + (i - 1)
            q = cols + (j - 1)
            inside = (r >= 0) & (r < height) & (q >= 0) & (q < width)
            value = tl.load(base + r * s_h + q * s_w, mask=inside, other=0.0).to(tl.float32)
            acc += value * tl.load(w_ptr + c * 9 + i * 3 + j).to(tl.float32)
    return acc


@triton.jit
def dwconv3x3_gate_kernel(
    x_ptr, w_ptr, bias_ptr, out_ptr,
    channels, height, width, tiles_w, tiles,
    s_xb, s_xc, s_xh, s_xw,
    s_ob, s_oc, s_oh, s_ow,
    GATE: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
    FAST: tl.constexpr,
):
    # One grid axis (tiles of all channels of all images): the second axis is limited to 65,535.
    image_channel = tl.program_id(0) // tiles
    tile = tl.program_id(0) % tiles
    b = image_channel // channels
    c = image_channel % channels
    rows = (tile // tiles_w) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    cols = (tile % tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    x_image = x_ptr + b.to(tl.int64) * s_xb
    acc = _taps(x_image + c * s_xc, w_ptr, c, rows, cols, height, width, s_xh, s_xw)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + c).to(tl.float32)
    inside = (rows < height) & (cols < width)
    if GATE == 0:
        other = _taps(x_image + (c + channels) * s_xc, w_ptr, c + channels, rows, cols, height, width, s_xh, s_xw)
        if HAS_BIAS:
            other += tl.load(bias_ptr + c + channels).to(tl.float32)
        out = _gelu(acc, FAST) * other
    else:
        centre = tl.load(x_image + c * s_xc + rows * s_xh + cols * s_xw, mask=inside, other=0.0).to(tl.float32)
        out = centre * _sigmoid(acc, FAST)
    target = out_ptr + b.to(tl.int64) * s_ob + c * s_oc + rows * s_oh + cols * s_ow
    tl.store(target, out.to(out_ptr.dtype.element_ty), mask=inside)



@triton.jit
def dwconv3x3_gate_cl_kernel(
    x_ptr, w_ptr, bias_ptr, out_ptr,
    channels, height, width, tiles_p,
    s_xb, s_xh, s_xw,
    s_ob, s_oh, s_ow,
    GATE: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
    FAST: tl.constexpr,
):
    """Channels-last input (channel stride 1), e.g. a 1x1 convolution's output on a permuted map: a
    program computes BLOCK_P consecutive pixels x BLOCK_C channels, every load contiguous in channels."""
    b = tl.program_id(0) // tiles_p
    pix = (tl.program_id(0) % tiles_p) * BLOCK_P + tl.arange(0, BLOCK_P)[:, None]
    ch = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)[None, :]
    row = pix // width
    col = pix % width
    valid_c = ch < channels
    valid = (pix < height * width) & valid_c
    x_image = x_ptr + b.to(tl.int64) * s_xb
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    other = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    for i in tl.static_range(3):
        for j in tl.static_range(3):
            r = row + (i - 1)
            q = col + (j - 1)
            m = valid & (r >= 0) & (r < height) & (q >= 0) & (q < width)
            at = x_image + r * s_xh + q * s_xw
            w = tl.load(w_ptr + ch * 9 + (i * 3 + j), mask=valid_c, other=0.0).to(tl.float32)
            acc += tl.load(at + ch, mask=m, other=0.0).to(tl.float32) * w
            if GATE == 0:
                w2 = tl.load(w_ptr + (ch + channels) * 9 + (i * 3 + j), mask=valid_c, other=0.0).to(tl.float32)
                other += tl.load(at + ch + channels, mask=m, other=0.0).to(tl.float32) * w2
    if HAS_BIAS:
        acc += tl.load(bias_ptr + ch, mask=valid_c, other=0.0).to(tl.float32)
        if GATE == 0:
            other += tl.load(bias_ptr + ch + channels, mask=valid_c, other=0.0).to(tl.float32)
    if GATE == 0:
        out = _gelu(acc, FAST) * other
    else:
        centre = tl.load(x_image + row * s_xh + col * s_xw + ch, mask=valid, other=0.0).to(tl.float32)
        out = centre * _sigmoid(acc, FAST)
    target = out_ptr + b.to(tl.int64) * s_ob + row * s_oh + col * s_ow + ch
    tl.store(target, out.to(out_ptr.dtype.element_ty), mask=valid)


@triton.jit
def dwconv3x3_gate_rows_kernel(
    x_ptr, w_ptr, bias_ptr, out_ptr,
    channels, height, width, tiles_w, tiles_h, w_stride,
    s_xb, s_xh, s_xw,
    s_ob, s_oh, s_ow,
    GATE: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr, ROWS: tl.constexpr,
    FAST: tl.constexpr,
):
    """Channels-last input: a program walks ROWS output rows of a BLOCK_W x BLOCK_C strip from the top.

    Input row r (three loads, shifted by a column) is the bottom tap row of output r - 1 (finished
    and stored now), the middle of output r and the top of output r + 1 (accumulators carried on,
    each started at the bias). ``w_ptr`` holds the taps tap-major, ``(9, w_stride)`` float32, and
    ``bias_ptr`` ``w_stride`` float32, both zero beyond the input's channels so that no weight load
    needs a mask: a thread's channels of one tap come in whole vector loads. The read and write
    pointers and the column masks are set up once and carried down the rows (the previous version
    recomputed them per row and loaded each weight alone: 104.5 loop instructions per output for the
    gelu gate, 59.5 now, ``bench/kernel_sass.py --dwgate``). Weights are re-read from L1 inside the
    loop: keeping all nine (eighteen for gelu) in registers was 10-20% slower on an H200
    (bench/bench_fused.py).
    """
    pid = tl.program_id(0)
    b = pid // (tiles_h * tiles_w)
    first_row = ((pid // tiles_w) % tiles_h) * ROWS
    cols = (pid % tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W)[:, None]
    ch = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)[None, :]
    valid_c = ch < channels
    left_ok = valid_c & (cols >= 1) & (cols <= width)  # column cols - 1 exists
    centre_ok = valid_c & (cols < width)
    right_ok = valid_c & (cols < width - 1)  # column cols + 1 exists
    bias = tl.zeros((1, BLOCK_C), dtype=tl.float32)
    bias2 = tl.zeros((1, BLOCK_C), dtype=tl.float32)
    if HAS_BIAS:
        bias += tl.load(bias_ptr + ch)
        if GATE == 0:
            bias2 += tl.load(bias_ptr + ch + channels)
    zero = tl.zeros((BLOCK_W, BLOCK_C), dtype=tl.float32)
    # Output rows first_row - 2 and - 1 are never stored; the loop's first input row is first_row - 1.
    done, mid, done2, mid2, centre_above = zero + bias, zero + bias, zero + bias2, zero + bias2, zero
    row_at = x_ptr + b.to(tl.int64) * s_xb + (first_row - 1) * s_xh + cols * s_xw + ch
    out_at = out_ptr + b.to(tl.int64) * s_ob + (first_row - 2) * s_oh + cols * s_ow + ch
    taps = w_ptr + ch
    for k in range(ROWS + 2):
        r = first_row + k - 1  # the input row read now; output row r - 1 is finished after it
        in_rows = (r >= 0) & (r < height)
        top, top2, centre = zero + bias, zero + bias2, zero
        for j in tl.static_range(3):
            if j == 0:
                m = left_ok & in_rows
            elif j == 1:
                m = centre_ok & in_rows
            else:
                m = right_ok & in_rows
            v = tl.load(row_at + (j - 1) * s_xw, mask=m, other=0.0).to(tl.float32)
            done += v * tl.load(taps + (6 + j) * w_stride)
            mid += v * tl.load(taps + (3 + j) * w_stride)
            top += v * tl.load(taps + j * w_stride)
            if j == 1:
                centre = v
            if GATE == 0:
                v2 = tl.load(row_at + (j - 1) * s_xw + channels, mask=m, other=0.0).to(tl.float32)
                done2 += v2 * tl.load(taps + channels + (6 + j) * w_stride)
                mid2 += v2 * tl.load(taps + channels + (3 + j) * w_stride)
                top2 += v2 * tl.load(taps + channels + j * w_stride)
        if GATE == 0:
            out = _gelu(done, FAST) * done2
        else:
            out = centre_above * _sigmoid(done, FAST)
        keep = centre_ok & (k >= 2) & (r - 1 < height)
        tl.store(out_at, out.to(out_ptr.dtype.element_ty), mask=keep)
        done, mid, done2, mid2, centre_above = mid, top, mid2, top2, centre
        row_at += s_xh
        out_at += s_oh


@triton.jit
def gather_tokens_kernel(
    z_ptr, order_ptr, out_ptr,
    channels, tokens, tiles_l,
    s_zb, s_zt, s_ob, s_oc,
    BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """out[b, c, l] = z[b, c, order[b, l]] for a channels-last z (channel stride 1, token stride s_zt):
    each program reads BLOCK_L whole token rows (contiguous in channels) and writes them transposed
    (contiguous in l); Triton moves the tile between the two layouts through shared memory."""
    b = tl.program_id(0) // tiles_l
    l = (tl.program_id(0) % tiles_l) * BLOCK_L + tl.arange(0, BLOCK_L)
    c = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    valid = (l < tokens)[:, None] & (c < channels)[None, :]
    source = tl.load(order_ptr + b.to(tl.int64) * tokens + l, mask=l < tokens, other=0)
    values = tl.load(z_ptr + b.to(tl.int64) * s_zb + source[:, None] * s_zt + c[None, :], mask=valid)
    tl.store(out_ptr + b.to(tl.int64) * s_ob + c[None, :] * s_oc + l[:, None], values, mask=valid)
