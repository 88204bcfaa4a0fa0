"""The DGNO network: ASSM encoder, discontinuous-Galerkin decoder, multi-scale heads.

Same parameters, buffers, state-dict order and function as the official ``DGNO``/``DGNO_eval``
(arXiv 2605.23282), with three additions: any image size (reflect padding to a multiple of 32,
every output cropped back), deterministic routing by default at inference, and a selective scan
that runs without CUDA (see :mod:`napari_dgno.model.scan`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .assm import ROUTINGS, ASSM, EncoderBlock
from .dg import DGWindowOperator
from .layers import (
    BasicConv,
    Downsample,
    FeatureAttentionModule,
    OverlapPatchEmbed,
    ShallowConvModule,
    Upsample,
)

#: Official ``network_g`` keys that the network accepts but does not use.
IGNORED_KEYS = ("num_refinement_blocks", "heads", "train_size", "dual_pixel_task", "infer_mode", "type")


def reflect_pad(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Reflect-pad bottom/right, repeating the reflection when the image is smaller than the pad."""
    while pad_h > 0 or pad_w > 0:
        h, w = x.shape[-2:]
        step_h = min(pad_h, h - 1) if h > 1 else 0
        step_w = min(pad_w, w - 1) if w > 1 else 0
        if step_h == 0 and step_w == 0:  # a single row/column: nothing to reflect, repeat it
            return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        x = F.pad(x, (0, step_w, 0, step_h), mode="reflect")
        pad_h, pad_w = pad_h - step_h, pad_w - step_w
    return x


class DGNO(nn.Module):
    """DGNO image restoration network.

    Accepts every key of an official yml ``network_g`` section (unused ones are ignored).
    ``forward(x)`` takes (B, C, H, W) in [0, 1] and returns ``[out_quarter, out_half, out_full]``.
    """

    def __init__(
        self,
        inp_channels: int = 1,
        out_channels: int = 1,
        dim: int = 48,
        num_blocks: tuple[int, ...] | list[int] = (2, 4, 6, 2),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",  # noqa: N803 (official key)
        flux_mode: str = "central",
        init_tau: float = 0.25,
        learnable_tau: bool = True,
        boundary_type: str = "neumann",
        win_dg: int = 8,
        variant: str = "cell",
        routing: str = "argmax",
        **ignored: object,
    ):
        super().__init__()
        unknown = sorted(set(ignored) - set(IGNORED_KEYS))
        if unknown:
            raise TypeError(f"DGNO got unknown configuration keys: {', '.join(unknown)}")
        if ignored.get("dual_pixel_task"):
            raise ValueError("dual_pixel_task=True is not supported (no released model uses it)")
        if len(num_blocks) != 4:
            raise ValueError(f"num_blocks must have 4 entries (one per level), got {list(num_blocks)}")
        if dim % 16 or dim < 32:
            raise ValueError(
                f"dim must be a multiple of 16 and at least 32 (the DG operators use 16 heads of >= 2 channels), got {dim}"
            )
        self.config = dict(
            inp_channels=inp_channels, out_channels=out_channels, dim=dim, num_blocks=list(num_blocks),
            ffn_expansion_factor=ffn_expansion_factor, bias=bias, LayerNorm_type=LayerNorm_type,
            flux_mode=flux_mode, init_tau=init_tau, learnable_tau=learnable_tau,
            boundary_type=boundary_type, win_dg=win_dg, variant=variant,
        )
        self.in_channels, self.out_channels = inp_channels, out_channels
        # Face operators need >= 2 windows per side at 1/4 resolution (8 px windows).
        self.min_size = 64 if variant == "face" else 32

        def level(width: int, count: int) -> nn.Sequential:
            return nn.Sequential(*[EncoderBlock(width, ffn_expansion_factor, bias, LayerNorm_type) for _ in range(count)])

        def dg(width: int) -> DGWindowOperator:
            window = win_dg if variant == "cell" else 8
            return DGWindowOperator(width, variant, window, flux_mode, init_tau, learnable_tau, boundary_type)

        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        self.encoder_level1 = level(dim, num_blocks[0])
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = level(dim * 2, num_blocks[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = level(dim * 4, num_blocks[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = level(dim * 8, num_blocks[3])
        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, kernel_size=1, bias=bias)
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=bias)
        self.up2_1 = Upsample(dim * 2)
        self.reduce_chan_level1 = nn.Conv2d(dim * 2, dim, kernel_size=1, bias=bias)
        self.output = nn.Conv2d(dim, out_channels, 3, 1, 1, bias=bias)
        self.ConvsOut = nn.ModuleList([BasicConv(dim * 4, out_channels, 3, act=False), BasicConv(dim * 2, out_channels, 3, act=False)])
        self.FAM1 = FeatureAttentionModule(dim * 4)
        self.SCM1 = ShallowConvModule(dim * 4, inp_channels)
        self.FAM2 = FeatureAttentionModule(dim * 2)
        self.SCM2 = ShallowConvModule(dim * 2, inp_channels)
        self.conv0, self.conv1 = dg(dim), dg(dim)
        self.conv00, self.conv11 = dg(dim * 2), dg(dim * 2)
        self.conv000, self.conv111 = dg(dim * 4), dg(dim * 4)
        self.routing = routing

    @property
    def routing(self) -> str:
        """``argmax`` (deterministic) or ``gumbel`` (the original's sampling); training always samples."""
        return self._routing

    @routing.setter
    def routing(self, value: str) -> None:
        if value not in ROUTINGS:
            raise ValueError(f"routing must be one of {', '.join(ROUTINGS)}, got {value!r}")
        self._routing = value
        for module in self.modules():
            if isinstance(module, ASSM):
                module.routing = value

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"DGNO expects (B, {self.in_channels}, H, W) input, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        hp = max(self.min_size, -(-h // 32) * 32)
        wp = max(self.min_size, -(-w // 32) * 32)
        outputs = self._forward_padded(reflect_pad(x, hp - h, wp - w))
        return [out[..., : -(-h // s), : -(-w // s)] for out, s in zip(outputs, (4, 2, 1))]

    def _forward_padded(self, img: torch.Tensor) -> list[torch.Tensor]:
        x2 = F.interpolate(img, scale_factor=0.5)  # nearest, i.e. img[..., ::2, ::2]
        x4 = F.interpolate(x2, scale_factor=0.5)
        z2, z4 = self.SCM2(x2), self.SCM1(x4)
        e1 = self.encoder_level1(self.patch_embed(img))
        e2 = self.encoder_level2(self.FAM2(self.down1_2(e1), z2))
        e3 = self.encoder_level3(self.FAM1(self.down2_3(e2), z4))
        lat = self.latent(self.down3_4(e3))
        d3 = self.reduce_chan_level3(torch.cat([self.up4_3(lat), e3], 1))
        d3 = self.conv111(self.conv000(d3))
        out_quarter = self.ConvsOut[0](d3) + x4
        d2 = self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], 1))
        d2 = self.conv11(self.conv00(d2))
        out_half = self.ConvsOut[1](d2) + x2
        d1 = self.reduce_chan_level1(torch.cat([self.up2_1(d2), e1], 1))
        d1 = self.conv1(self.conv0(d1))
        out_full = self.output(d1) + img
        return [out_quarter, out_half, out_full]
