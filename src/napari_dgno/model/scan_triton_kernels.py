"""Triton kernels of the chunked selective scan (imported only when Triton is installed).

The sequence is cut into ``nc`` chunks of ``K * W`` steps. One program takes ``BD`` channels of
one chunk (one channel per thread) and walks the chunk ``W`` steps at a time: each step's tile is
``[N, W, BD]`` with channels across threads and the ``W`` steps and ``N`` states of a channel inside
its thread, so the ``tl.associative_scan`` over ``W`` (combine ``(a1, b1), (a2, b2) ->
(a1 a2, a2 b1 + b2)``) compiles to a short sequential loop in registers, the sum over states stays
in the thread, and the loads are ``W``-wide vectors. Forward:

1. ``_seq_chunk_kernel`` (``MODE=SUMMARY``): each chunk's end state from a zero start, and its
   total ``delta`` (the chunk's decay is ``exp(A * total)``);
2. ``_carry_kernel``: an associative scan over chunks turns those into the true state at every
   chunk end;
3. ``_seq_chunk_kernel`` (``MODE=APPLY``): every chunk again from its incoming state, writing y.
   With a single chunk only this launch runs.

Every exponent is ``A * (a sum of delta) <= 0`` (for ``A <= 0`` and softplus-ed ``delta``): decays
multiply, never divide, so nothing overflows whatever ``delta`` is. The backward pass uses the same
summaries in both directions (``MODE=ADJOINT`` for the adjoint entering each chunk from the right)
and ``_scan_bwd_kernel``, which scans ``[BD, BT]`` tiles both ways along time and writes all
gradients.

For short sequences (and many channels) ``_scan_single_kernel`` does the whole forward in one
launch, like mamba-ssm's kernel: one program per (batch, ``BD`` channels) walks the sequence in
tiles of ``T`` steps spread over its threads, scans each ``[BD, N, T]`` tile across threads with
``tl.associative_scan``, folds in the state carried from the previous tile and writes y. No chunk
summaries, no carry pass: one launch instead of three, at the price of a serial walk of
``ceil(L / T)`` tiles per program.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)  # exp(x) = exp2(x * LOG2E)
LOG2E_LO = tl.constexpr(1.9259629911e-08)  # LOG2E - float32(LOG2E)
LN2 = tl.constexpr(0.6931471805599453)

APPLY = tl.constexpr(0)  # write y, starting from the carried state
SUMMARY = tl.constexpr(1)  # chunk end state from zero, forward in time
ADJOINT = tl.constexpr(2)  # chunk adjoint from zero, backward in time


@triton.jit
def _affine(a1, b1, a2, b2):
    """Compose h -> a1 h + b1 (earlier) with h -> a2 h + b2 (later)."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(x):
    """log(1 + exp(x)) with torch's threshold 20, to ~3e-7 relative, for any x.

    softplus(x) = max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1], and log1p(e) = 2 atanh(s) with
    s = e / (2 + e) in (0, 1/3]: an odd series in s (terms to s^13, error < 3e-8) that stays
    accurate for tiny e and costs far less on GPUs than an accurate log.
    """
    ax = -tl.abs(x)
    t = ax * LOG2E
    r = tl.fma(ax, LOG2E, -t) + ax * LOG2E_LO  # rounding of t (exact with a fused multiply-add)
    e = tl.exp2(t) * (1.0 + r * LN2)
    s = tl.fdiv(e, 2.0 + e)
    s2 = s * s
    p = 2.0 / 13.0
    p = p * s2 + 2.0 / 11.0
    p = p * s2 + 2.0 / 9.0
    p = p * s2 + 2.0 / 7.0
    p = p * s2 + 2.0 / 5.0
    p = p * s2 + 2.0 / 3.0
    p = p * s2 + 2.0
    return tl.where(x > 20.0, x, tl.maximum(x, 0.0) + p * s)


@triton.jit
def _softplus_grad(x):
    """d softplus / dx with the same threshold: sigmoid(x) below 20, 1 above."""
    z = tl.exp(tl.minimum(x, 20.0))
    return tl.where(x > 20.0, 1.0, z / (1.0 + z))


@triton.jit
def _load_delta(ptr, mask, bias, SOFTPLUS: tl.constexpr):
    """delta' = softplus(delta + bias) in float32; 0 where masked (decay 1, no input)."""
    x = tl.load(ptr, mask=mask, other=0.0).to(tl.float32) + bias
    if SOFTPLUS:
        x = _softplus(x)
    return tl.where(mask, x, 0.0)


@triton.jit
def _seq_chunk_kernel(
    v_ptr, dt_ptr, A_ptr, M_ptr, C_ptr, D_ptr, bias_ptr, st_ptr, sd_ptr, y_ptr,
    L, DIM,
    s_vb, s_vd, s_vl,
    s_tb, s_td, s_tl,
    s_ad, s_an,
    s_Mb, s_Mn, s_Ml,
    s_Cb, s_Cn, s_Cl,
    s_D, s_bias,
    s_sb, s_sc, s_sn,
    s_db, s_dc,
    s_yb, s_yd, s_yl,
    N: tl.constexpr, BD: tl.constexpr, W: tl.constexpr, K: tl.constexpr, STAGES: tl.constexpr,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    MODE: tl.constexpr, HAS_STATE: tl.constexpr,
):
    """One chunk of K * W steps for BD channels, W steps at a time with the state in registers.

    ``APPLY`` (v = u, M = B): h_t = a_t h_{t-1} + delta_t u_t B_t from the incoming state (slot
    c - 1 of ``st``, zero for chunk 0); writes y_t = sum_n h_t C_t + D u_t.
    ``SUMMARY`` (v = u, M = B): the same recurrence from zero; stores the end state at slot c.
    ``ADJOINT`` (v = dy, M = C, chunk c = slot + 1): r <- a_t (dy_t C_t + r) backwards from the
    chunk end, i.e. sum_t exp(A sum_{start<=s<=t} delta_s) dy_t C_t; stored at slot c - 1.
    Both summaries also store the chunk's total delta in ``sd``. ``st`` is (b, slots, n, d).
    """
    pid_c = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    chunk = pid_c + 1 if MODE == ADJOINT else pid_c
    offs_d = pid_d * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, N)
    offs_w = tl.arange(0, W)
    mask_d = (offs_d < DIM)[None, :]
    d64 = offs_d.to(tl.int64)[None, :]
    mask_nd = mask_d & (offs_n < N)[:, None]
    a2 = tl.load(A_ptr + d64 * s_ad + offs_n[:, None] * s_an, mask=mask_nd, other=0.0)
    a2 = (a2.to(tl.float32) * LOG2E)[:, None, :]  # [N, 1, BD]
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d64 * s_bias, mask=mask_d, other=0.0).to(tl.float32)
    else:
        bias = 0.0
    if HAS_D:
        dskip = tl.load(D_ptr + d64 * s_D, mask=mask_d, other=0.0).to(tl.float32)
    st_off = pid_b * s_sb + offs_n[:, None] * s_sn + d64
    # The state is picked from an [N, W, BD] tile with a -0.0-masked sum over the in-thread W axis:
    # -0.0 is the exact identity of +, so with the mask known per register the sum folds into a
    # register move. (The literal -0.0 loses its sign in Triton, hence the bit pattern.)
    neg_zero = tl.full([1, 1, 1], 0x80000000, tl.uint32).to(tl.float32, bitcast=True)
    if HAS_STATE:
        state = tl.load(st_ptr + st_off + (pid_c - 1) * s_sc, mask=mask_nd & (pid_c > 0), other=0.0)
        # Route the loaded state through the tile layout once, so that the loop carries it in
        # that layout (otherwise it is converted back and forth on every step).
        state = tl.sum(tl.where((offs_w == 0)[None, :, None], state[:, None, :], neg_zero), axis=1)
    else:
        state = tl.zeros([N, BD], dtype=tl.float32)
    dsum = tl.zeros([W, BD], dtype=tl.float32)
    v_rows = v_ptr + pid_b * s_vb + d64 * s_vd
    dt_rows = dt_ptr + pid_b * s_tb + d64 * s_td
    y_rows = y_ptr + pid_b * s_yb + d64 * s_yd
    m_rows = M_ptr + pid_b * s_Mb + offs_n[:, None] * s_Mn
    c_rows = C_ptr + pid_b * s_Cb + offs_n[:, None] * s_Cn
    for kk in tl.range(K, num_stages=STAGES):
        k = K - 1 - kk if MODE == ADJOINT else kk
        offs_t = chunk * (K * W) + k * W + offs_w
        t64 = offs_t.to(tl.int64)
        mask_t = offs_t < L
        mask = mask_t[:, None] & mask_d
        dt = _load_delta(dt_rows + t64[:, None] * s_tl, mask, bias, SOFTPLUS)  # [W, BD]
        v = tl.load(v_rows + t64[:, None] * s_vl, mask=mask, other=0.0).to(tl.float32)
        m = tl.load(m_rows + t64[None, :] * s_Ml, mask=mask_t[None, :], other=0.0).to(tl.float32)  # [N, W]
        a = tl.exp2(dt[None, :, :] * a2)  # [N, W, BD]; exponent <= 0
        if MODE == ADJOINT:
            # r_t = a_t (dy_t C_t + r_{t+1}): a scan backwards in time over (a_t, a_t dy_t C_t).
            p, h = tl.associative_scan((a, a * (v[None, :, :] * m[:, :, None])), axis=1,
                                       combine_fn=_affine, reverse=True)
            h += p * state[:, None, :]
            state = tl.sum(tl.where((offs_w == 0)[None, :, None], h, neg_zero), axis=1)
        else:
            # W is inside each thread, so this scan is a short sequential loop in registers.
            p, h = tl.associative_scan((a, (dt * v)[None, :, :] * m[:, :, None]), axis=1, combine_fn=_affine)
            h += p * state[:, None, :]
            state = tl.sum(tl.where((offs_w == W - 1)[None, :, None], h, neg_zero), axis=1)
        if MODE == APPLY:
            c = tl.load(c_rows + t64[None, :] * s_Cl, mask=mask_t[None, :], other=0.0).to(tl.float32)
            y = tl.sum(h * c[:, :, None], axis=0)
            if HAS_D:
                y += dskip * v
            tl.store(y_rows + t64[:, None] * s_yl, y, mask=mask)
        else:
            dsum += dt
    if MODE != APPLY:
        tl.store(st_ptr + st_off + pid_c * s_sc, state, mask=mask_nd)
        tl.store(sd_ptr + pid_b * s_db + pid_c * s_dc + d64, tl.sum(dsum, axis=0)[None, :], mask=mask_d)


@triton.jit
def _carry_kernel(
    st_ptr, sd_ptr, A_ptr,
    SLOTS, DIM,
    s_sb, s_sc,
    s_db, s_dc,
    s_ad, s_an,
    N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_M: tl.constexpr, N_ITER: tl.constexpr,
    REVERSE: tl.constexpr,
):
    """In place, over slots j: s_j <- exp(A sd_j) s_{j-1} + s_j (``REVERSE``: s_{j+1} instead).

    ``st`` is (b, slots, n * d) with index m = n * d + channel, ``sd`` (b, slots, d). Slots are
    scanned ``BLOCK_C`` at a time with the affine combine, carrying across blocks. ``N_ITER`` (a
    power of two >= ceil(SLOTS / BLOCK_C), so few variants compile) bounds the loop; surplus
    blocks are fully masked and leave the carry unchanged.
    """
    pid_m = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < N * DIM
    d_idx = (offs_m % DIM).to(tl.int64)
    n_idx = offs_m // DIM
    a2 = tl.load(A_ptr + d_idx * s_ad + n_idx * s_an, mask=mask_m, other=0.0).to(tl.float32) * LOG2E
    carry = tl.zeros([BLOCK_M], dtype=tl.float32)
    rows = tl.arange(0, BLOCK_C)
    last = 0 if REVERSE else BLOCK_C - 1
    for i in range(N_ITER):
        if REVERSE:
            offs_c = SLOTS - (i + 1) * BLOCK_C + rows
        else:
            offs_c = i * BLOCK_C + rows
        mask = ((offs_c >= 0) & (offs_c < SLOTS))[:, None] & mask_m[None, :]
        c64 = offs_c.to(tl.int64)
        s_ptrs = st_ptr + pid_b * s_sb + c64[:, None] * s_sc + offs_m[None, :]
        s = tl.load(s_ptrs, mask=mask, other=0.0)
        sd = tl.load(sd_ptr + pid_b * s_db + c64[:, None] * s_dc + d_idx[None, :], mask=mask, other=0.0)
        dec = tl.exp2(sd * a2[None, :])  # masked slots: decay 1, state 0 (identity)
        p, h = tl.associative_scan((dec, s), axis=0, combine_fn=_affine, reverse=REVERSE)
        h = h + p * carry[None, :]
        tl.store(s_ptrs, h, mask=mask)
        carry = tl.sum(tl.where((rows == last)[:, None], h, 0.0), axis=0)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, g_ptr, sf_ptr, sr_ptr,
    du_ptr, ddt_ptr, dA_ptr, dB_ptr, dC_ptr,
    L, DIM, NC,
    s_ub, s_ud, s_ul,
    s_tb, s_td, s_tl,
    s_ad, s_an,
    s_Bb, s_Bn, s_Bl,
    s_Cb, s_Cn, s_Cl,
    s_D, s_bias,
    s_gb, s_gd, s_gl,
    s_sb, s_sc, s_sn,
    s_ob, s_od,
    s_ab, s_ac, s_a_d,
    s_pb, s_pk, s_pn,
    N: tl.constexpr, BD: tl.constexpr, BT: tl.constexpr,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_STATE: tl.constexpr,
):
    """All gradients of one chunk of BD channels.

    A forward scan gives h_t (plus the incoming state, ``sf`` slot c-1); a reverse scan with the
    next step's decay gives the adjoint lam_t = C_t dy_t + a_{t+1} lam_{t+1} (plus the adjoint
    entering from the right, ``sr`` slot c). Then, with a_t h_{t-1} = h_t - x_t:
    du = sum_n lam delta B + D dy; d delta' = sum_n lam (u B + A (h - x)); dA = sum_t lam delta (h - x);
    dB = sum_d lam delta u and dC = sum_d dy h (per channel block, summed by the caller).
    """
    pid_c = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_d = pid_d * BD + tl.arange(0, BD)
    offs_t = pid_c * BT + tl.arange(0, BT)
    t_end = tl.minimum(pid_c * BT + BT, L)
    mask_d = offs_d < DIM
    mask_t = offs_t < t_end
    mask = mask_d[:, None] & mask_t[None, :]
    mask_next = mask_d[:, None] & ((offs_t + 1) < t_end)[None, :]
    d64 = offs_d.to(tl.int64)
    t64 = offs_t.to(tl.int64)

    if HAS_BIAS:
        bias = tl.load(bias_ptr + d64 * s_bias, mask=mask_d, other=0.0).to(tl.float32)[:, None]
    else:
        bias = 0.0
    dt_ptrs = dt_ptr + pid_b * s_tb + d64[:, None] * s_td + t64[None, :] * s_tl
    raw = tl.load(dt_ptrs, mask=mask, other=0.0).to(tl.float32) + bias
    if SOFTPLUS:
        dt = tl.where(mask, _softplus(raw), 0.0)
        dsp = _softplus_grad(raw)
    else:
        dt = tl.where(mask, raw, 0.0)
        dsp = 1.0
    dt_next = _load_delta(dt_ptrs + s_tl, mask_next, bias, SOFTPLUS)
    u = tl.load(u_ptr + pid_b * s_ub + d64[:, None] * s_ud + t64[None, :] * s_ul, mask=mask, other=0.0)
    u = u.to(tl.float32)
    g = tl.load(g_ptr + pid_b * s_gb + d64[:, None] * s_gd + t64[None, :] * s_gl, mask=mask, other=0.0)
    g = g.to(tl.float32)
    dtu = dt * u
    du = tl.zeros([BD, BT], dtype=tl.float32)
    if HAS_D:
        du += tl.load(D_ptr + d64 * s_D, mask=mask_d, other=0.0).to(tl.float32)[:, None] * g
    ddt = tl.zeros([BD, BT], dtype=tl.float32)
    sf_rows = sf_ptr + pid_b * s_sb + (pid_c - 1) * s_sc + d64
    sr_rows = sr_ptr + pid_b * s_sb + pid_c * s_sc + d64
    part = pid_b * s_pb + pid_d * s_pk + t64
    for n in range(N):
        a_n = tl.load(A_ptr + d64 * s_ad + n * s_an, mask=mask_d, other=0.0).to(tl.float32)
        a2 = a_n * LOG2E
        b = tl.load(B_ptr + pid_b * s_Bb + n * s_Bn + t64 * s_Bl, mask=mask_t, other=0.0).to(tl.float32)
        c = tl.load(C_ptr + pid_b * s_Cb + n * s_Cn + t64 * s_Cl, mask=mask_t, other=0.0).to(tl.float32)
        x = dtu * b[None, :]
        p, h = tl.associative_scan((tl.exp2(dt * a2[:, None]), x), axis=1, combine_fn=_affine)
        q, lam = tl.associative_scan(
            (tl.exp2(dt_next * a2[:, None]), g * c[None, :]), axis=1, combine_fn=_affine, reverse=True
        )
        if HAS_STATE:
            h += p * tl.load(sf_rows + n * s_sn, mask=mask_d & (pid_c > 0), other=0.0)[:, None]
            lam += q * tl.load(sr_rows + n * s_sn, mask=mask_d & (pid_c < NC - 1), other=0.0)[:, None]
        hx = h - x  # a_t h_{t-1}
        lb = lam * b[None, :]
        du += lb * dt
        ddt += lb * u + lam * hx * a_n[:, None]
        tl.store(dA_ptr + pid_b * s_ab + pid_c * s_ac + d64 * s_a_d + n, tl.sum(lam * hx * dt, axis=1), mask=mask_d)
        tl.store(dB_ptr + part + n * s_pn, tl.sum(lam * dtu, axis=0), mask=mask_t)
        tl.store(dC_ptr + part + n * s_pn, tl.sum(g * h, axis=0), mask=mask_t)
    out = pid_b * s_ob + d64[:, None] * s_od + t64[None, :]
    tl.store(du_ptr + out, du, mask=mask)
    tl.store(ddt_ptr + out, ddt * dsp, mask=mask)


@triton.jit
def _scan_single_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr,
    L, DIM,
    s_ub, s_ud, s_ul,
    s_tb, s_td, s_tl,
    s_ad, s_an,
    s_Bb, s_Bn, s_Bl,
    s_Cb, s_Cn, s_Cl,
    s_D, s_bias,
    s_yb, s_yd, s_yl,
    N: tl.constexpr, NP: tl.constexpr, BD: tl.constexpr, T: tl.constexpr, STAGES: tl.constexpr,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, INTERP_L: tl.constexpr,
):
    """The whole forward scan of BD channels of one batch element, T steps at a time.

    Each tile is ``[BD, NP, T]`` (NP = N rounded up to a power of two; padded states have A = 0
    and B = C = 0, so they stay zero) with the steps spread over the threads:
    ``tl.associative_scan`` along T gives, per (channel, state), the tile's cumulative decay p_t
    and its state from zero h_t; the true state is h_t + p_t * carry, and the last step's state is
    the next tile's carry. Steps past L have delta = 0 (decay 1, no input), so they leave the
    state as it is and their y is not stored. ``INTERP_L`` is 0 when compiled; under
    ``TRITON_INTERPRET`` it is L again, as a plain int: the interpreter cannot take a runtime loop
    bound (with NumPy >= 2.4 its scalars are 1-element arrays, which ``range`` refuses).
    """
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    # Every load and store is a 3-D [BD | 1, NP | 1, T] tile, so that the compiler lays the whole
    # tile out as they are (4 consecutive steps per thread, threads and warps along T, channels and
    # states in registers): the scan then runs 4 steps in-thread before the cross-thread phase, and
    # the sum over states stays in the thread. (2-D loads left the 3-D compute in a layout with
    # one step per thread, repeated T / (32 * num_warps) times: 4x the cross-thread work.)
    offs_d = pid_d * BD + tl.arange(0, BD)[:, None, None]  # [BD, 1, 1]
    offs_n = tl.arange(0, NP)[None, :, None]  # [1, NP, 1]
    offs_t = tl.arange(0, T)[None, None, :]  # [1, 1, T]
    mask_d = offs_d < DIM
    mask_n = offs_n < N
    d64 = offs_d.to(tl.int64)
    a2 = tl.load(A_ptr + d64 * s_ad + offs_n * s_an, mask=mask_d & mask_n, other=0.0)
    a2 = a2.to(tl.float32) * LOG2E  # [BD, NP, 1]
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d64 * s_bias, mask=mask_d, other=0.0).to(tl.float32)  # [BD, 1, 1]
    else:
        bias = 0.0
    if HAS_D:
        dskip = tl.load(D_ptr + d64 * s_D, mask=mask_d, other=0.0).to(tl.float32)
    # The carry, born in the layout of the tile reduction that updates it (no conversions in the loop).
    state = tl.sum(tl.zeros([BD, NP, T], dtype=tl.float32), axis=2)
    # -0.0 is the exact identity of +: the masked sum that picks the last step is exact.
    neg_zero = tl.full([1, 1, 1], 0x80000000, tl.uint32).to(tl.float32, bitcast=True)
    is_last = offs_t == T - 1
    u_rows = u_ptr + pid_b * s_ub + d64 * s_ud
    dt_rows = dt_ptr + pid_b * s_tb + d64 * s_td
    y_rows = y_ptr + pid_b * s_yb + d64 * s_yd
    b_rows = B_ptr + pid_b * s_Bb + offs_n * s_Bn
    c_rows = C_ptr + pid_b * s_Cb + offs_n * s_Cn
    for t0 in tl.range(0, L if INTERP_L == 0 else INTERP_L, T, num_stages=STAGES):
        offs = t0 + offs_t
        t64 = offs.to(tl.int64)
        mask_t = offs < L
        mask = mask_d & mask_t  # [BD, 1, T]
        mask_nt = mask_n & mask_t  # [1, NP, T]
        dt = _load_delta(dt_rows + t64 * s_tl, mask, bias, SOFTPLUS)  # [BD, 1, T]
        u = tl.load(u_rows + t64 * s_ul, mask=mask, other=0.0).to(tl.float32)
        bm = tl.load(b_rows + t64 * s_Bl, mask=mask_nt, other=0.0).to(tl.float32)  # [1, NP, T]
        cm = tl.load(c_rows + t64 * s_Cl, mask=mask_nt, other=0.0).to(tl.float32)
        a = tl.exp2(dt * a2)  # [BD, NP, T]; exponent <= 0
        x = (dt * u) * bm
        p, h = tl.associative_scan((a, x), axis=2, combine_fn=_affine)
        h += p * state[:, :, None]
        state = tl.sum(tl.where(is_last, h, neg_zero), axis=2)
        y = tl.sum(h * cm, axis=1, keep_dims=True)  # [BD, 1, T]
        if HAS_D:
            y += dskip * u
        tl.store(y_rows + t64 * s_yl, y, mask=mask)
