"""The official ``DGNO_eval`` overlapping-tile inference, reproduced exactly (architecture notes, section 8).

The published test of the BBBC006 models runs the network on ``train_size`` (512) tiles with a 32-pixel
overlap, blends them with linear ramps and adds them into a zero canvas (no normalisation by a weight
sum). For 520×696 images the weights sum to one everywhere; when the image fits in one tile the
original multiplies the first 32 rows and columns by a 0→1 ramp, and so does this port.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

OVERLAP = 32


@dataclass(frozen=True)
class TileGrid:
    """Tile origins of an ``height``×``width`` image cut into ``k1``×``k2`` tiles (``DGNO_eval.grids``)."""

    height: int
    width: int
    k1: int
    k2: int
    nr: int
    nc: int
    stride1: int
    stride2: int
    origins: tuple[tuple[int, int], ...]


def tile_grid(height: int, width: int, train_size: int, overlap: int = OVERLAP) -> TileGrid:
    """The tiles ``DGNO_eval.grids`` cuts, in its (row-major) order."""
    k1, k2 = min(height, train_size), min(width, train_size)
    if k1 <= overlap or k2 <= overlap:
        raise ValueError(f"official tiling needs images larger than {overlap} px on each side, got {height}x{width}")
    s1, s2 = k1 - overlap, k2 - overlap
    nr = (height - overlap - 1) // s1 + 1
    nc = (width - overlap - 1) // s2 + 1
    step_i = k1 if nr == 1 else s1
    step_j = k2 if nc == 1 else s2
    origins = []
    i, last_i = 0, False
    while i < height and not last_i:
        j, last_j = 0, False
        if i + k1 >= height:
            i, last_i = height - k1, True
        while j < width and not last_j:
            if j + k2 >= width:
                j, last_j = width - k2, True
            origins.append((i, j))
            j += step_j
        i += step_i
    return TileGrid(height, width, k1, k2, nr, nc, s1, s2, tuple(origins))


def _ramp_tile(tile: torch.Tensor, i: int, j: int, grid: TileGrid, overlap: int = OVERLAP) -> None:
    """Multiply one (…, k1, k2) tile in place by ``DGNO_eval.grids_inverse``'s ramps, in its order."""
    h, w, k1, k2 = grid.height, grid.width, grid.k1, grid.k2
    ek1 = grid.nr * grid.stride1 + 2 * overlap - h
    ek2 = grid.nc * grid.stride2 + 2 * overlap - w

    def ramp(n: int, rising: bool) -> torch.Tensor:
        start, end = (0, 1) if rising else (1, 0)
        return torch.linspace(start, end, n, dtype=tile.dtype, device=tile.device)

    if i != 0 and i + k1 != h:
        tile[..., :overlap, :] *= ramp(overlap, True)[:, None]
    if i + 2 * k1 - ek1 < h:
        tile[..., -overlap:, :] *= ramp(overlap, False)[:, None]
    if i + k1 == h:
        tile[..., :ek1, :] *= ramp(ek1, True)[:, None]
    if i + 2 * k1 - ek1 == h:
        tile[..., -ek1:, :] *= ramp(ek1, False)[:, None]
    if j != 0 and j + k2 != w:
        tile[..., :, :overlap] *= ramp(overlap, True)
    if j + 2 * k2 - ek2 < w:
        tile[..., :, -overlap:] *= ramp(overlap, False)
    if j + k2 == w:
        tile[..., :, :ek2] *= ramp(ek2, True)
    if j + 2 * k2 - ek2 == w:
        tile[..., :, -ek2:] *= ramp(ek2, False)


def tile_weights(grid: TileGrid, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """(n_tiles, k1, k2) blending weights of ``DGNO_eval.grids_inverse`` (its ramps applied to ones)."""
    out = torch.ones(len(grid.origins), grid.k1, grid.k2, dtype=dtype, device=device)
    for t, (i, j) in enumerate(grid.origins):
        _ramp_tile(out[t], i, j, grid)
    return out


def blend_tiles(outs: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """Reassemble (n_tiles, C, k1, k2) outputs into (1, C, H, W) exactly like ``grids_inverse``."""
    outs = outs.clone()
    canvas = torch.zeros(1, outs.shape[1], grid.height, grid.width, dtype=outs.dtype, device=outs.device)
    for t, (i, j) in enumerate(grid.origins):
        _ramp_tile(outs[t], i, j, grid)
        canvas[0, :, i : i + grid.k1, j : j + grid.k2] += outs[t]
    return canvas


def official_tiled_forward(net: Callable[[torch.Tensor], list[torch.Tensor] | torch.Tensor], image: torch.Tensor,
                           train_size: int | None) -> torch.Tensor:
    """Full-resolution output of ``DGNO_eval`` on a (1, C, H, W) image: the tiles run as one batch, only
    the last (full-size) output is reassembled. ``train_size=None`` runs the whole image, like 3DHistech."""
    def last(out: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        return out[-1] if isinstance(out, (list, tuple)) else out

    if not train_size:
        return last(net(image))
    if image.shape[0] != 1:
        raise ValueError(f"official tiling takes one image at a time (batch 1), got batch {image.shape[0]}")
    h, w = image.shape[-2:]
    grid = tile_grid(h, w, int(train_size))
    tiles = torch.cat([image[:, :, i : i + grid.k1, j : j + grid.k2] for i, j in grid.origins], dim=0)
    return blend_tiles(last(net(tiles)), grid)
