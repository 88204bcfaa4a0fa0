"""Exponential moving average of the network weights (BasicSR's ``model_ema``), updated every step."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class ModelEMA:
    """``ema = decay * ema + (1 - decay) * param`` for every parameter; buffers are copied.

    The averaged network is a separate module in eval mode without gradients (it is what validation
    and ``params_ema`` use).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        names = [name for name, _ in self.module.named_parameters()]
        ema_params = [p for _, p in self.module.named_parameters()]
        torch._foreach_mul_(ema_params, self.decay)
        torch._foreach_add_(ema_params, [params[n].detach() for n in names], alpha=1.0 - self.decay)
        buffers = dict(model.named_buffers())
        for name, ema_buffer in self.module.named_buffers():
            ema_buffer.copy_(buffers[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state, strict=True)
