"""Sequential selective scan: the ground truth the fast backends are checked against.

It is a literal transcription of mamba_ssm's ``selective_scan_ref`` maths (one Python step per
token), slow but obviously right, and it supports autograd and float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def prepare_delta(delta: torch.Tensor, delta_bias: torch.Tensor | None, delta_softplus: bool) -> torch.Tensor:
    """Add the bias and apply softplus (threshold 20, like torch and mamba_ssm)."""
    if delta_bias is not None:
        delta = delta + delta_bias.to(delta.dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return delta


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (the scan never runs in half precision)."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
) -> torch.Tensor:
    """h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t;  y_t = <h_t, C_t> + D u_t.

    Shapes as mamba_ssm: u, delta (b, d, l); A (d, n); B, C (b, 1, n, l); D, delta_bias (d,).
    """
    dtype = compute_dtype(u, delta, A, B, C)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    delta = prepare_delta(delta, delta_bias, delta_softplus)
    b, d, length = u.shape
    n = A.shape[1]
    Bm = B[:, 0]  # (b, n, l)
    Cm = C[:, 0]
    h = u.new_zeros(b, d, n)
    ys = []
    for t in range(length):
        dt = delta[:, :, t, None]  # (b, d, 1)
        h = torch.exp(dt * A) * h + dt * u[:, :, t, None] * Bm[:, None, :, t]
        ys.append((h * Cm[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(b, d, 0)
    if D is not None:
        y = y + u * D.to(dtype)[:, None]
    return y
