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
"""

from __future__ import annotations

import triton
import triton.language as tl


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
        out = 0.5 * acc * (1.0 + tl.math.erf(acc * 0.7071067811865476)) * other
    else:
        centre = tl.load(x_image + c * s_xc + rows * s_xh + cols * s_xw, mask=inside, other=0.0).to(tl.float32)
        out = centre * tl.sigmoid(acc)
    target = out_ptr + b.to(tl.int64) * s_ob + c * s_oc + rows * s_oh + cols * s_ow
    tl.store(target, out.to(out_ptr.dtype.element_ty), mask=inside)



@triton.jit
def dwconv3x3_gate_cl_kernel(
    x_ptr, w_ptr, bias_ptr, out_ptr,
    channels, height, width, tiles_p,
    s_xb, s_xh, s_xw,
    s_ob, s_oh, s_ow,
    GATE: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
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
        out = 0.5 * acc * (1.0 + tl.math.erf(acc * 0.7071067811865476)) * other
    else:
        centre = tl.load(x_image + row * s_xh + col * s_xw + ch, mask=valid, other=0.0).to(tl.float32)
        out = centre * tl.sigmoid(acc)
    target = out_ptr + b.to(tl.int64) * s_ob + row * s_oh + col * s_ow + ch
    tl.store(target, out.to(out_ptr.dtype.element_ty), mask=valid)


@triton.jit
def dwconv3x3_gate_rows_kernel(
    x_ptr, w_ptr, bias_ptr, out_ptr,
    channels, height, width, tiles_w, tiles_h,
    s_xb, s_xh, s_xw,
    s_ob, s_oh, s_ow,
    GATE: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr, ROWS: tl.constexpr,
):
    """Channels-last input: a program walks ROWS output rows of a BLOCK_W x BLOCK_C strip from the top.

    Input row r (three loads, shifted by a column) is the bottom tap row of output r - 1 (finished
    and stored now), the middle of output r and the top of output r + 1 (accumulators carried on).
    The taps' weights are re-read from L1 inside the loop: keeping all nine (eighteen for gelu) in
    registers across it was 10-20% slower on an H200 (bench/bench_fused.py).
    """
    pid = tl.program_id(0)
    b = pid // (tiles_h * tiles_w)
    first_row = ((pid // tiles_w) % tiles_h) * ROWS
    cols = (pid % tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W)[:, None]
    ch = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)[None, :]
    valid_c = ch < channels
    valid = valid_c & (cols < width)
    x_image = x_ptr + b.to(tl.int64) * s_xb
    out_image = out_ptr + b.to(tl.int64) * s_ob
    bias = tl.zeros((1, BLOCK_C), dtype=tl.float32)
    bias2 = tl.zeros((1, BLOCK_C), dtype=tl.float32)
    if HAS_BIAS:
        bias += tl.load(bias_ptr + ch, mask=valid_c, other=0.0).to(tl.float32)
        if GATE == 0:
            bias2 += tl.load(bias_ptr + ch + channels, mask=valid_c, other=0.0).to(tl.float32)
    zero = tl.zeros((BLOCK_W, BLOCK_C), dtype=tl.float32)
    done, mid, done2, mid2, centre_above = zero, zero, zero, zero, zero
    for k in range(ROWS + 2):
        r = first_row + k - 1  # the input row read now; output row r - 1 is finished after it
        top, top2, centre = zero, zero, zero
        in_rows = (r >= 0) & (r < height)
        for j in tl.static_range(3):
            q = cols + (j - 1)
            m = valid_c & in_rows & (q >= 0) & (q < width)
            at = x_image + r * s_xh + q * s_xw + ch
            v = tl.load(at, mask=m, other=0.0).to(tl.float32)
            done += v * tl.load(w_ptr + ch * 9 + (6 + j), mask=valid_c, other=0.0).to(tl.float32)
            mid += v * tl.load(w_ptr + ch * 9 + (3 + j), mask=valid_c, other=0.0).to(tl.float32)
            top += v * tl.load(w_ptr + ch * 9 + j, mask=valid_c, other=0.0).to(tl.float32)
            if j == 1:
                centre = v
            if GATE == 0:
                w2 = w_ptr + (ch + channels) * 9
                v2 = tl.load(at + channels, mask=m, other=0.0).to(tl.float32)
                done2 += v2 * tl.load(w2 + (6 + j), mask=valid_c, other=0.0).to(tl.float32)
                mid2 += v2 * tl.load(w2 + (3 + j), mask=valid_c, other=0.0).to(tl.float32)
                top2 += v2 * tl.load(w2 + j, mask=valid_c, other=0.0).to(tl.float32)
        acc = done + bias
        if GATE == 0:
            other = done2 + bias2
            out = 0.5 * acc * (1.0 + tl.math.erf(acc * 0.7071067811865476)) * other
        else:
            out = centre_above * tl.sigmoid(acc)
        row = r - 1
        keep = valid & (k >= 2) & (row < height)
        tl.store(out_image + row * s_oh + cols * s_ow + ch, out.to(out_ptr.dtype.element_ty), mask=keep)
        done, mid, done2, mid2, centre_above = mid, top, mid2, top2, centre


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
