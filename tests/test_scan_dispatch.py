"""Choosing a selective-scan backend: argument, context manager, environment variable, auto."""

from __future__ import annotations

import pytest
import torch

from napari_dgno.model import scan


def _inputs(b=1, d=4, length=50, n=8, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(b, d, length, generator=g, dtype=dtype)
    delta = torch.randn(b, d, length, generator=g, dtype=dtype)
    A = -torch.exp(torch.randn(d, n, generator=g, dtype=dtype))
    B = torch.randn(b, 1, n, length, generator=g, dtype=dtype)
    C = torch.randn(b, 1, n, length, generator=g, dtype=dtype)
    D = torch.randn(d, generator=g, dtype=dtype)
    bias = torch.randn(d, generator=g, dtype=dtype)
    return u, delta, A, B, C, D, bias


def test_auto_on_cpu_is_torch_and_agrees_with_reference():
    args = _inputs()
    assert scan.resolve_backend("auto", "cpu") == "torch"
    ref = scan.selective_scan(*args, backend="reference")
    out = scan.selective_scan(*args)
    assert float((out - ref).norm() / ref.norm()) < 1e-5


def test_environment_variable_and_context_manager(monkeypatch):
    monkeypatch.setenv(scan.ENV_VAR, "reference")
    assert scan.resolve_backend(None, "cpu") == "reference"
    with scan.use_backend("torch"):
        assert scan.resolve_backend(None, "cpu") == "torch"
    assert scan.resolve_backend(None, "cpu") == "reference"


def test_bad_or_unavailable_backend_names_the_fix(monkeypatch):
    monkeypatch.setenv(scan.ENV_VAR, "fastest")
    with pytest.raises(ValueError, match="NAPARI_DGNO_SCAN='fastest'.*auto, reference, torch, triton, mamba"):
        scan.resolve_backend(None, "cpu")
    monkeypatch.delenv(scan.ENV_VAR)
    with pytest.raises(RuntimeError, match="'mamba' cannot run on cpu.*unset NAPARI_DGNO_SCAN"):
        scan.selective_scan(*_inputs(), backend="mamba")


def test_model_uses_the_forced_backend(monkeypatch):
    """The whole network routes its scans through the dispatcher (the reference backend is visible)."""
    from napari_dgno.model import DGNO
    from napari_dgno.model.configs import tiny_network_g

    calls = []
    original = scan._IMPLEMENTATIONS["reference"]
    monkeypatch.setitem(scan._IMPLEMENTATIONS, "reference", lambda *a: calls.append(a[0].shape) or original(*a))
    net = DGNO(**tiny_network_g()).eval()
    with scan.use_backend("reference"), torch.no_grad():
        net(torch.rand(1, 1, 32, 32))
    assert len(calls) == 4  # one scan per encoder block of the tiny network
