"""MambaIRv2's attentive state-space module (ASSM) and DGNO's encoder block.

Tokens are routed to one of 64 learned prompts, sorted by prompt so that similar tokens sit next to
each other, scanned with a selective state-space model whose C matrix gets the prompt added, and put
back in image order. Kept from upstream on purpose: the prompt is added in the *unsorted* token
order. ``routing`` chooses the prompt by argmax of the router (deterministic) or by Gumbel sampling
(the original, random at inference too); training mode always samples, like the original.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fusible import depthwise_gate, gather_tokens
from .layers import ChannelLayerNorm, GatedDconvFeedForward
from .scan import selective_scan

ROUTINGS = ("argmax", "gumbel")


class SelectiveScan(nn.Module):
    """Parameters of the single-direction Mamba scan (names as in the official ``Selective_Scan``)."""

    def __init__(self, d_inner: int, d_state: int):
        super().__init__()
        self.d_state = d_state
        self.dt_rank = math.ceil(d_inner / 16)
        x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.x_proj_weight = nn.Parameter(x_proj.weight.detach().clone()[None])
        dt_std = self.dt_rank**-0.5
        self.dt_projs_weight = nn.Parameter(torch.empty(1, d_inner, self.dt_rank).uniform_(-dt_std, dt_std))
        dt = torch.exp(torch.rand(d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        self.dt_projs_bias = nn.Parameter((dt + torch.log(-torch.expm1(-dt)))[None])  # inverse softplus
        self.A_logs = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.Ds = nn.Parameter(torch.ones(d_inner))
        for p in (self.A_logs, self.Ds):
            p._no_weight_decay = True  # type: ignore[attr-defined]

    def forward(self, u: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        """u: (B, D, L) sorted tokens; prompt: (B, L, N) in image order. Returns (B, D, L)."""
        n = self.d_state
        xdbl = torch.einsum("cd,bdl->bcl", self.x_proj_weight[0].to(u.dtype), u)
        dts, Bs, Cs = torch.split(xdbl, [self.dt_rank, n, n], dim=1)
        dts = torch.einsum("dr,brl->bdl", self.dt_projs_weight[0].to(u.dtype), dts)
        f = torch.float64 if u.dtype == torch.float64 else torch.float32  # the scan never runs in half
        Cs = Cs.to(f) + prompt.to(f).transpose(1, 2)
        return selective_scan(
            u.to(f),
            dts.to(f),
            -torch.exp(self.A_logs.to(f)),
            Bs.to(f).unsqueeze(1),
            Cs.unsqueeze(1),
            self.Ds.to(f),
            self.dt_projs_bias.to(f).view(-1),
            delta_softplus=True,
        )


class ASSM(nn.Module):
    def __init__(self, dim: int, d_state: int = 8, num_tokens: int = 64, inner_rank: int = 32, mlp_ratio: float = 2.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.d_state = d_state
        self.routing = "argmax"
        self.selectiveScan = SelectiveScan(hidden, d_state)
        self.out_norm = nn.LayerNorm(hidden)
        self.out_proj = nn.Linear(hidden, dim, bias=True)
        self.in_proj = nn.Sequential(nn.Conv2d(dim, hidden, 1, 1, 0))
        self.CPE = nn.Sequential(nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden))
        self.embeddingB = nn.Embedding(num_tokens, inner_rank)
        self.embeddingB.weight.data.uniform_(-1 / num_tokens, 1 / num_tokens)
        self.route = nn.Sequential(
            nn.Linear(dim, dim // 3), nn.GELU(), nn.Linear(dim // 3, num_tokens), nn.LogSoftmax(dim=-1)
        )

    def _route(self, tokens: torch.Tensor, prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt per token (B, n, N) and the chosen prompt index (B, n)."""
        logits = self.route(tokens)
        if self.training or self.routing == "gumbel":
            policy = F.gumbel_softmax(logits, hard=True, dim=-1)
            return policy @ prompts.to(policy.dtype), policy.detach().argmax(-1)
        cls = logits.argmax(-1)
        return prompts.to(tokens.dtype)[cls], cls

    def forward(self, x: torch.Tensor, embedding_a: nn.Embedding) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, n, C), row-major (h, w)
        prompts = self.embeddingB.weight @ embedding_a.weight  # (num_tokens, N)
        prompt, cls = self._route(tokens, prompts)
        # Stable sort: equals CUDA's unstable sort for every length DGNO uses (> 32 tokens).
        order = torch.sort(cls, dim=-1, stable=True).indices
        inverse = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
        z = depthwise_gate(self.in_proj(x), self.CPE[0], "sigmoid")  # z * sigmoid(CPE(z))
        u = gather_tokens(z, order)  # (B, D, n) sorted
        y = self.selectiveScan(u, prompt).transpose(1, 2)  # (B, n, D) sorted order
        y = self.out_proj(self.out_norm(y.to(self.out_norm.weight.dtype)))  # scan output is fp32/fp64
        y = torch.gather(y, 1, inverse[:, :, None].expand(-1, -1, y.shape[2]))
        return y.transpose(1, 2).reshape(b, c, h, w)


class EncoderBlock(nn.Module):
    """``HTransformerBlock1``: x + ASSM(norm1(x)), then x + GDFN(norm2(x))."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool, layer_norm_type: str, d_state: int = 8,
                 num_tokens: int = 64, inner_rank: int = 32, mlp_ratio: float = 2.0):
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, layer_norm_type)
        self.attn = ASSM(dim, d_state, num_tokens, inner_rank, mlp_ratio)
        self.norm2 = ChannelLayerNorm(dim, layer_norm_type)
        self.ffn = GatedDconvFeedForward(dim, ffn_expansion_factor, bias)
        self.embeddingA = nn.Embedding(inner_rank, d_state)
        self.embeddingA.weight.data.uniform_(-1 / inner_rank, 1 / inner_rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), self.embeddingA)
        return x + self.ffn(self.norm2(x))
