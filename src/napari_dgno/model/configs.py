"""Network configurations used across the project besides the registry's official ones."""

from __future__ import annotations

from typing import Any

#: A reduced DGNO (same modules, 32 channels, one block per level) for tests and smoke runs.
TINY_NETWORK_G: dict[str, Any] = {
    "inp_channels": 1,
    "out_channels": 1,
    "dim": 32,
    "num_blocks": [1, 1, 1, 1],
    "ffn_expansion_factor": 2.66,
    "bias": False,
    "LayerNorm_type": "WithBias",
    "variant": "face",
    "flux_mode": "avg_jump",
    "boundary_type": "dirichlet",
    "learnable_tau": True,
    "init_tau": 0.25,
}


def tiny_network_g(channels: int = 1, **overrides: Any) -> dict[str, Any]:
    """A copy of :data:`TINY_NETWORK_G` for ``channels`` input/output channels, with overrides."""
    cfg = dict(TINY_NETWORK_G, inp_channels=channels, out_channels=channels)
    cfg.update(overrides)
    return cfg
