"""The paper's multi-scale loss (hard-coded in the official ``optimize_parameters``).

content = Σ L1(out_s, gt_s) over the quarter, half and full outputs, with gt_s the bilinear
downsampling of the target (align_corners False, no antialias); frequency = the same sum of L1 between
``fft2(…, norm='backward')`` of prediction and target with real and imaginary parts stacked;
total = content + 0.1 · frequency.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class LossTerms(NamedTuple):
    total: torch.Tensor
    content: torch.Tensor
    frequency: torch.Tensor
    applied: bool = True  # False when the optimiser step was skipped for non-finite gradients


def multiscale_targets(gt: torch.Tensor) -> list[torch.Tensor]:
    """[gt at 1/4, gt at 1/2, gt] by bilinear interpolation, as in the official training."""
    gt4 = F.interpolate(gt, scale_factor=0.25, mode="bilinear", align_corners=False)
    gt2 = F.interpolate(gt, scale_factor=0.5, mode="bilinear", align_corners=False)
    return [gt4, gt2, gt]


def _spectrum(x: torch.Tensor) -> torch.Tensor:
    f = torch.fft.fft2(x, norm="backward")
    return torch.stack((f.real, f.imag), dim=-1)


def dgno_loss(outputs: list[torch.Tensor] | tuple[torch.Tensor, ...], gt: torch.Tensor,
              fft_weight: float = 0.1) -> LossTerms:
    """Loss of DGNO's three outputs against ``gt`` (computed in float32 even under autocast)."""
    if len(outputs) != 3:
        raise ValueError(f"DGNO returns three outputs (quarter, half, full), got {len(outputs)}")
    targets = multiscale_targets(gt.float())
    content = torch.zeros((), device=gt.device)
    frequency = torch.zeros((), device=gt.device)
    for pred, target in zip(outputs, targets, strict=True):
        pred = pred.float()
        if pred.shape != target.shape:
            raise ValueError(f"output of shape {tuple(pred.shape)} does not match its target {tuple(target.shape)}")
        content = content + F.l1_loss(pred, target)
        frequency = frequency + F.l1_loss(_spectrum(pred), _spectrum(target))
    return LossTerms(content + fft_weight * frequency, content, frequency)
