"""One entry point for the selective scan, with interchangeable backends.

``selective_scan(u, delta, A, B, C, D, delta_bias, delta_softplus=True)`` takes mamba_ssm's shapes:
u, delta (b, d, l); A (d, n); B, C (b, 1, n, l); D, delta_bias (d,). It returns (b, d, l) in float32
(float64 when the inputs are float64).

Backends: ``reference`` (sequential, for tests), ``torch`` (chunked, any device, differentiable),
``triton`` (CUDA kernel written for DGNO's shapes), ``mamba`` (mamba-ssm's compiled kernel) and
``auto``. The choice is, in order of precedence: the ``backend`` argument, :func:`use_backend`
(context manager), the ``NAPARI_DGNO_SCAN`` environment variable, then ``auto``. Under
``torch.compile`` (inference) the chosen backend runs as the opaque custom op of :mod:`.scan_op`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import torch

from .scan_mamba import mamba_available, selective_scan_mamba
from .scan_op import selective_scan_op
from .scan_reference import selective_scan_reference
from .scan_torch import selective_scan_torch

BACKENDS = ("auto", "reference", "torch", "triton", "mamba")
ENV_VAR = "NAPARI_DGNO_SCAN"
_override: str | None = None


def _triton_available() -> bool:
    try:
        from .scan_triton import triton_available
    except ImportError:
        return False
    return triton_available()


def _triton_supports_grad() -> bool:
    try:
        from .scan_triton import SUPPORTS_BACKWARD
    except ImportError:
        return False
    return bool(SUPPORTS_BACKWARD)


def _selective_scan_triton(*args, **kwargs):
    from .scan_triton import selective_scan_triton

    return selective_scan_triton(*args, **kwargs)


_IMPLEMENTATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "reference": selective_scan_reference,
    "torch": selective_scan_torch,
    "triton": _selective_scan_triton,
    "mamba": selective_scan_mamba,
}


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Backends that can run on ``device`` in this environment (``auto`` excluded)."""
    device = torch.device(device)
    names = ["reference", "torch"]
    if device.type == "cuda":
        if _triton_available():
            names.append("triton")
        if mamba_available():
            names.append("mamba")
    return names


def requested_backend() -> str:
    """The backend asked for by :func:`use_backend` or ``NAPARI_DGNO_SCAN`` (default ``auto``)."""
    name = _override or os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if name not in BACKENDS:
        raise ValueError(
            f"{ENV_VAR}={name!r} is not a selective-scan backend; choose one of {', '.join(BACKENDS)}"
        )
    return name


def resolve_backend(
    name: str | None, device: torch.device | str, needs_grad: bool = False, double: bool = False
) -> str:
    """Turn ``auto`` into a concrete backend for ``device``; check that a forced one can run.

    ``auto`` keeps float64 inputs on the ``torch`` backend: the CUDA kernels compute in float32.
    """
    name = (name or requested_backend()).lower()
    device = torch.device(device)
    available = available_backends(device)
    if name == "auto":
        if device.type == "cuda" and not double:
            if "triton" in available and (not needs_grad or _triton_supports_grad()):
                return "triton"
            if "mamba" in available:
                return "mamba"
        return "torch"
    if name not in _IMPLEMENTATIONS:
        raise ValueError(f"unknown selective-scan backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name not in available:
        raise RuntimeError(
            f"selective-scan backend {name!r} cannot run on {device.type} here "
            f"(available: {', '.join(available)}); unset {ENV_VAR} or pick another backend"
        )
    return name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force a backend inside a ``with`` block (takes precedence over the environment)."""
    global _override
    if name not in BACKENDS:
        raise ValueError(f"unknown selective-scan backend {name!r}; choose one of {', '.join(BACKENDS)}")
    previous, _override = _override, name
    try:
        yield
    finally:
        _override = previous


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Run the selective scan on the chosen backend (see the module docstring)."""
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, D, delta_bias)
    )
    double = u.dtype == torch.float64
    if torch.compiler.is_compiling():
        # Dynamo cannot trace the backends; the custom op keeps the scan one opaque call.
        name = _resolve_while_compiling(backend, u.device, needs_grad, double)
        if needs_grad:  # the op has no autograd formula: scan eagerly (a graph break, errors under fullgraph)
            return _eager_scan(name, u, delta, A, B, C, D, delta_bias, delta_softplus)
        return selective_scan_op(u, delta, A, B, C, D, delta_bias, bool(delta_softplus), name)
    name = resolve_backend(backend, u.device, needs_grad, double=double)
    return _IMPLEMENTATIONS[name](u, delta, A, B, C, D, delta_bias, delta_softplus)


@torch.compiler.assume_constant_result
def _resolve_while_compiling(name: str | None, device: torch.device, needs_grad: bool, double: bool) -> str:
    """:func:`resolve_backend` run (not traced) when Dynamo compiles: the name is baked into the graph,
    so a compiled block keeps the backend it was compiled with (imports and lookups stay out of it)."""
    return resolve_backend(name, device, needs_grad, double)


@torch.compiler.disable(
    reason="the compiled selective scan is for inference only: run under torch.inference_mode() "
    "or torch.no_grad() to keep it in the graph; with gradients it runs eagerly"
)
def _eager_scan(name: str, *args: object) -> torch.Tensor:
    """The scan outside the compiled graph, with autograd (compiled training)."""
    return _IMPLEMENTATIONS[name](*args)
