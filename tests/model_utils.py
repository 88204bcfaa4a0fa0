"""Helpers shared by the model tests."""

from __future__ import annotations

import torch

from napari_dgno.model import DGNO


def randomized(model: DGNO, seed: int = 0, scale: float = 0.05) -> DGNO:
    """Perturb every float parameter so that a wrong bias, norm weight or tau cannot hide behind its init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.dtype)
            if name.endswith("tau"):
                p.add_(0.1 * noise)
            elif name.endswith(("A_logs", "Ds", "dt_projs_bias")):
                p.add_(0.2 * noise)
            else:
                p.add_(scale * noise)
    return model
