"""mamba-ssm's compiled CUDA kernel, used when the optional ``cuda`` extra is installed."""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=1)
def mamba_available() -> bool:
    """True when mamba_ssm imports and a CUDA device exists (its kernel has no CPU path)."""
    if not torch.cuda.is_available():
        return False
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception:  # ImportError, or a build for another CUDA/torch raising at import
        return False
    return True


def selective_scan_mamba(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """Call ``selective_scan_fn`` exactly as the official Selective_Scan does (float32, z=None)."""
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    if not u.is_cuda:
        raise RuntimeError("the 'mamba' scan backend needs CUDA tensors; use 'torch' on this device")
    f = torch.float32
    return selective_scan_fn(
        u.to(f).contiguous(),
        delta.to(f).contiguous(),
        A.to(f).contiguous(),
        B.to(f).contiguous(),
        C.to(f).contiguous(),
        None if D is None else D.to(f),
        z=None,
        delta_bias=None if delta_bias is None else delta_bias.to(f),
        delta_softplus=delta_softplus,
        return_last_state=False,
    )
