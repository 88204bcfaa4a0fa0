"""Selective scan in Triton, parallel over the sequence as well as over batch and channels.

mamba-ssm's CUDA kernel runs one sequential scan per (batch, channel): only 96 of them for DGNO's
first level (d = 96, l = 65,536), far too few to fill a GPU. Here the sequence is also cut into
chunks of ``ScanConfig.chunk`` steps, one thread per channel and chunk: a first pass computes each
chunk's end state, a small scan over chunks carries the true state across them, and a second pass
reruns every chunk from its incoming state and writes ``y`` (see :mod:`.scan_triton_kernels`).
Short sequences with many channels (DGNO's deeper levels) instead take a single launch
(``ScanConfig.single``): one program per (batch, channel block) walks the whole sequence in tiles
scanned across its threads, as mamba-ssm does; :func:`default_config` picks the path.
Inputs are read in their own dtype and layout (float32, or bf16/fp16 under autocast; any strides)
and everything is computed and returned in float32. The backward pass is a
``torch.autograd.Function`` built from the same pieces, so training needs no compiled extension.

Triton is optional: this module imports without it, and :func:`triton_available` says whether the
backend can run (CUDA present, or ``TRITON_INTERPRET=1`` for the CPU interpreter used by the tests).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from types import ModuleType

import torch

SUPPORTS_BACKWARD = True


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


@functools.cache
def _kernels() -> ModuleType:
    """The kernels module (imported on first use: it needs Triton)."""
    from . import scan_triton_kernels

    return scan_triton_kernels


@functools.lru_cache(maxsize=1)
def _triton_importable() -> bool:
    if importlib.util.find_spec("triton") is None:
        return False
    try:
        import triton.language  # noqa: F401
    except Exception:  # a broken or mismatched install must not break the package
        return False
    return True


def triton_available() -> bool:
    """True when Triton imports and a CUDA device exists (or the Triton CPU interpreter is on)."""
    if not _triton_importable():
        return False
    return _interpreting() or torch.cuda.is_available()


@dataclasses.dataclass(frozen=True)
class ScanConfig:
    """Tile sizes of the kernels (powers of two, except ``stages``) and the forward's path.

    Chunked forward (``single=False``): a program runs ``block_d`` channels (one per thread,
    ``num_warps`` warps) over one chunk of ``chunk`` steps, ``width`` steps per loaded tile, with
    ``stages`` tiles in flight; chunks are linked by a scan over ``carry_block`` chunks at a time.
    Single-launch forward (``single=True``): a program runs ``block_d`` channels of one batch
    element over the whole sequence, ``tile`` steps at a time spread over its ``num_warps`` warps
    (``stages`` tiles in flight); ``chunk``, ``width`` and ``carry_block`` are unused.
    Backward (always chunked): the gradient kernel's tile is ``block_d`` channels x ``chunk`` steps
    with ``num_warps`` warps (its chunk summaries use 32 channels per warp and ``width``).
    """

    block_d: int = 32
    chunk: int = 64
    num_warps: int = 1
    width: int = 4
    stages: int = 2
    carry_block: int = 512
    single: bool = False
    tile: int = 512

    def __post_init__(self) -> None:
        for name in ("block_d", "chunk", "num_warps", "width", "carry_block", "tile"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1 or value & (value - 1):
                raise ValueError(f"ScanConfig.{name} must be a power of two >= 1, got {value!r}")
        if not isinstance(self.single, bool):
            raise TypeError(f"ScanConfig.single must be True or False, got {self.single!r}")
        if not isinstance(self.stages, int) or self.stages < 1:
            raise ValueError(f"ScanConfig.stages must be an integer >= 1, got {self.stages!r}")
        if self.chunk % self.width:
            raise ValueError(f"ScanConfig.chunk ({self.chunk}) must be a multiple of width ({self.width})")


def _next_pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


def _prev_pow2(x: float) -> int:
    return 1 << max(0, int(x).bit_length() - 1) if x >= 1 else 1


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@functools.lru_cache(maxsize=8)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _device_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return _sm_count(device.index if device.index is not None else torch.cuda.current_device())
    return 132  # interpreter: pretend H100 so that the same tiles are exercised


# Forward path (see default_config). The single launch walks ceil(l / tile) tiles one after the
# other in every program, so its time grows with l unless there are programs enough to fill the
# GPU; the chunked path spreads any l over the whole GPU but costs three launches (about 0.1 ms of
# Python and launch overhead in eager mode). Tuned with ``bench/bench_scan.py --sweep`` on an H200
# (132 SMs, DGNO's shapes, batch 1 and 4; docs/benchmarks.md): one channel per program was the
# fastest or within 10% everywhere; 256-step tiles on 2 warps win when there are >= 5 programs per
# SM, 512-step tiles on 4 warps otherwise; the single launch beats the chunked one at every length
# once it has >= 2 programs per SM, and up to 16,384 steps (eager) even with fewer.
SINGLE_MAX_LENGTH = 16384  # single launch for l <= this, whatever the parallelism
SINGLE_MIN_PROGRAMS_PER_SM = 2  # ... and at any length with batch * ceil(dim / block_d) >= this * sm_count
SINGLE_MAX_BLOCK_D = 1  # channels per program (2 fits in registers on sm_90 but was slower)
SINGLE_BLOCK_D_PROGRAMS_PER_SM = 2  # (block_d is halved below this many programs per SM)
SINGLE_SMALL_TILE_PROGRAMS_PER_SM = 5  # 256-step tiles on 2 warps from this many programs per SM
SINGLE_TILE = 512  # otherwise (a tile is 128 * warps steps: 4 steps per thread)
SINGLE_WARPS = 4


def single_launch_config(batch: int, dim: int, sm_count: int = 132) -> ScanConfig:
    """Tiles of the single-launch forward (whatever the length; see the constants above)."""
    block_d = SINGLE_MAX_BLOCK_D
    while block_d > 1 and batch * _cdiv(dim, block_d) < SINGLE_BLOCK_D_PROGRAMS_PER_SM * sm_count:
        block_d //= 2
    tile, warps = SINGLE_TILE, SINGLE_WARPS
    if batch * _cdiv(dim, block_d) >= SINGLE_SMALL_TILE_PROGRAMS_PER_SM * sm_count:
        tile, warps = 256, 2
    return ScanConfig(block_d=block_d, num_warps=warps, single=True, tile=tile)


@functools.lru_cache(maxsize=256)
def default_config(batch: int, dim: int, length: int, sm_count: int = 132) -> ScanConfig:
    """Forward path and tiles for (batch, dim, length) on ``sm_count`` SMs (cached per shape).

    Single launch (:func:`single_launch_config`) when ``length <= SINGLE_MAX_LENGTH`` or when its
    ``batch * ceil(dim / block_d)`` programs fill ``SINGLE_MIN_PROGRAMS_PER_SM`` per SM; otherwise
    the chunked path (:func:`chunked_config`), which spreads a long sequence over the whole GPU
    (DGNO's first level at batch 1: d = 96, l >= 65,536).
    Change the module constants before the first call, or call ``default_config.cache_clear()``.
    """
    single = single_launch_config(batch, dim, sm_count)
    programs = batch * _cdiv(dim, single.block_d)
    if length <= SINGLE_MAX_LENGTH or programs >= SINGLE_MIN_PROGRAMS_PER_SM * sm_count:
        return single
    return chunked_config(batch, dim, length, sm_count)


def chunked_config(batch: int, dim: int, length: int, sm_count: int = 132) -> ScanConfig:
    """Tiles of the chunked forward: 32 channels per warp; the chunk is the largest power of two
    (16 to 1024 steps) that still gives about 16 * sm_count warps in all."""
    width = 4
    units = batch * _cdiv(dim, 32)
    chunks = max(1, _cdiv(16 * sm_count, units))
    chunk = min(1024, max(16, _prev_pow2(length / chunks)))
    chunk = min(chunk, max(width, _next_pow2(length)))
    return ScanConfig(block_d=32, chunk=chunk, num_warps=1, width=width)


def default_backward_config(length: int) -> ScanConfig:
    """Backward tiles: 8 channels x 128 steps on 8 warps (two scans per state keep many values live)."""
    chunk = min(128, max(4, _next_pow2(length)))
    return ScanConfig(block_d=8, chunk=chunk, num_warps=8, width=min(4, chunk))


_FAST_DTYPES = frozenset((torch.float32, torch.bfloat16, torch.float16, torch.float64))


def _inputs_ok(u, delta, A, B, C, D, delta_bias) -> tuple[int, int, int, int] | None:
    """(b, d, l, n) when everything is plainly right (the common case, in about 2 us), else None."""
    try:
        b, d, length = u.shape
        n = A.shape[1]
        dev = u.device
        bc = (b, 1, n, length)
        ok = (
            delta.shape == u.shape and A.shape == (d, n) and B.shape == bc and C.shape == bc
            and delta.device == dev and A.device == dev and B.device == dev and C.device == dev
            and u.dtype in _FAST_DTYPES and delta.dtype in _FAST_DTYPES and A.dtype in _FAST_DTYPES
            and B.dtype in _FAST_DTYPES and C.dtype in _FAST_DTYPES
            and (dev.type == "cuda" or _interpreting())
        )
        for t in (D, delta_bias):
            ok = ok and (t is None or (t.shape == (d,) and t.device == dev and t.dtype in _FAST_DTYPES))
    except (AttributeError, TypeError, ValueError, IndexError):  # not tensors, wrong rank: explained below
        return None
    return (b, d, length, n) if ok else None


def _check_inputs(u, delta, A, B, C, D, delta_bias) -> tuple[int, int, int, int]:
    """Shapes as mamba_ssm (one B/C group); every problem named with its fix."""
    fast = _inputs_ok(u, delta, A, B, C, D, delta_bias)
    if fast is not None:
        return fast
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"selective_scan_triton: {name} must be a torch.Tensor, got {type(t).__name__}")
    if u.dim() != 3:
        raise ValueError(f"selective_scan_triton: u must be (batch, dim, length), got shape {tuple(u.shape)}")
    b, d, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan_triton: delta {tuple(delta.shape)} must have u's shape {tuple(u.shape)}")
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"selective_scan_triton: A must be (dim={d}, n), got {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if tuple(t.shape) != (b, 1, n, length):
            raise ValueError(
                f"selective_scan_triton: {name} must be (batch, 1, n, length) = {(b, 1, n, length)}, "
                f"got {tuple(t.shape)} (only one shared group is supported; use the 'torch' backend otherwise)"
            )
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (d,):
            raise ValueError(f"selective_scan_triton: {name} must be (dim,) = ({d},), got {tuple(t.shape)}")
    tensors = [t for t in (u, delta, A, B, C, D, delta_bias) if t is not None]
    if any(t.device != u.device for t in tensors):
        raise ValueError("selective_scan_triton: all inputs must be on the same device; move them with .to(u.device)")
    if any(t.is_complex() or not t.is_floating_point() for t in tensors):
        raise TypeError("selective_scan_triton: inputs must be real floating-point tensors")
    if u.device.type != "cuda" and not _interpreting():
        raise RuntimeError(
            f"the 'triton' scan backend needs CUDA tensors (got {u.device.type}); "
            "use the 'torch' backend on this device"
        )
    return b, d, length, n


_APPLY, _SUMMARY, _ADJOINT = 0, 1, 2  # _seq_chunk_kernel modes


def _optional(t: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Pointer and stride for an optional (d,) input; absent ones are never read (constexpr flag)."""
    return (like, 0) if t is None else (t, t.stride(0))


def _seq_launch(mode, v, delta, A, M, C, D, delta_bias, softplus, cfg, nc, st, sd, y):
    """One launch of ``_seq_chunk_kernel`` over all chunks (summaries: over nc - 1 slots)."""
    b, d, length = delta.shape
    D_arg, s_D = _optional(D, delta)
    bias_arg, s_bias = _optional(delta_bias, delta)
    has_state = mode == _APPLY and nc > 1
    st_strides = st.stride()[:3] if st is not None else (0, 0, 0)
    sd_strides = sd.stride()[:2] if sd is not None else (0, 0)
    st = delta if st is None else st
    sd = delta if sd is None else sd
    y_strides = y.stride() if y is not None else (0, 0, 0)
    y = delta if y is None else y
    programs = nc if mode == _APPLY else nc - 1
    width = min(cfg.width, cfg.chunk)
    ms, cs = M.stride(), C.stride()
    _kernels()._seq_chunk_kernel[(programs, _cdiv(d, cfg.block_d), b)](
        v, delta, A, M, C, D_arg, bias_arg, st, sd, y,
        length, d,
        *v.stride(), *delta.stride(), *A.stride(),
        ms[0], ms[2], ms[3], cs[0], cs[2], cs[3],
        s_D, s_bias, *st_strides, *sd_strides, *y_strides,
        N=A.shape[1], BD=cfg.block_d, W=width, K=cfg.chunk // width, STAGES=cfg.stages,
        HAS_D=D is not None and mode == _APPLY, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
        MODE=mode, HAS_STATE=has_state,
        num_warps=cfg.num_warps,
    )


def _chunk_states(v, delta, A, M, delta_bias, softplus, cfg: ScanConfig, nc: int, adjoint: bool) -> torch.Tensor:
    """(b, nc - 1, n, d) float32: the state leaving chunk j to the right (forward), or with
    ``adjoint`` the adjoint leaving chunk j + 1 to the left (backward), after the carry."""
    b, d, length = delta.shape
    n = A.shape[1]
    slots = nc - 1
    st = torch.empty((b, slots, n, d), device=delta.device, dtype=torch.float32)
    sd = torch.empty((b, slots, d), device=delta.device, dtype=torch.float32)
    mode = _ADJOINT if adjoint else _SUMMARY
    _seq_launch(mode, v, delta, A, M, M, None, delta_bias, softplus, cfg, nc, st, sd, None)
    # Two block sizes only (few slots, many slots) keep the number of compiled variants small.
    block_c = min(cfg.carry_block, 64) if slots <= 64 else cfg.carry_block
    block_m = min(32, max(1, 4096 // block_c))  # [64, 32] or [512, 8] tiles: no spills on sm_90
    _kernels()._carry_kernel[(_cdiv(n * d, block_m), b)](
        st, sd, A,
        slots, d,
        *st.stride()[:2], *sd.stride()[:2], *A.stride(),
        N=n, BLOCK_C=block_c, BLOCK_M=block_m, N_ITER=_next_pow2(_cdiv(slots, block_c)),
        REVERSE=adjoint, num_warps=8,
    )
    return st


@functools.lru_cache(maxsize=64)
def _single_tile(cfg: ScanConfig, length: int) -> tuple[int, int]:
    """(steps per tile, warps): a tile no longer than the sequence, and at most tile // 128 warps.

    The compiler gives each thread 4 consecutive float32 steps and spreads threads and warps
    along the tile; more warps than ``tile / 128`` would be put on the states, whose sum for y
    then crosses warps (through shared memory) instead of staying in the thread.
    """
    tile = min(cfg.tile, max(16, _next_pow2(length)))
    return tile, min(cfg.num_warps, max(1, tile // 128))


@functools.lru_cache(maxsize=256)
def _single_meta(cfg: ScanConfig, length: int, n: int, has_d: bool, has_bias: bool, softplus: bool) -> dict:
    """The launch's compile-time arguments, built once per (config, shape, flags)."""
    tile, warps = _single_tile(cfg, length)
    return {
        "N": n, "NP": _next_pow2(n), "BD": cfg.block_d, "T": tile, "STAGES": cfg.stages,
        "HAS_D": has_d, "HAS_BIAS": has_bias, "SOFTPLUS": softplus,
        "INTERP_L": length if _kernels_interpreted() else 0,
        "num_warps": warps,
    }


def interpreted(kernel) -> bool:
    """Whether a jitted ``kernel`` runs in Triton's CPU interpreter (TRITON_INTERPRET when its module
    was imported) rather than compiled for the GPU."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(kernel, InterpretedFunction)


@functools.cache
def _kernels_interpreted() -> bool:
    return interpreted(_kernels()._scan_single_kernel)


def _single_launch(u, delta, A, B, C, D, delta_bias, softplus: bool, cfg: ScanConfig, y: torch.Tensor) -> None:
    """The whole forward in one launch of ``_scan_single_kernel``: one program per (channel block, batch)."""
    b, d, length = u.shape
    bs, cs = B.stride(), C.stride()
    _kernels()._scan_single_kernel[(_cdiv(d, cfg.block_d), b)](
        u, delta, A, B, C, delta if D is None else D, delta if delta_bias is None else delta_bias, y,
        length, d,
        *u.stride(), *delta.stride(), *A.stride(),
        bs[0], bs[2], bs[3], cs[0], cs[2], cs[3],
        0 if D is None else D.stride(0), 0 if delta_bias is None else delta_bias.stride(0), *y.stride(),
        **_single_meta(cfg, length, A.shape[1], D is not None, delta_bias is not None, softplus),
    )


def _forward(u, delta, A, B, C, D, delta_bias, softplus, cfg: ScanConfig, out: torch.Tensor | None) -> torch.Tensor:
    b, d, length = u.shape
    y = out if out is not None else torch.empty((b, d, length), device=u.device, dtype=torch.float32)
    if y.numel() == 0:
        return y
    if cfg.single:
        _single_launch(u, delta, A, B, C, D, delta_bias, softplus, cfg, y)
        return y
    nc = _cdiv(length, cfg.chunk)
    st = _chunk_states(u, delta, A, B, delta_bias, softplus, cfg, nc, adjoint=False) if nc > 1 else None
    _seq_launch(_APPLY, u, delta, A, B, C, D, delta_bias, softplus, cfg, nc, st, None, y)
    return y


def _summary_config(cfg: ScanConfig) -> ScanConfig:
    """Tiles of the chunk-summary launches inside the backward pass (same chunking as ``cfg``)."""
    width = min(cfg.width, cfg.chunk)
    return ScanConfig(block_d=32, chunk=cfg.chunk, num_warps=1, width=width, stages=cfg.stages,
                      carry_block=cfg.carry_block)


def _backward(u, delta, A, B, C, D, delta_bias, softplus, cfg: ScanConfig, gy: torch.Tensor):
    """Gradients (float32) for u, delta, A, B, C, D, delta_bias (None where the input is None)."""
    b, d, length = u.shape
    n = A.shape[1]
    f32 = dict(device=u.device, dtype=torch.float32)
    if u.numel() == 0:  # nothing to launch: every gradient is an empty sum
        zeros = [torch.zeros(t.shape, **f32) if t is not None else None for t in (u, delta, A, B, C, D, delta_bias)]
        return tuple(zeros)
    nc = _cdiv(length, cfg.chunk)
    n_db = _cdiv(d, cfg.block_d)
    du = torch.empty((b, d, length), **f32)
    ddelta = torch.empty((b, d, length), **f32)
    dA_part = torch.empty((b, nc, d, n), **f32)
    dB_part = torch.empty((b, n_db, n, length), **f32)
    dC_part = torch.empty((b, n_db, n, length), **f32)
    if nc > 1:
        scfg = _summary_config(cfg)
        sf = _chunk_states(u, delta, A, B, delta_bias, softplus, scfg, nc, adjoint=False)
        sr = _chunk_states(gy, delta, A, C, delta_bias, softplus, scfg, nc, adjoint=True)
        s_st = sf.stride()[:3]
    else:
        sf = sr = du
        s_st = (0, 0, 0)
    D_arg, s_D = _optional(D, u)
    bias_arg, s_bias = _optional(delta_bias, u)
    _kernels()._scan_bwd_kernel[(nc, n_db, b)](
        u, delta, A, B, C, D_arg, bias_arg, gy, sf, sr,
        du, ddelta, dA_part, dB_part, dC_part,
        length, d, nc,
        *u.stride(), *delta.stride(), *A.stride(),
        B.stride(0), B.stride(2), B.stride(3), C.stride(0), C.stride(2), C.stride(3),
        s_D, s_bias, *gy.stride(), *s_st,
        du.stride(0), du.stride(1),
        *dA_part.stride()[:3],
        dB_part.stride(0), dB_part.stride(1), dB_part.stride(2),
        N=n, BD=cfg.block_d, BT=cfg.chunk,
        HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus, HAS_STATE=nc > 1,
        num_warps=cfg.num_warps,
    )
    dA = dA_part.sum(dim=(0, 1))
    dB = dB_part.sum(dim=1, keepdim=True)
    dC = dC_part.sum(dim=1, keepdim=True)
    dD = None if D is None else (gy.float() * u.float()).sum(dim=(0, 2))  # no matmul: autocast-proof
    dbias = None if delta_bias is None else ddelta.sum(dim=(0, 2))
    return du, ddelta, dA, dB, dC, dD, dbias


class _SelectiveScanTriton(torch.autograd.Function):
    """Autograd wrapper: the forward saves only the inputs; the backward recomputes the states."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, delta_softplus, config, backward_config):
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias)
        ctx.delta_softplus = delta_softplus
        ctx.backward_config = backward_config
        return _forward(u, delta, A, B, C, D, delta_bias, delta_softplus, config, None)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        u, delta, A, B, C, D, delta_bias = ctx.saved_tensors
        grads = _backward(u, delta, A, B, C, D, delta_bias, ctx.delta_softplus, ctx.backward_config, gy)
        inputs = (u, delta, A, B, C, D, delta_bias)
        cast = [
            None if g is None or not need else g.to(t.dtype)
            for g, t, need in zip(grads, inputs, ctx.needs_input_grad[:7])
        ]
        return (*cast, None, None, None)


def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    *,
    out: torch.Tensor | None = None,
    config: ScanConfig | None = None,
    backward_config: ScanConfig | None = None,
) -> torch.Tensor:
    """h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t;  y_t = <h_t, C_t> + D u_t  (float32 result).

    Shapes as mamba_ssm: u, delta (b, d, l); A (d, n); B, C (b, 1, n, l); D, delta_bias (d,);
    ``delta`` gets ``delta_bias`` added and, with ``delta_softplus``, softplus (threshold 20).
    Any strides and float dtypes are read directly (no copies); compute is float32. ``out`` (float32,
    (b, d, l), any strides) receives the result when given (not allowed when gradients are needed).
    ``config`` / ``backward_config`` override the tile sizes (:func:`default_config`).
    Differentiable with respect to every tensor input.
    """
    b, d, length, n = _check_inputs(u, delta, A, B, C, D, delta_bias)
    if out is not None:
        if not isinstance(out, torch.Tensor) or out.shape != (b, d, length) or out.dtype != torch.float32:
            raise ValueError(f"selective_scan_triton: out must be a float32 tensor of shape {(b, d, length)}")
        if out.device != u.device:
            raise ValueError("selective_scan_triton: out must be on the inputs' device")
    cfg = config or default_config(b, d, length, _device_sms(u.device))
    needs_grad = torch.is_grad_enabled() and (
        u.requires_grad or delta.requires_grad or A.requires_grad or B.requires_grad or C.requires_grad
        or (D is not None and D.requires_grad) or (delta_bias is not None and delta_bias.requires_grad)
    )
    if not needs_grad:
        return _forward(u, delta, A, B, C, D, delta_bias, bool(delta_softplus), cfg, out)
    if out is not None:
        raise ValueError("selective_scan_triton: out= cannot be used when gradients are required; drop out=")
    bwd_cfg = backward_config or default_backward_config(length)
    return _SelectiveScanTriton.apply(u, delta, A, B, C, D, delta_bias, bool(delta_softplus), cfg, bwd_cfg)
