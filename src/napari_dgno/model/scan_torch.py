"""Block-wise selective scan in pure PyTorch: fast on CPU, any device, differentiable, overflow-free.

The sequence is processed in blocks of about :data:`BLOCK_ELEMENTS` state values (b · d · n · steps),
so that the (b, d, n, steps) temporaries stay in the CPU caches; delta's bias and softplus are applied per
block too, and the state h (b, d, n) is carried from block to block. Inside a block the steps are
cut into chunks of T steps, scanned in parallel from a zero state; a short loop over the chunks then
chains their end states, and each chunk's incoming state is added back. Two forms scan a chunk:

*factorised* (the fast one). With c_t = δ_1 + ... + δ_t inside the chunk and its midpoint r:

    h_t = e^{A c_t} h_in + Σ_{s<=t} e^{A (c_t - c_s)} B_s x_s
        = e^{A (c_t - r)} [ e^{A r} h_in + cumsum_s( e^{-A (c_s - r)} B_s x_s ) ]

one exp2, one division and one cumsum per (d, n, t), no loop over steps. It multiplies numbers up
to e^{|A| span / 2} (span = the chunk's Σδ), so a channel uses it only while max_n |A| · span stays
under :data:`SPAN_LIMIT` (float32: the relative error stays near eps · span; float64: far from
overflow). T is picked per block: the longest that fits.

*stepwise*, for channels whose spans exceed the limit even in the shortest chunk (large δ · |A|, as
trained models and extreme inputs have): T vectorised recurrence steps over all chunks at once,
where every exponent is <= 0 (for δ >= 0), so nothing can overflow.

Without autograd every big temporary is reused in place; with autograd the same maths runs out of
place. Only plain tensor ops are used, so it runs on any device.
"""

from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F
from torch import Tensor

from .scan_reference import compute_dtype, prepare_delta

LOG2E = math.log2(math.e)
#: Largest chunk exponent span max_n|A[d, n]| · Σδ (natural-log units) for the factorised form.
SPAN_LIMIT = {torch.float32: 32.0, torch.float64: 600.0}
#: Chunk lengths (powers of two) the factorised form chooses from, and the stepwise form's.
CHUNK_MIN, CHUNK_MAX, STEPWISE_CHUNK = 8, 64, 16
#: State values (b · d · n · steps) per block: a few MB of temporaries, few enough Python ops.
BLOCK_ELEMENTS = 1 << 20
#: Shortest rows a block takes (channels are split into groups instead): short strided rows are slow.
MIN_BLOCK_STEPS = 512
#: Blocks between full searches for the chunk length (in between, the last one is only checked).
REPLAN = 8


def selective_scan_torch(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = True,
    chunk: int | None = None,
) -> Tensor:
    """Same contract and shapes as :func:`scan_reference.selective_scan_reference`.

    ``chunk`` fixes the chunk length of both forms (a power of two is fastest); by default the
    factorised form picks it per block and the stepwise form uses :data:`STEPWISE_CHUNK`.
    """
    dtype = compute_dtype(u, delta, A, B, C)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    b, d, length = u.shape
    n = A.shape[1]
    if length == 0:
        return u.clone()
    grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, D, delta_bias)
    )
    steps, group = _block_shape(b, d, n, length, chunk or CHUNK_MAX)
    out = None if grad else torch.empty(u.shape, dtype=dtype, device=u.device)
    rows = []
    buffers = _scratch(u.device)
    for d0 in range(0, d, group):
        ch = slice(d0, min(d, d0 + group))
        scan = _BlockScan(A[ch], SPAN_LIMIT[dtype], grad, chunk, buffers)
        bias = None if delta_bias is None else delta_bias[ch]
        Dv = None if D is None else D[ch].to(dtype).view(1, -1, 1)
        h = u.new_zeros(b, ch.stop - d0, n)
        pieces = []
        for s in range(0, length, steps):
            e = min(length, s + steps)
            dl = prepare_delta(delta[:, ch, s:e], bias, delta_softplus)
            ub = u[:, ch, s:e]
            y, h = scan.block(dl, ub, B[:, 0, :, s:e], C[:, 0, :, s:e], h, signed=not delta_softplus,
                              out=None if grad else out[:, ch, s:e])
            if Dv is not None:
                y = torch.addcmul(y, ub, Dv) if grad else y.addcmul_(ub, Dv)
            pieces.append(y)
        if grad:
            rows.append(torch.cat(pieces, -1))
    return torch.cat(rows, 1) if grad else out


def _block_shape(b: int, d: int, n: int, length: int, unit: int) -> tuple[int, int]:
    """Steps and channels per block: about BLOCK_ELEMENTS state values in rows of at least
    MIN_BLOCK_STEPS steps, channel groups of equal size, steps a multiple of ``unit``."""
    per_channel = max(1, b * n)
    min_steps = -(-min(length, MIN_BLOCK_STEPS) // unit) * unit
    group = max(1, min(d, BLOCK_ELEMENTS // (per_channel * min_steps)))
    group = -(-d // -(-d // group))  # same number of groups, sizes balanced
    steps = max(unit, BLOCK_ELEMENTS // (per_channel * group) // unit * unit)
    return steps, group


class _Buffers:
    """Two scratch tensors for the in-place path, reused by every block (see :func:`_scratch`)."""

    def __init__(self):
        self.pair: tuple[Tensor, Tensor] | None = None

    def get(self, numel: int, like: Tensor) -> tuple[Tensor, Tensor]:
        if self.pair is None or self.pair[0].numel() < numel or self.pair[0].dtype != like.dtype:
            with torch.inference_mode(False):  # normal tensors: usable in and out of inference mode
                self.pair = (like.new_empty(numel), like.new_empty(numel))
        return self.pair[0][:numel], self.pair[1][:numel]


_cpu_scratch = threading.local()


def _scratch(device: torch.device) -> _Buffers:
    """On CPU the scratch outlives the call (one pair per thread, a few MB): fresh multi-MB
    allocations cost page faults on every call. Other devices have caching allocators."""
    if device.type != "cpu":
        return _Buffers()
    if not hasattr(_cpu_scratch, "buffers"):
        _cpu_scratch.buffers = _Buffers()
    return _cpu_scratch.buffers


class _BlockScan:
    """Per-call constants of one channel group and the scan of one block of it."""

    def __init__(self, A: Tensor, span_limit: float, grad: bool, chunk: int | None, buffers: _Buffers):
        self.A2 = A * LOG2E  # exp(A x) = exp2(A2 x): exp2 is several times faster than exp on CPU
        self.amax2 = self.A2.detach().abs().amax(1)  # (d,)
        self.limit2 = span_limit * LOG2E
        self.grad = grad
        self.chunks = [chunk] if chunk else [T for T in (CHUNK_MAX >> i for i in range(8)) if T >= CHUNK_MIN]
        self.stepwise_chunk = chunk or STEPWISE_CHUNK
        self.buffers = buffers
        self._last, self._age = None, 0  # chunk length of the last block (when none was heavy)

    def block(self, dl: Tensor, u: Tensor, Bb: Tensor, Cb: Tensor, h: Tensor, signed: bool,
              out: Tensor | None) -> tuple[Tensor, Tensor]:
        """y (b, d, steps) of one block starting from state h (b, d, n), and the state after it.

        Without autograd y is written into ``out`` (a view of the result) and returned.
        """
        b, d, steps = dl.shape
        x = dl * u
        pad = (-steps) % self.chunks[-1]
        if pad:  # delta = x = 0: the padded steps leave the state unchanged
            dl, x, Bb, Cb = (F.pad(t, (0, pad)) for t in (dl, x, Bb, Cb))
        signed = signed and bool((dl < 0).any())
        direct = out if (out is not None and not pad) else None
        # Fast path: the last block's chunk length, checked inside _factorised on its own cumsum.
        T = self._last
        if T and not signed and self._age < REPLAN and dl.shape[-1] % T == 0:
            self._age += 1
            result = self._factorised(dl, x, Bb, Cb, self.A2, h, T, False, direct, check=True)
            if result is not None:
                return self._finish(*result, steps, out, direct)
        T, heavy = self._plan(dl, signed)
        if heavy is None:
            y, h = self._factorised(dl, x, Bb, Cb, self.A2, h, T, signed, direct)
        else:
            direct = None
            if 2 * int(heavy.sum()) >= d:  # mostly heavy: one stepwise pass is cheaper than a split
                y, h = self._stepwise(dl, x, Bb, Cb, self.A2, h)
            else:
                hv, gd = heavy.nonzero().squeeze(1), (~heavy).nonzero().squeeze(1)
                yg, hg = self._factorised(dl[:, gd], x[:, gd], Bb, Cb, self.A2[gd], h[:, gd], T, signed, None)
                yh, hh = self._stepwise(dl[:, hv], x[:, hv], Bb, Cb, self.A2[hv], h[:, hv])
                y = yg.new_empty(dl.shape).index_copy(1, gd, yg).index_copy(1, hv, yh)
                h = hg.new_empty(h.shape).index_copy(1, gd, hg).index_copy(1, hv, hh)
        return self._finish(y, h, steps, out, direct)

    @staticmethod
    def _finish(y: Tensor, h: Tensor, steps: int, out: Tensor | None,
                direct: Tensor | None) -> tuple[Tensor, Tensor]:
        """Crop the padding and put y into ``out`` unless it was written there already."""
        if direct is None:
            y = y[:, :, :steps]
            if out is not None:
                y = out.copy_(y)
        return y, h

    def _plan(self, dl: Tensor, signed: bool) -> tuple[int, Tensor | None]:
        """Chunk length for the factorised form, and the channels (d,) too heavy for it (or None).

        Searches chunk lengths from CHUNK_MAX down; remembers the result for the next blocks (see
        :meth:`block`) when no channel is heavy.
        """
        b, d, steps = dl.shape
        dl = dl.detach().abs() if signed else dl.detach()  # |delta| bounds the range of c when signed
        self._age = 0
        tmin = self.chunks[-1]
        spans = self._chunk_spans(dl, tmin).amax(0)  # (d, chunks at tmin)
        worst = [spans.amax(1)]  # per channel, for each chunk length, shortest first
        for _ in self.chunks[1:]:
            if spans.shape[1] % 2:
                break
            spans = spans.view(d, -1, 2).sum(-1)
            worst.append(spans.amax(1))
        worst = torch.stack(worst)
        heavy = worst[0] > self.limit2
        fits = ((worst <= self.limit2) | heavy).all(1).tolist()  # heavy channels don't constrain T
        T = tmin
        for i in range(1, len(fits)):
            if not fits[i]:
                break
            T = tmin << i
        heavy = heavy if bool(heavy.any()) else None
        self._last = T if heavy is None and not signed else None
        return T, heavy

    def _chunk_spans(self, dl: Tensor, T: int) -> Tensor:
        """max_n |A| * (sum of delta) per chunk of T steps, (b, d, chunks), in log2 units."""
        b, d, steps = dl.shape
        sums = (dl.reshape(b, d, steps // T, T) @ dl.new_ones(T, 1)).squeeze(-1)  # fast row sums
        return sums * self.amax2[:, None]

    def _factorised(self, dl: Tensor, x: Tensor, Bb: Tensor, Cb: Tensor, A2: Tensor, h: Tensor, T: int,
                    signed: bool, out: Tensor | None, check: bool = False) -> tuple[Tensor, Tensor] | None:
        """The factorised form; with ``check``, None if a chunk's span exceeds the limit."""
        b, d, steps = dl.shape
        n = A2.shape[1]
        m = steps // T
        grad = self.grad
        c = dl.reshape(b, d, m, T).cumsum(-1)
        if check and float((c[..., -1].detach() * self.amax2[:, None]).max()) > self.limit2:
            return None
        if signed:  # centre of the range of c over the chunk and its start (c = 0)
            sigma = c[..., -1].clone()
            r = (c.amax(-1, keepdim=True).clamp(min=0) + c.amin(-1, keepdim=True).clamp(max=0)) * 0.5
        else:
            r = c[..., -1:] * 0.5
        cr = (c - r if grad else c.sub_(r)).view(b, d, 1, m, T)
        A2v = A2.view(1, d, n, 1, 1)
        xb = x.view(b, d, 1, m, T)
        Bv, Cv = Bb.reshape(b, 1, n, m, T), Cb.reshape(b, 1, n, m, T)
        if grad:
            E = torch.exp2(A2v * cr)
            W = (xb / E * Bv).cumsum(-1)
        else:
            shape = (b, d, n, m, T)
            ebuf, wbuf = self.buffers.get(b * d * n * steps, dl)
            E = torch.mul(A2v, cr, out=ebuf.view(shape)).exp2_()
            W = torch.div(xb, E, out=wbuf.view(shape)).mul_(Bv).cumsum_(-1)
        # Per chunk (b, d, n, m), decays e^{A c}: from the chunk start to r (dec_r), from r to the
        # chunk end (e_end, equal to E's last column) and over the whole chunk. For delta >= 0,
        # r = sigma / 2 exactly, so all three follow from dec_r (cheaper than gathering from E).
        A2s = A2.view(1, d, n, 1)
        dec_r = torch.exp2(A2s * r.view(b, d, 1, m))
        if signed:
            sigma = sigma.view(b, d, 1, m)
            e_end, decay = torch.exp2(A2s * (sigma - r.view(b, d, 1, m))), torch.exp2(A2s * sigma)
        else:
            e_end, decay = dec_r, dec_r * dec_r
        if grad:
            H_in, h = _carry(e_end * W[..., -1], decay, h)
            return ((W + (H_in * dec_r).unsqueeze(-1)) * (E * Cv)).sum(2).reshape(b, d, steps), h
        H = h.new_empty((b, d, n, m + 1))
        H[..., 0] = h
        torch.mul(e_end, W[..., -1], out=H[..., 1:])  # each chunk's end state from a zero start
        h = _chain(H, decay)
        hp = torch.mul(H[..., :m], dec_r, out=torch.empty_like(dec_r))
        W.add_(hp.unsqueeze(-1))
        E.mul_(Cv)
        W.mul_(E)
        if out is None:
            return W.sum(2).view(b, d, steps), h
        torch.sum(W, 2, out=out.view(b, d, m, T))
        return out, h

    def _stepwise(self, dl: Tensor, x: Tensor, Bb: Tensor, Cb: Tensor, A2: Tensor,
                  h: Tensor) -> tuple[Tensor, Tensor]:
        """The stepwise form, for channels too heavy for the factorised one."""
        b, d, steps = dl.shape
        n = A2.shape[1]
        T = self.stepwise_chunk
        while steps % T:
            T //= 2
        m = steps // T
        grad = self.grad
        # Step-major layouts (T, ...): each step reads and writes one contiguous slab.
        dl_t = dl.reshape(b, d, m, T).permute(3, 0, 1, 2).contiguous().unsqueeze(3)  # (T, b, d, 1, m)
        x_t = x.view(b, d, m, T).permute(3, 0, 1, 2).contiguous().unsqueeze(3)
        B_t = Bb.reshape(b, n, m, T).permute(3, 0, 1, 2).contiguous().unsqueeze(2)  # (T, b, 1, n, m)
        C_t = Cb.reshape(b, n, m, T).permute(3, 0, 1, 2).contiguous().unsqueeze(2)
        A2v = A2.view(1, d, n, 1)
        # Chunk-local states from a zero start (H) and cumulative decays e^{A c_t} (P) of all chunks
        # at once, one step at a time; every exponent is <= 0 for delta >= 0.
        if grad:
            decay = torch.exp2(A2v * dl_t)
            xB = x_t * B_t
            Hs, Ps = [xB[0]], [decay[0]]
            for t in range(1, T):
                Hs.append(torch.addcmul(xB[t], decay[t], Hs[-1]))
                Ps.append(Ps[-1] * decay[t])
            H, P = torch.stack(Hs, 0), torch.stack(Ps, 0)
            H_in, h = _carry(H[-1], P[-1], h)
            y_t = ((H + P * H_in) * C_t).sum(3)  # h_t = H_t + e^{A c_t} H_in;  y_t = <h_t, C_t>
        else:
            shape = (T, b, d, n, m)
            ebuf, wbuf = self.buffers.get(b * d * n * steps, dl)
            P = torch.mul(A2v, dl_t, out=ebuf.view(shape)).exp2_()
            H = torch.mul(x_t, B_t, out=wbuf.view(shape))
            Hu, Pu = H.unbind(0), P.unbind(0)
            for t in range(1, T):
                Hu[t].addcmul_(Pu[t], Hu[t - 1])
                Pu[t].mul_(Pu[t - 1])
            Hc = h.new_empty((b, d, n, m + 1))
            Hc[..., 0] = h
            Hc[..., 1:] = H[-1]
            h = _chain(Hc, P[-1])
            y_t = H.addcmul_(P, Hc[..., :m]).mul_(C_t).sum(3)
        return y_t.permute(1, 2, 3, 0).reshape(b, d, steps), h  # (T, b, d, m) -> (b, d, steps)


def _carry(local: Tensor, decay: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """Chain chunk states with autograd: H_j = decay_{j-1} H_{j-1} + local_{j-1}, H_0 = h.

    local, decay: (b, d, n, m). Returns the states entering the chunks (b, d, n, m) and the state
    leaving the last one (b, d, n).
    """
    states = []
    for j in range(local.shape[-1]):
        states.append(h)
        h = torch.addcmul(local[..., j], decay[..., j], h)
    return torch.stack(states, -1), h


def _chain(H: Tensor, decay: Tensor) -> Tensor:
    """The same chaining in place: H (b, d, n, m + 1) holds h then each chunk's local end state,
    and becomes the state entering each chunk then the final state (returned)."""
    Hu, Du = H.unbind(-1), decay.unbind(-1)
    for j in range(len(Du)):
        torch.addcmul(Hu[j + 1], Du[j], Hu[j], out=Hu[j + 1])
    return Hu[-1]
