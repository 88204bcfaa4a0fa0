"""Discontinuous-Galerkin window operators: DGNO's decoder.

Each 8x8 window ("cell") gets a Galerkin-attention operator K = k^T v / 64 per head (16 heads).
Neighbouring cells exchange a numerical flux F(K_left, K_right) across their shared face, so the
per-window operators are coupled like a DG discretisation:

* ``central``:  F = (KL + KR) / 2
* ``jump``:     F = -tau (KR - KL)
* ``avg_jump``: F = (KL + KR) / 2 - tau (KR - KL)

Boundaries: ``neumann`` adds nothing, ``dirichlet`` adds F(K_inner, 0). The *Cell* variant uses
each cell's volume operator on both sides of a face; the *Face* variant uses operators built from
the 8 tokens on each face. The Face boundary terms reproduce the official code exactly, which
passes each boundary cell's *opposite* face (left column: its right face, and so on).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import dg_fused, fusible
from .fusible import small_matmul

FLUX_MODES = ("central", "jump", "avg_jump")
BOUNDARY_TYPES = ("neumann", "dirichlet")
HEADS = 16


class GalerkinLayerNorm(nn.Module):
    """SRNO's LayerNorm over the head dimension: unbiased std, eps added to the std."""

    def __init__(self, heads: int, head_dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(heads, 1, head_dim))
        self.bias = nn.Parameter(torch.zeros(heads, 1, head_dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1]
        if x.device.type == "cpu":
            # On CPU, reductions over a 3-12 wide last axis are ~50x slower than a matrix-vector
            # product with a ones vector; on GPUs the plain reductions are the faster ones.
            ones = torch.ones(d, 1, dtype=x.dtype, device=x.device)
            centred = x - torch.matmul(x, ones) / d
            var = torch.matmul(centred * centred, ones) / (d - 1)
        else:
            centred = x - x.mean(-1, keepdim=True)
            var = (centred * centred).sum(-1, keepdim=True) / (d - 1)
        # Unbiased like torch.std. The clamp leaves the forward identical (eps = 1e-5 is added to the
        # std) but a head whose values are all equal (common under bf16) gets no 0/0 = NaN gradient.
        std = torch.sqrt(var.clamp_min(1e-30))
        return self.weight * centred / (std + self.eps) + self.bias


def interface_flux(kl: torch.Tensor, kr: torch.Tensor, mode: str, tau: torch.Tensor | float) -> torch.Tensor:
    """Numerical flux across a face from the operators on its left/upper and right/lower side."""
    if mode == "central":
        return 0.5 * (kl + kr)
    if mode == "jump":
        return -tau * (kr - kl)
    if mode == "avg_jump":
        return 0.5 * (kl + kr) - tau * (kr - kl)
    raise ValueError(f"unknown flux_mode {mode!r}; choose one of {', '.join(FLUX_MODES)}")


def accumulate_flux(
    west: torch.Tensor,
    east: torch.Tensor,
    north: torch.Tensor,
    south: torch.Tensor,
    mode: str,
    boundary: str,
    tau: torch.Tensor | float,
) -> torch.Tensor:
    """Net flux into every cell of a (B, Gh, Gw, heads, d, d) grid of operators.

    ``west``/``east``/``north``/``south`` are the operators each cell shows on that face (all four
    are the volume operator for the Cell variant). Same accumulation order as the official code.
    """
    flux = torch.zeros_like(west)
    kl, kr = east[:, :, :-1], west[:, :, 1:]
    f = interface_flux(kl, kr, mode, tau)
    flux[:, :, :-1] += f
    flux[:, :, 1:] -= f
    ku, kd = south[:, :-1], north[:, 1:]
    f = interface_flux(ku, kd, mode, tau)
    flux[:, :-1] += f
    flux[:, 1:] -= f
    if boundary == "dirichlet":
        def ghost(k: torch.Tensor) -> torch.Tensor:
            return interface_flux(k, torch.zeros_like(k), mode, tau)

        # Official quirk kept: each boundary cell passes the face *opposite* the boundary.
        flux[:, :, 0] += ghost(east[:, :, 0])
        flux[:, :, -1] += ghost(west[:, :, -1])
        flux[:, 0] += ghost(south[:, 0])
        flux[:, -1] += ghost(north[:, -1])
    elif boundary != "neumann":
        raise ValueError(f"unknown boundary_type {boundary!r}; choose one of {', '.join(BOUNDARY_TYPES)}")
    return flux


class DGWindowOperator(nn.Module):
    """One DG operator layer. ``variant`` is ``cell`` (DG_Win_SRNO) or ``face`` (DG_Win_SRNO_FaceWise)."""

    def __init__(self, dim: int, variant: str = "cell", window: int = 8, flux_mode: str = "central",
                 init_tau: float = 0.25, learnable_tau: bool = True, boundary_type: str = "neumann"):
        super().__init__()
        if variant not in ("cell", "face"):
            raise ValueError(f"unknown variant {variant!r}; choose 'cell' or 'face'")
        if flux_mode not in FLUX_MODES:
            raise ValueError(f"unknown flux_mode {flux_mode!r}; choose one of {', '.join(FLUX_MODES)}")
        if boundary_type not in BOUNDARY_TYPES:
            raise ValueError(f"unknown boundary_type {boundary_type!r}; choose one of {', '.join(BOUNDARY_TYPES)}")
        if dim % HEADS:
            raise ValueError(f"DG operator width {dim} must be a multiple of {HEADS} heads")
        self.dim, self.variant, self.window = dim, variant, window
        self.head_dim = dim // HEADS
        self.flux_mode, self.boundary_type = flux_mode, boundary_type
        if flux_mode != "central":
            if learnable_tau:
                self.tau = nn.Parameter(torch.tensor(float(init_tau)))
            else:
                self.tau = float(init_tau)
        if variant == "face":
            idx = torch.arange(window * window).reshape(window, window)
            self.register_buffer("face_idx_left", idx[:, 0].reshape(-1).clone())
            self.register_buffer("face_idx_right", idx[:, -1].reshape(-1).clone())
            self.register_buffer("face_idx_top", idx[0, :].reshape(-1).clone())
            self.register_buffer("face_idx_bottom", idx[-1, :].reshape(-1).clone())
        self.qkv_proj = nn.Conv2d(dim, 3 * dim, 1)
        self.out_proj1 = nn.Conv2d(dim, dim, 1)
        self.out_proj2 = nn.Conv2d(dim, dim, 1)
        self.kln = GalerkinLayerNorm(HEADS, self.head_dim)
        self.vln = GalerkinLayerNorm(HEADS, self.head_dim)

    def _tau(self) -> torch.Tensor | float:
        return getattr(self, "tau", 0.0)

    def _apply_operators(self, q, k, v, b: int, gh: int, gw: int, work: torch.dtype) -> torch.Tensor:
        """Per-window operators with the DG flux, applied to q: (B*Gh*Gw, heads, p*p, d)."""
        q, k, v = q.to(work), k.to(work), v.to(work)
        k, v = self.kln(k), self.vln(v)
        d, p = self.head_dim, self.window
        tau = self._tau()
        if isinstance(tau, torch.Tensor):
            tau = tau.to(work)
        volume = small_matmul(k.transpose(-2, -1), v) / float(p * p)
        grid = (b, gh, gw, HEADS, d, d)
        if self.variant == "cell":
            kg = volume.view(grid)
            faces = (kg, kg, kg, kg)
        else:
            def face(idx: torch.Tensor) -> torch.Tensor:
                kf, vf = k[:, :, idx], v[:, :, idx]
                return (small_matmul(kf.transpose(-2, -1), vf) / float(idx.numel())).view(grid)

            faces = (face(self.face_idx_left), face(self.face_idx_right), face(self.face_idx_top), face(self.face_idx_bottom))
        flux = accumulate_flux(*faces, mode=self.flux_mode, boundary=self.boundary_type, tau=tau)
        return small_matmul(q, volume + flux.view_as(volume))

    def _attention_triton(self, qkv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The per-window operators and fluxes in two Triton kernels (:mod:`.dg_fused`), in float32."""
        tau = self._tau()
        if self.flux_mode == "central":
            tau = None
        elif not isinstance(tau, torch.Tensor):
            tau = torch.full((1,), tau, dtype=torch.float32, device=x.device)
        return dg_fused.dg_attention_triton(
            qkv, (self.kln.weight, self.kln.bias), (self.vln.weight, self.vln.bias), tau, heads=HEADS,
            window=self.window, face=self.variant == "face", flux_mode=self.flux_mode,
            dirichlet=self.boundary_type == "dirichlet", eps=self.kln.eps, out_dtype=x.dtype,
            channels_last=fusible.is_channels_last(x),
        )

    def _attention_eager(self, qkv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The same in PyTorch: Swin window order, :meth:`_apply_operators`, back to (B, C, H, W)."""
        b, c, h, w = x.shape
        p, d = self.window, self.head_dim
        gh, gw = h // p, w // p
        # (B, 3, heads, d, Gh, p, Gw, p) -> (3, B*Gh*Gw, heads, p*p, d): Swin window order.
        qkv = qkv.view(b, 3, HEADS, d, gh, p, gw, p)
        q, k, v = qkv.permute(1, 0, 4, 6, 2, 5, 7, 3).reshape(3, b * gh * gw, HEADS, p * p, d)
        # Under fp16/bf16 (autocast or a half model) the per-window operators are built in float32
        # with autocast off: the Galerkin LayerNorm divides by the std of 3-12 numbers, which half
        # precision cannot resolve.
        half = x.dtype in (torch.float16, torch.bfloat16) or torch.is_autocast_enabled(x.device.type)
        with torch.autocast(x.device.type, enabled=False) if half else contextlib.nullcontext():
            out = self._apply_operators(q, k, v, b, gh, gw, torch.float32 if half else x.dtype)
        return out.to(x.dtype).view(b, gh, gw, HEADS, p, p, d).permute(0, 3, 6, 1, 4, 2, 5).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor, _name: object = None) -> torch.Tensor:
        h, w = x.shape[2:]
        p = self.window
        if h % p or w % p:
            raise ValueError(f"DG operator input {h}x{w} is not a multiple of the {p}-pixel window")
        qkv = self.qkv_proj(x)
        if dg_fused.applies(qkv, self.qkv_proj.weight):
            out = self._attention_triton(qkv, x)
        else:
            out = self._attention_eager(qkv, x)
        return self.out_proj2(F.gelu(self.out_proj1(out + x))) + x
