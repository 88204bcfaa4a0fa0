"""Convolutional building blocks of DGNO: Restormer's norm, GDFN and resampling, MIMO-UNet's heads.

Module and parameter names mirror the official checkpoints (``body.weight``, ``main.0.weight``...),
so state dicts load with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fusible import gated_feedforward


class _BiasFreeNorm(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, H, W, C)
        var = x.var(-1, keepdim=True, unbiased=False)
        return x / torch.sqrt(var + 1e-5) * self.weight


class _WithBiasNorm(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, H, W, C)
        # Same maths as Restormer's (biased variance, eps 1e-5 inside the sqrt), one fused kernel.
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, 1e-5)


class ChannelLayerNorm(nn.Module):
    """Restormer's LayerNorm over the channels of a (B, C, H, W) map (key ``body.weight``)."""

    def __init__(self, channels: int, layer_norm_type: str = "WithBias"):
        super().__init__()
        self.body = _BiasFreeNorm(channels) if layer_norm_type == "BiasFree" else _WithBiasNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GatedDconvFeedForward(nn.Module):
    """Restormer's GDFN: 1x1 expand, depthwise 3x3, GELU gate, 1x1 project."""

    def __init__(self, dim: int, expansion: float, bias: bool):
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, 1, 1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gated_feedforward(x, self.project_in, self.dwconv, self.project_out)


class OverlapPatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, bias: bool = False):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 3, 1, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """3x3 conv to half the channels, then pixel-unshuffle: twice the channels, half the size."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels // 2, 3, 1, 1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """3x3 conv to twice the channels, then pixel-shuffle: half the channels, twice the size."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels * 2, 3, 1, 1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class BasicConv(nn.Module):
    """ConvIR/SFNet BasicConv: conv (bias on, 'same' padding) then GELU when ``act``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, act: bool):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, 1, kernel_size // 2, bias=True)]
        if act:
            layers.append(nn.GELU())
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class ShallowConvModule(nn.Module):
    """SCM: features of a downsampled copy of the input, injected into the encoder by FAM."""

    def __init__(self, out_plane: int, in_channels: int):
        super().__init__()
        self.main = nn.Sequential(
            BasicConv(in_channels, out_plane // 4, 3, act=True),
            BasicConv(out_plane // 4, out_plane // 2, 1, act=True),
            BasicConv(out_plane // 2, out_plane // 2, 3, act=True),
            BasicConv(out_plane // 2, out_plane, 1, act=False),
            nn.InstanceNorm2d(out_plane, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class FeatureAttentionModule(nn.Module):
    """FAM: merge [encoder feature, SCM feature] with one 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.merge = BasicConv(channels * 2, channels, 3, act=False)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat([x, z], dim=1))
