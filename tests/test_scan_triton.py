"""The Triton selective scan against the sequential float64 reference.

Without a GPU the kernels run in Triton's CPU interpreter: set ``TRITON_INTERPRET=1`` (and have
``triton`` installed) to run those tests, e.g.
``TRITON_INTERPRET=1 python -m pytest tests/test_scan_triton.py``; otherwise they skip (CI installs
no Triton). Tests marked ``gpu`` run the compiled kernels on CUDA at DGNO's real sizes.

Two interpreter speed-ups are installed for the CPU tests (they change no semantics; the first test
checks their results against the stock interpreter): ``tl.associative_scan`` evaluated in log2(n)
whole-array steps instead of one Python call per element, and Triton's language patching done
once per launch instead of again at every nested ``@triton.jit`` call.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from napari_dgno.model.scan_reference import selective_scan_reference

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
HAVE_TRITON = importlib.util.find_spec("triton") is not None
CUDA = torch.cuda.is_available()

interpreter_only = pytest.mark.skipif(
    not (HAVE_TRITON and INTERPRET),
    reason="needs triton and TRITON_INTERPRET=1 (the kernels then run in Triton's CPU interpreter)",
)
on_gpu = pytest.mark.skipif(
    not (HAVE_TRITON and CUDA and not INTERPRET), reason="needs triton and CUDA (and TRITON_INTERPRET unset)"
)


def _inputs(b, d, length, n, *, seed=0, dtype=torch.float32, device="cpu", delta_scale=0.5, bias_shift=0.0):
    """DGNO-like inputs: A = -exp(.), delta around softplus' knee, D and bias per channel."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    u, delta = r(b, d, length), delta_scale * r(b, d, length)
    A = -torch.exp(r(d, n))
    B, C = r(b, 1, n, length), r(b, 1, n, length)
    D, bias = r(d), 0.5 * r(d) + bias_shift
    return [t.to(device=device, dtype=dtype) for t in (u, delta, A, B, C, D, bias)]


def _rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-300))


def _reference(*args, **kwargs) -> torch.Tensor:
    return selective_scan_reference(*[a.double() if isinstance(a, torch.Tensor) else a for a in args], **kwargs)


class _InterpreterSpeedups:
    """Installs (and can temporarily remove) the two interpreter speed-ups described above."""

    def __init__(self):
        from triton.runtime import interpreter

        self.interpreter = interpreter
        self.stock = (interpreter.ScanOps.generic_scan, interpreter.GridExecutor.__call__,
                      interpreter.InterpretedFunction.__call__)
        self.fast = self._fast_versions()

    def _set(self, fns) -> None:
        i = self.interpreter
        i.ScanOps.generic_scan, i.GridExecutor.__call__, i.InterpretedFunction.__call__ = fns

    def install(self) -> None:
        self._set(self.fast)

    def remove(self) -> None:
        self._set(self.stock)

    def _fast_versions(self):
        import numpy as np

        interpreter = self.interpreter

        def log_step_scan(ops, input):
            """Hillis-Steele inclusive scan with the same combine function, on whole arrays."""
            axis = ops.axis
            data = [np.array(arg.handle.data) for arg in input]
            dtypes = [arg.dtype for arg in input]
            length = data[0].shape[axis]
            pos = np.arange(length).reshape([-1 if i == axis else 1 for i in range(data[0].ndim)])
            shift = 1
            while shift < length:
                earlier = [ops.to_tensor(np.roll(x, shift, axis=axis), t) for x, t in zip(data, dtypes)]
                later = [ops.to_tensor(x, t) for x, t in zip(data, dtypes)]
                with np.errstate(all="ignore"):  # wrapped-around lanes are discarded just below
                    res = ops.combine_fn.fn(*earlier, *later)
                res = res if isinstance(res, tuple) else (res,)
                data = [np.where(pos >= shift, r.handle.data, x) for x, r in zip(data, res)]
                shift *= 2
            return [ops.to_tensor(x, t) for x, t in zip(data, dtypes)]

        patched: set[int] = set()
        stock_launch = self.stock[1]

        def launch(executor, *args, **kwargs):
            patched.clear()
            return stock_launch(executor, *args, **kwargs)

        def device_call(fn, *args, **kwargs):
            if id(fn.fn.__globals__) not in patched:  # the stock code re-patches on every call
                patched.add(id(fn.fn.__globals__))
                interpreter._patch_lang(fn.fn)
            try:
                return fn.rewrite()(*args, **kwargs)
            except Exception as e:
                raise interpreter.InterpreterError(repr(e)) from e

        return log_step_scan, launch, device_call


@pytest.fixture(scope="module")
def speedups():
    s = _InterpreterSpeedups()
    s.install()
    yield s
    s.remove()


@pytest.fixture(scope="module")
def st(speedups):
    """The module under test (imported once the interpreter is set up)."""
    from napari_dgno.model import scan_triton

    return scan_triton


@interpreter_only
def test_interpreter_speedups_change_no_result(st, speedups):
    args = [a.requires_grad_() for a in _inputs(1, 3, 11, 2, seed=1)]
    cfg = st.ScanConfig(block_d=4, chunk=4, width=4)

    def run():
        y = st.selective_scan_triton(*args, config=cfg, backward_config=cfg)
        grads = torch.autograd.grad(y, args, torch.ones_like(y))
        return [y.detach(), *grads]

    fast = run()
    speedups.remove()
    try:
        stock = run()
    finally:
        speedups.install()
    for f, s in zip(fast, stock):
        assert _rel(f, s) < 1e-6


# (b, d, length, n, config kwargs or None for the default): odd lengths, batch > 1, several chunks,
# channel blocks with masked channels, carries over several blocks (carry_block=2), every n.
FORWARD_CASES = [
    (1, 8, 1, 8, None),
    (1, 8, 7, 8, None),
    (2, 8, 100, 8, None),
    (2, 40, 37, 8, dict(block_d=32, chunk=8, width=4, carry_block=2)),
    (3, 16, 1000, 8, dict(chunk=256, width=64)),
    (1, 32, 4097, 8, dict(chunk=1024, width=64)),
    (2, 8, 300, 1, dict(chunk=64, width=16)),
    (2, 8, 300, 2, dict(chunk=64, width=16)),
    (2, 8, 300, 4, dict(chunk=64, width=16)),
    (2, 8, 300, 16, dict(chunk=64, width=16)),
]


@interpreter_only
@pytest.mark.parametrize("b, d, length, n, cfg", FORWARD_CASES)
def test_forward_matches_reference(st, b, d, length, n, cfg):
    args = _inputs(b, d, length, n, seed=length + n)
    y = st.selective_scan_triton(*args, config=st.ScanConfig(**cfg) if cfg else None)
    assert y.dtype == torch.float32 and y.shape == (b, d, length)
    assert _rel(y, _reference(*args)) < 1e-5


@interpreter_only
@pytest.mark.parametrize("variant", ["no D", "no bias", "no softplus"])
def test_optional_inputs(st, variant):
    u, delta, A, B, C, D, bias = _inputs(2, 8, 150, 8, seed=3)
    if variant == "no D":
        D = None
    elif variant == "no bias":
        bias = None
    softplus = variant != "no softplus"
    if not softplus:  # raw delta + bias is the step size: keep it >= 0 so the recurrence decays
        delta, bias = delta.abs(), bias.abs()
    cfg = st.ScanConfig(chunk=32, width=8)
    y = st.selective_scan_triton(u, delta, A, B, C, D, bias, softplus, config=cfg)
    assert _rel(y, _reference(u, delta, A, B, C, D, bias, softplus)) < 1e-5


@interpreter_only
@pytest.mark.parametrize("shift", [-30.0, 30.0])
def test_extreme_delta_and_decay(st, shift):
    """delta + bias around +-30 and |A| up to 1e3: finite everywhere and still accurate."""
    u, delta, A, B, C, D, bias = _inputs(2, 8, 200, 8, seed=4, bias_shift=shift)
    A = A * torch.logspace(-3, 3, 8)  # decay rates from 1e-3 to 1e3 per unit step
    cfg = st.ScanConfig(chunk=32, width=8)
    y = st.selective_scan_triton(u, delta, A, B, C, None, bias, config=cfg)
    assert torch.isfinite(y).all()
    ref = _reference(u, delta, A, B, C, None, bias)
    assert _rel(y, ref) < 1e-5


@interpreter_only
def test_out_is_fully_written(st):
    """A NaN-poisoned ``out`` (contiguous or a transposed view) is overwritten everywhere."""
    args = _inputs(3, 8, 77, 8, seed=5)
    cfg = st.ScanConfig(chunk=32, width=16)
    expected = st.selective_scan_triton(*args, config=cfg)
    out = torch.full((3, 8, 77), float("nan"))
    assert st.selective_scan_triton(*args, config=cfg, out=out) is out
    assert torch.equal(out, expected)
    storage = torch.full((3, 77, 8), float("nan"))
    view = storage.transpose(1, 2)
    st.selective_scan_triton(*args, config=cfg, out=view)
    assert torch.equal(view, expected) and not torch.isnan(storage).any()


@interpreter_only
def test_strided_and_half_precision_inputs(st):
    """Inputs are read in place whatever their strides and dtype, and computed in float32."""
    b, d, length, n = 2, 8, 90, 8
    u, delta, A, B, C, D, bias = _inputs(b, d, length, n, seed=6)
    # B and C as slices of one projection (as in DGNO), u with time-major storage.
    proj = torch.cat([torch.randn(b, 3, length), B[:, 0], C[:, 0]], dim=1)
    Bs, Cs = proj[:, 3:3 + n].unsqueeze(1), proj[:, 3 + n:].unsqueeze(1)
    ut = u.transpose(1, 2).contiguous().transpose(1, 2)
    cfg = st.ScanConfig(chunk=32, width=8)
    y = st.selective_scan_triton(ut, delta, A, Bs, Cs, D, bias, config=cfg)
    assert _rel(y, _reference(u, delta, A, B, C, D, bias)) < 1e-5
    for dtype in (torch.bfloat16, torch.float16):
        low = [t.to(dtype) for t in (u, delta, A, B, C, D, bias)]
        y = st.selective_scan_triton(*low, config=cfg)
        assert y.dtype == torch.float32
        assert _rel(y, _reference(*low)) < 1e-5


@interpreter_only
def test_empty_and_bad_inputs(st):
    empty = [t.requires_grad_() for t in _inputs(2, 4, 0, 8)]
    y = st.selective_scan_triton(*empty)
    assert y.shape == (2, 4, 0)
    y.sum().backward()
    assert all(t.grad is not None and not t.grad.any() for t in empty)
    u, delta, A, B, C, D, bias = _inputs(1, 4, 10, 8)
    with pytest.raises(ValueError, match="B must be"):
        st.selective_scan_triton(u, delta, A, B[:, :, :4], C, D, bias)
    with pytest.raises(ValueError, match="delta .* must have u's shape"):
        st.selective_scan_triton(u, delta[..., :5], A, B, C, D, bias)
    with pytest.raises(ValueError, match="out must be a float32 tensor"):
        st.selective_scan_triton(u, delta, A, B, C, D, bias, out=torch.empty(1, 4, 10, dtype=torch.float64))
    with pytest.raises(ValueError, match="power of two"):
        st.ScanConfig(chunk=48)
    with pytest.raises(ValueError, match="out= cannot be used when gradients"):
        st.selective_scan_triton(u.requires_grad_(), delta, A, B, C, D, bias, out=torch.empty(1, 4, 10))


GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "delta_bias")


def _check_grads(st, args, softplus=True, bwd=None, fwd=None, tol=1e-5):
    ours = [a.clone().requires_grad_() if a is not None else None for a in args]
    ref = [a.double().requires_grad_() if a is not None else None for a in args]
    y = st.selective_scan_triton(*ours, softplus, config=fwd, backward_config=bwd)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(7))
    y.backward(gy)
    selective_scan_reference(*ref, delta_softplus=softplus).backward(gy.double())
    for name, a, r in zip(GRAD_NAMES, ours, ref):
        if a is None:
            continue
        assert a.grad is not None and a.grad.dtype == a.dtype, name
        assert _rel(a.grad, r.grad) < tol, name


@interpreter_only
@pytest.mark.parametrize(
    "b, d, length, n, bwd",
    [
        (2, 5, 37, 4, dict(block_d=4, chunk=8, num_warps=1)),  # several chunks and channel blocks
        (1, 8, 100, 8, None),  # default backward tiles
        (2, 4, 1, 8, None),
    ],
)
def test_gradients_match_reference_autograd(st, b, d, length, n, bwd):
    _check_grads(st, _inputs(b, d, length, n, seed=8), bwd=st.ScanConfig(**bwd) if bwd else None)


@interpreter_only
def test_gradients_without_optional_inputs_and_in_bf16(st):
    u, delta, A, B, C, D, bias = _inputs(2, 6, 40, 8, seed=9)
    bwd = st.ScanConfig(block_d=8, chunk=16, num_warps=1, width=16)
    _check_grads(st, [u, delta.abs(), A, B, C, None, None], softplus=False, bwd=bwd)  # delta >= 0: decays
    low = [t.to(torch.bfloat16) for t in (u, delta, A, B, C, D, bias)]
    _check_grads(st, low, bwd=bwd, tol=1e-2)  # bf16 gradients: rounding of the result only
    # y.sum().backward() hands the kernels an expanded (stride 0) output gradient.
    ours = [t.clone().requires_grad_() for t in (u, delta, A, B, C, D, bias)]
    ref = [t.double().requires_grad_() for t in (u, delta, A, B, C, D, bias)]
    st.selective_scan_triton(*ours, backward_config=bwd).sum().backward()
    selective_scan_reference(*ref).sum().backward()
    for name, a, r in zip(GRAD_NAMES, ours, ref):
        assert _rel(a.grad, r.grad) < 1e-5, name


# ----------------------------------------------------------------------------- single-launch forward

# 2 channels per program over 5 channels (a masked one), 64-step tiles: 1000 steps walk 16 tiles.
SINGLE = {"single": True, "block_d": 2, "tile": 64, "num_warps": 1}


@interpreter_only
@pytest.mark.parametrize("b, length", [(1, 1), (3, 7), (1, 33), (3, 1000)])
def test_single_launch_matches_reference(st, b, length):
    args = _inputs(b, 5, length, 8, seed=20 + length)
    y = st.selective_scan_triton(*args, config=st.ScanConfig(**SINGLE))
    assert y.dtype == torch.float32 and y.shape == (b, 5, length)
    assert _rel(y, _reference(*args)) < 1e-5


@interpreter_only
@pytest.mark.parametrize("variant", ["no D", "no bias", "neither, no softplus", "n=3", "n=16"])
def test_single_launch_optional_inputs_and_state_sizes(st, variant):
    n = {"n=3": 3, "n=16": 16}.get(variant, 4)  # n = 3 is padded to 4 states inside the kernel
    u, delta, A, B, C, D, bias = _inputs(3, 5, 70, n, seed=21)
    softplus = "no softplus" not in variant
    if variant in ("no D", "neither, no softplus"):
        D = None
    if variant in ("no bias", "neither, no softplus"):
        bias = None
    if not softplus:  # the raw delta is the step size: keep it >= 0 so the recurrence decays
        delta = delta.abs()
    y = st.selective_scan_triton(u, delta, A, B, C, D, bias, softplus, config=st.ScanConfig(**SINGLE))
    assert _rel(y, _reference(u, delta, A, B, C, D, bias, softplus)) < 1e-5


@interpreter_only
def test_single_launch_strided_bf16_inputs_and_poisoned_out(st):
    """Inputs read in place (any strides, bf16); a NaN-filled ``out`` view is overwritten everywhere."""
    b, d, length, n = 3, 5, 90, 8
    cfg = st.ScanConfig(**SINGLE)
    u, delta, A, B, C, D, bias = _inputs(b, d, length, n, seed=22)
    proj = torch.cat([torch.randn(b, 3, length), B[:, 0], C[:, 0]], dim=1)  # B, C: slices, as in DGNO
    Bs, Cs = proj[:, 3:3 + n].unsqueeze(1), proj[:, 3 + n:].unsqueeze(1)
    ut = u.transpose(1, 2).contiguous().transpose(1, 2)  # time-major storage
    At = A.t().contiguous().t()
    storage = torch.full((b, length, d), float("nan"))
    out = storage.transpose(1, 2)
    assert st.selective_scan_triton(ut, delta, At, Bs, Cs, D[::1], bias, config=cfg, out=out) is out
    assert not torch.isnan(storage).any()
    assert _rel(out, _reference(u, delta, A, B, C, D, bias)) < 1e-5
    low = [t.to(torch.bfloat16) for t in (u, delta, A, B, C, D, bias)]
    y = st.selective_scan_triton(*low, config=cfg)
    assert y.dtype == torch.float32 and _rel(y, _reference(*low)) < 1e-5


@interpreter_only
def test_single_launch_agrees_with_chunked_and_trains(st):
    """Same result as the chunked path; as the forward inside autograd, gradients still match."""
    args = _inputs(2, 5, 37, 4, seed=23)
    single = st.selective_scan_triton(*args, config=st.ScanConfig(**SINGLE))
    chunked = st.selective_scan_triton(*args, config=st.ScanConfig(chunk=8, width=4))
    assert _rel(single, chunked) < 1e-6
    _check_grads(st, args, fwd=st.ScanConfig(**SINGLE), bwd=st.ScanConfig(block_d=4, chunk=8, num_warps=1))


def test_default_config_picks_the_path():
    """Single launch up to SINGLE_MAX_LENGTH steps and whenever there are programs enough to fill the
    GPU; chunks for DGNO's long first level at batch 1 (96 channels: too few programs)."""
    if not HAVE_TRITON:
        pytest.skip("needs triton")
    from napari_dgno.model import scan_triton as st

    short = st.SINGLE_MAX_LENGTH
    for b, d, length in [(1, 768, 1024), (4, 768, 1024), (1, 8, 7), (1, 8, short), (1, 192, 16384),
                         (4, 96, 65536), (4, 96, 262144)]:
        assert st.default_config(b, d, length, 132).single, (b, d, length)
    for b, d, length in [(1, 96, 65536), (1, 96, 262144), (1, 8, short + 1)]:
        assert not st.default_config(b, d, length, 132).single, (b, d, length)
    assert st.default_config(4, 768, 1024, 132).tile == 256  # many programs: short tiles
    assert st.default_config(1, 384, 4096, 132).tile == 512
    with pytest.raises(TypeError, match="single must be True or False"):
        st.ScanConfig(single=1)
    with pytest.raises(ValueError, match="tile must be a power of two"):
        st.ScanConfig(tile=48)


# ----------------------------------------------------------------------------- compiled kernels on CUDA


def _torch64(*args, **kwargs):
    """Float64 ground truth on the GPU (the chunked torch backend agrees with the reference to 1e-12)."""
    from napari_dgno.model.scan_torch import selective_scan_torch

    return selective_scan_torch(*[a.double() if isinstance(a, torch.Tensor) else a for a in args], **kwargs)


@pytest.mark.gpu
@on_gpu
@pytest.mark.parametrize("b, d, length", [(1, 96, 65536), (2, 192, 16384), (4, 768, 1024), (3, 40, 4097), (2, 8, 7)])
def test_gpu_forward_on_dgno_shapes(b, d, length):
    from napari_dgno.model.scan_triton import selective_scan_triton

    args = _inputs(b, d, length, 8, seed=length, device="cuda")
    out = torch.full((b, d, length), float("nan"), device="cuda")
    y = selective_scan_triton(*args, out=out)
    assert torch.isfinite(y).all()
    assert _rel(y, _torch64(*args)) < 1e-5


@pytest.mark.gpu
@on_gpu
@pytest.mark.parametrize("shift", [-30.0, 30.0])
def test_gpu_extremes_and_half_inputs(shift):
    from napari_dgno.model.scan_triton import selective_scan_triton

    u, delta, A, B, C, D, bias = _inputs(2, 96, 4096, 8, seed=11, device="cuda", bias_shift=shift)
    A = A * torch.logspace(-3, 3, 8, device="cuda")
    y = selective_scan_triton(u, delta, A, B, C, None, bias)
    assert torch.isfinite(y).all()
    assert _rel(y, _torch64(u, delta, A, B, C, None, bias)) < 1e-5
    low = [t.to(torch.bfloat16) for t in _inputs(2, 96, 4096, 8, seed=12, device="cuda")]
    y = selective_scan_triton(*low)
    assert y.dtype == torch.float32 and _rel(y, _torch64(*low)) < 1e-5


@pytest.mark.gpu
@on_gpu
@pytest.mark.parametrize("b, d, length", [(2, 96, 4096), (1, 40, 1000)])
def test_gpu_gradients(b, d, length):
    from napari_dgno.model.scan_triton import selective_scan_triton

    args = _inputs(b, d, length, 8, seed=13, device="cuda")
    ours = [a.clone().requires_grad_() for a in args]
    ref = [a.double().requires_grad_() for a in args]
    y = selective_scan_triton(*ours)
    gy = torch.randn(y.shape, device="cuda")
    y.backward(gy)
    _torch64(*ref).backward(gy.double())
    for name, a, r in zip(GRAD_NAMES, ours, ref):
        assert _rel(a.grad, r.grad) < 1e-4, name


@pytest.mark.gpu
@on_gpu
@pytest.mark.parametrize("b, d, length", [(1, 192, 16384), (1, 768, 1024), (3, 40, 4097), (2, 8, 1)])
@pytest.mark.parametrize("tiles", [(1, 512, 4), (2, 512, 4), (1, 256, 2), (1, 1024, 8)])
def test_gpu_single_launch(b, d, length, tiles):
    """Every single-launch tiling the sweep tries, compiled, on DGNO's short levels and odd sizes."""
    from napari_dgno.model.scan_triton import ScanConfig, selective_scan_triton

    block_d, tile, warps = tiles
    cfg = ScanConfig(single=True, block_d=block_d, tile=tile, num_warps=warps)
    args = _inputs(b, d, length, 8, seed=length + tile, device="cuda")
    out = torch.full((b, d, length), float("nan"), device="cuda")
    selective_scan_triton(*args, out=out, config=cfg)
    assert torch.isfinite(out).all()
    assert _rel(out, _torch64(*args)) < 1e-5
    low = [t.to(torch.bfloat16) for t in args]
    assert _rel(selective_scan_triton(*low, config=cfg), _torch64(*low)) < 1e-5
