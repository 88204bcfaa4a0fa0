"""Recover a DGNO ``network_g`` from the keys and shapes of a state dict.

What the tensors determine: input/output channels, width (``dim``), blocks per level, Face vs Cell
(the Face operators carry ``face_idx_*`` buffers), whether the DG flux has a learnable ``tau``
(``jump``/``avg_jump``) or none (``central``), bias, LayerNorm type and the GDFN expansion.
What they cannot: ``jump`` vs ``avg_jump`` and ``neumann`` vs ``dirichlet`` give identical keys and
shapes (architecture doc, section 9), and the Cell window is a free parameter of no tensor. Those
take the defaults below and are set through ``load_model(..., flux_mode=..., boundary_type=...)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .errors import CheckpointError

LEVELS = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")
#: The official yml value; ``int(C * 2.66)`` gives the hidden widths 127, 255, 510, 1021 of the released models.
OFFICIAL_FFN_EXPANSION = 2.66
#: Defaults for what the state dict cannot tell (the most common released settings, architecture doc section 2).
DEFAULT_FLUX_WITH_TAU = "jump"
DEFAULT_BOUNDARY = "neumann"
DEFAULT_WIN_DG = 8


def infer_network_g(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """The ``DGNO(**network_g)`` configuration whose state dict has these keys and shapes.

    ``flux_mode`` is ``"jump"`` when the DG operators carry ``tau`` (``avg_jump`` looks the same) and
    ``"central"`` otherwise; ``boundary_type`` is ``"neumann"``; both may need an override.
    """
    embed = state_dict.get("patch_embed.proj.weight")
    output = state_dict.get("output.weight")
    if embed is None or output is None or embed.ndim != 4 or output.ndim != 4:
        first = ", ".join(list(state_dict)[:5]) or "(empty)"
        raise CheckpointError(
            "this is not a DGNO state dict: it lacks 'patch_embed.proj.weight' and/or 'output.weight' "
            f"(its first keys: {first})"
        )
    dim, in_channels = int(embed.shape[0]), int(embed.shape[1])
    num_blocks = [_count_blocks(state_dict, level) for level in LEVELS]
    face = any(k.endswith(".face_idx_left") for k in state_dict)
    has_tau = any(re.fullmatch(r"conv\d+\.tau", k) for k in state_dict)
    return {
        "inp_channels": in_channels,
        "out_channels": int(output.shape[0]),
        "dim": dim,
        "num_blocks": num_blocks,
        "ffn_expansion_factor": _ffn_expansion(state_dict, dim, num_blocks),
        "bias": any(k.endswith(".ffn.project_in.bias") for k in state_dict),
        "LayerNorm_type": "BiasFree" if num_blocks[0] and "encoder_level1.0.norm1.body.bias" not in state_dict
        else "WithBias",
        "variant": "face" if face else "cell",
        "flux_mode": DEFAULT_FLUX_WITH_TAU if has_tau else "central",
        "boundary_type": DEFAULT_BOUNDARY,
        "win_dg": DEFAULT_WIN_DG,
        "learnable_tau": True,
        "init_tau": 0.25,
    }


def _count_blocks(state_dict: Mapping[str, torch.Tensor], level: str) -> int:
    pattern = re.compile(rf"{level}\.(\d+)\.")
    indices = {int(m.group(1)) for k in state_dict if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0


def _ffn_expansion(state_dict: Mapping[str, torch.Tensor], dim: int, num_blocks: list[int]) -> float:
    """The GDFN factor: the official 2.66 when it reproduces every hidden width, else hidden / width."""
    widths = {}
    for i, (level, count) in enumerate(zip(LEVELS, num_blocks, strict=True)):
        weight = state_dict.get(f"{level}.0.ffn.project_out.weight") if count else None
        if weight is not None:
            widths[dim * 2**i] = int(weight.shape[1])
    if not widths or all(int(c * OFFICIAL_FFN_EXPANSION) == h for c, h in widths.items()):
        return OFFICIAL_FFN_EXPANSION
    channels, hidden = next(iter(widths.items()))
    return (hidden + 0.5) / channels  # int(channels * factor) == hidden
