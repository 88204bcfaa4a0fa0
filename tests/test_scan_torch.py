"""The pure-PyTorch selective scan against the sequential reference: values, gradients, edge cases.

The bars are the project's: relative L2 < 1e-5 in float32 and < 1e-12 in float64. float32 results
are compared with the reference run in float64 on the same inputs (the truth, not another float32
approximation). Small ``BLOCK_ELEMENTS`` values force many blocks and channel groups on short inputs.
"""

from __future__ import annotations

import math
import threading

import pytest
import torch

from napari_dgno.model import scan_torch
from napari_dgno.model.scan_reference import selective_scan_reference
from napari_dgno.model.scan_torch import selective_scan_torch

F32_BAR, F64_BAR = 1e-5, 1e-12


def make_inputs(b, d, length, n=8, dtype=torch.float64, bias=None, a_max=8.0, raw_std=0.5, seed=0):
    """Random scan inputs; delta = softplus(raw + bias) spans ~1e-3..1 unless ``bias`` is given."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, d, length, generator=g, dtype=dtype)
    delta = raw_std * torch.randn(b, d, length, generator=g, dtype=dtype)
    A = -torch.exp(torch.rand(d, n, generator=g, dtype=dtype) * math.log(a_max))
    B = torch.randn(b, 1, n, length, generator=g, dtype=dtype)
    C = torch.randn(b, 1, n, length, generator=g, dtype=dtype)
    D = torch.randn(d, generator=g, dtype=dtype)
    if bias is None:
        bias = torch.rand(d, generator=g, dtype=dtype) * 6 - 6
    return [u, delta, A, B, C, D, torch.as_tensor(bias, dtype=dtype)]


def rel_err(out, ref):
    return float((out.double() - ref.double()).norm() / ref.double().norm())


def reference64(args, **kw):
    return selective_scan_reference(*(a.double() if a is not None else None for a in args), **kw)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few hundred state values: many blocks and channel groups on small inputs."""
    monkeypatch.setattr(scan_torch, "BLOCK_ELEMENTS", 1024)
    monkeypatch.setattr(scan_torch, "MIN_BLOCK_STEPS", 64)


@pytest.mark.parametrize("shape", [(1, 4, 1), (1, 4, 7), (3, 5, 1000), (1, 6, 4097)])
def test_matches_reference_in_float64(shape):
    args = make_inputs(*shape)
    out = selective_scan_torch(*args)
    assert out.dtype == torch.float64 and out.shape == shape
    assert rel_err(out, reference64(args)) < F64_BAR


@pytest.mark.parametrize("shape", [(1, 4, 1), (1, 4, 7), (3, 5, 1000), (1, 6, 4097)])
def test_matches_reference_in_float32(shape):
    args = make_inputs(*shape, dtype=torch.float32)
    out = selective_scan_torch(*args)
    assert out.dtype == torch.float32
    assert rel_err(out, reference64(args)) < F32_BAR


@pytest.mark.parametrize("dtype, bar", [(torch.float32, F32_BAR), (torch.float64, F64_BAR)])
def test_many_blocks_and_channel_groups(small_blocks, dtype, bar):
    args = make_inputs(3, 7, 3001, dtype=dtype, seed=1)
    assert rel_err(selective_scan_torch(*args), reference64(args)) < bar


@pytest.mark.parametrize("dtype, bar", [(torch.float32, F32_BAR), (torch.float64, F64_BAR)])
def test_scan_part_alone_without_skip_term(dtype, bar):
    """D u can dominate y; without D the error measures the recurrence alone."""
    args = make_inputs(2, 6, 2500, dtype=dtype, seed=2)
    args[5] = None
    assert rel_err(selective_scan_torch(*args), reference64(args)) < bar


def test_chunk_spans_at_the_factorisation_limit_keep_float32_accuracy():
    """delta * |A| tuned so that chunk spans sit just under SPAN_LIMIT: the worst case in float32."""
    d, n, length = 6, 8, 4096
    span = scan_torch.SPAN_LIMIT[torch.float32]
    per_step = 0.95 * span / scan_torch.CHUNK_MIN  # fills the shortest chunk
    args = make_inputs(1, d, length, dtype=torch.float32, raw_std=0.0, a_max=1.0001, seed=3)
    args[2] = -torch.full((d, n), 16.0)  # |A| = 16 everywhere
    delta_wanted = per_step / 16.0
    args[6] = torch.full((d,), math.log(math.expm1(delta_wanted)))  # softplus(bias) = delta_wanted
    args[5] = None
    assert rel_err(selective_scan_torch(*args), reference64(args)) < F32_BAR


@pytest.mark.parametrize("dtype, bar", [(torch.float32, F32_BAR), (torch.float64, F64_BAR)])
@pytest.mark.parametrize("bias", [30.0, -30.0, [30.0, -30.0, 0.0, 3.0, 1.0, 5.0]])
def test_extreme_delta_stays_finite_and_accurate(dtype, bar, bias):
    """delta + bias ~ +-30 with |A| up to 16: e^{A * delta} spans e^-480..1, and mixed channels
    send some channels down the stepwise path and others down the factorised one."""
    args = make_inputs(2, 6, 1000, dtype=dtype, bias=torch.broadcast_to(torch.tensor(bias), (6,)), a_max=16.0)
    out = selective_scan_torch(*args)
    assert torch.isfinite(out).all()
    assert rel_err(out, reference64(args)) < bar


def test_occasional_delta_spikes(small_blocks):
    """Rare huge steps in otherwise small deltas (the fallback for a few chunks per block)."""
    args = make_inputs(2, 5, 2000, dtype=torch.float32, seed=4)
    spikes = torch.rand(args[1].shape, generator=torch.Generator().manual_seed(5)) < 0.002
    args[1] = torch.where(spikes, torch.full_like(args[1], 40.0), args[1])
    out = selective_scan_torch(*args)
    assert torch.isfinite(out).all()
    assert rel_err(out, reference64(args)) < F32_BAR


@pytest.mark.parametrize("chunk", [1, 7, 16, 64])
def test_fixed_chunk_lengths(chunk):
    args = make_inputs(2, 3, 517, seed=6)
    assert rel_err(selective_scan_torch(*args, chunk=chunk), reference64(args)) < F64_BAR


@pytest.mark.parametrize("dtype, bar", [(torch.float32, F32_BAR), (torch.float64, F64_BAR)])
def test_without_softplus_negative_deltas_and_no_bias(dtype, bar):
    args = make_inputs(2, 4, 800, dtype=dtype, seed=7)
    args[1] = 0.05 * args[1]  # signed deltas, small enough that the true state stays bounded
    args[6] = None
    out = selective_scan_torch(*args, delta_softplus=False)
    assert rel_err(out, reference64(args, delta_softplus=False)) < bar


def test_mixed_precision_inputs_compute_in_float64():
    args = make_inputs(1, 3, 300)
    args[0] = args[0].float()
    out = selective_scan_torch(*args)
    assert out.dtype == torch.float64
    assert rel_err(out, reference64(args)) < F64_BAR


def test_non_contiguous_inputs():
    """Channels-last views (stride 1 along d): delta is used as given (no bias, no softplus)."""
    args = make_inputs(1, 4, 600, seed=8)
    args[1] = 0.05 * args[1].abs()
    args[6] = None
    u_t, delta_t = (a.transpose(1, 2).contiguous().transpose(1, 2) for a in args[:2])
    assert u_t.stride(-1) != 1
    out = selective_scan_torch(u_t, delta_t, *args[2:], delta_softplus=False)
    assert rel_err(out, reference64(args, delta_softplus=False)) < F64_BAR


def test_empty_sequence():
    args = make_inputs(2, 3, 0)
    assert selective_scan_torch(*args).shape == (2, 3, 0)


def test_repeated_calls_in_and_out_of_inference_mode(monkeypatch):
    """CPU scratch memory is kept between calls: made in inference mode, it must still serve plain
    calls, and results must not depend on what ran before."""
    monkeypatch.setattr(scan_torch, "_cpu_scratch", threading.local())  # start without scratch
    args = make_inputs(1, 4, 700, dtype=torch.float32, seed=13)
    with torch.inference_mode():
        first = selective_scan_torch(*args)
        selective_scan_torch(*make_inputs(2, 9, 333, dtype=torch.float32, seed=14))  # other shapes between
    with torch.no_grad():
        assert torch.equal(first, selective_scan_torch(*args))
    assert torch.equal(first, selective_scan_torch(*args))
    assert rel_err(first, reference64(args)) < F32_BAR


def test_inputs_are_not_modified():
    args = make_inputs(1, 4, 700, dtype=torch.float32, seed=9)
    before = [a.clone() for a in args]
    with torch.inference_mode():
        selective_scan_torch(*args)
    assert all(torch.equal(a, b) for a, b in zip(args, before))


@pytest.mark.parametrize("case", ["plain", "blocks", "extreme"])
def test_gradients_match_reference_autograd(case, monkeypatch):
    if case == "blocks":
        monkeypatch.setattr(scan_torch, "BLOCK_ELEMENTS", 256)
        monkeypatch.setattr(scan_torch, "MIN_BLOCK_STEPS", 16)
    bias = torch.tensor([-3.0, 30.0, 2.0]) if case == "extreme" else None
    args = make_inputs(2, 3, 150, bias=bias, a_max=16.0 if case == "extreme" else 8.0, seed=10)
    leaves = [a.clone().requires_grad_(True) for a in args]
    cotangent = torch.randn(2, 3, 150, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    out = selective_scan_torch(*leaves)
    ref = selective_scan_reference(*leaves)
    assert rel_err(out, ref) < F64_BAR
    grads = torch.autograd.grad((out * cotangent).sum(), leaves)
    ref_grads = torch.autograd.grad((ref * cotangent).sum(), leaves)
    for name, g, r in zip(["u", "delta", "A", "B", "C", "D", "delta_bias"], grads, ref_grads):
        assert rel_err(g, r) < 1e-10, name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_reference():
    args = make_inputs(2, 16, 3000, dtype=torch.float32, seed=12)
    out = selective_scan_torch(*(a.cuda() for a in args))
    assert out.device.type == "cuda"
    assert rel_err(out.cpu(), reference64(args)) < F32_BAR
