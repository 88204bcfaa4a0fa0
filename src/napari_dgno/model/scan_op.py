"""The selective scan as an opaque torch custom op, so that ``torch.compile`` can trace around it.

Dynamo cannot trace the backends themselves (the ``torch`` backend reads tensor values to plan
its chunks, the ``triton``/``mamba`` ones launch their own kernels), and it does not need to: the
scan is one opaque call in the compiled graph. :func:`napari_dgno.model.scan.selective_scan` routes
through ``torch.ops.napari_dgno.selective_scan`` while compiling for inference; the backend is
resolved at trace time and passed by name, so the fake (meta) implementation knows the result dtype.
Inference only: no autograd formula is registered; with gradients the dispatcher runs the scan
eagerly (a graph break; an error under ``fullgraph=True``).
"""

from __future__ import annotations

import torch

from .scan_reference import compute_dtype

#: Backends that compute in float64 for float64 inputs; the CUDA kernels always return float32.
_DTYPE_FOLLOWING = ("reference", "torch")


@torch.library.custom_op("napari_dgno::selective_scan", mutates_args=())
def selective_scan_op(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    backend: str,
) -> torch.Tensor:
    """Run the concrete ``backend`` (already resolved, never ``auto``) on real tensors."""
    from .scan import _IMPLEMENTATIONS

    impl = _IMPLEMENTATIONS.get(backend)
    if impl is None:
        raise ValueError(
            f"napari_dgno::selective_scan got backend {backend!r}; pass a resolved backend "
            f"({', '.join(_IMPLEMENTATIONS)}), e.g. from scan.resolve_backend()"
        )
    return impl(u, delta, A, B, C, D, delta_bias, delta_softplus)


@selective_scan_op.register_fake
def _selective_scan_fake(u, delta, A, B, C, D, delta_bias, delta_softplus, backend):
    """(b, d, l), contiguous: float64 for float64 inputs on the torch/reference backends, else float32."""
    torch._check(u.dim() == 3, lambda: f"selective_scan: u must be (b, d, l), got {tuple(u.shape)}")
    dtype = compute_dtype(u, delta, A, B, C) if backend in _DTYPE_FOLLOWING else torch.float32
    return u.new_empty(u.shape, dtype=dtype)
