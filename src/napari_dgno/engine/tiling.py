"""Tile grids and blending weights for one image plane.

Tiles are ``tile`` pixels square (a multiple of 32, the network's stride), or the whole axis when the
image is smaller. Neighbouring tiles share at least ``overlap`` pixels, spread evenly. At each edge a
tile shares with a neighbour, its outer ``overlap // 4`` pixels (the halo, where the network sees the
cut) get weight zero and the next ``overlap - 2 * (overlap // 4)`` pixels ramp linearly up; edges on
the image border keep weight one (no ramp there, so a single tile is returned untouched, unlike the
official tiler's 32-pixel ramp). The weights are separable and divided by their sum along each axis,
so they add up to one at every pixel; accumulating in float64 makes an identity model reproduce its
input exactly, and an operator with a receptive-field radius <= ``overlap // 4`` equal to the same
operator applied to the whole plane.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spread tile origins along one axis; neighbours share >= ``overlap`` pixels."""
    if length <= tile:
        return [0]
    count = -(-(length - overlap) // (tile - overlap))
    return [(i * (length - tile)) // (count - 1) for i in range(count)]


def _ramp(n: int) -> np.ndarray:
    return (np.arange(1, n + 1, dtype=np.float64)) / (n + 1)


def axis_weights(length: int, size: int, starts: list[int], overlap: int) -> list[np.ndarray]:
    """One weight profile per tile along one axis, normalised so they sum to one at each pixel."""
    halo = overlap // 4
    band = overlap - 2 * halo
    profiles = []
    for start in starts:
        w = np.ones(size, dtype=np.float64)
        if start > 0:  # cut edge at the low side
            w[:halo] = 0.0
            w[halo : halo + band] *= _ramp(band)
        if start + size < length:  # cut edge at the high side
            w[size - halo :] = 0.0
            w[size - halo - band : size - halo] *= _ramp(band)[::-1]
        profiles.append(w)
    total = np.zeros(length, dtype=np.float64)
    for start, w in zip(starts, profiles):
        total[start : start + size] += w
    if not np.all(total > 0):  # cannot happen for overlap <= tile // 2; guards future edits
        raise AssertionError("tile weights leave pixels uncovered")
    return [w / total[start : start + size] for start, w in zip(starts, profiles)]


@dataclass(frozen=True)
class TileGrid:
    """The tiles of an (H, W) plane: origins, tile shape and normalised separable weights."""

    shape: tuple[int, int]
    tile: int
    overlap: int

    @property
    def tile_shape(self) -> tuple[int, int]:
        return (min(self.tile, self.shape[0]), min(self.tile, self.shape[1]))

    @cached_property
    def starts(self) -> tuple[list[int], list[int]]:
        return tuple(axis_starts(n, t, self.overlap) for n, t in zip(self.shape, self.tile_shape))

    @cached_property
    def weights(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return tuple(
            axis_weights(n, t, s, self.overlap) for n, t, s in zip(self.shape, self.tile_shape, self.starts)
        )

    @cached_property
    def tiles(self) -> list[tuple[int, int]]:
        """(row index, column index) into :attr:`starts`, row-major."""
        ys, xs = self.starts
        return [(i, j) for i in range(len(ys)) for j in range(len(xs))]

    def __len__(self) -> int:
        return len(self.tiles)

    def window(self, index: int) -> tuple[slice, slice]:
        i, j = self.tiles[index]
        (y0, x0), (th, tw) = (self.starts[0][i], self.starts[1][j]), self.tile_shape
        return slice(y0, y0 + th), slice(x0, x0 + tw)

    def weight(self, index: int) -> np.ndarray:
        i, j = self.tiles[index]
        return self.weights[0][i][:, None] * self.weights[1][j][None, :]

    @cached_property
    def _segments(self) -> tuple[list[list[slice]], list[list[slice]]]:
        return tuple([_segments(w) for w in axis] for axis in self.weights)

    def pieces(self, index: int) -> list[tuple[tuple[slice, slice], tuple[slice, slice], np.ndarray | None]]:
        """Where tile ``index`` contributes: (plane window, tile window, weights or None).

        None marks the core, where this tile alone has weight (exactly) one: it is copied, not
        blended, which keeps the per-tile host work small; pixels of zero weight are skipped.
        """
        i, j = self.tiles[index]
        (y0, x0) = self.starts[0][i], self.starts[1][j]
        rows, cols = self._segments[0][i], self._segments[1][j]
        wy, wx = self.weights[0][i], self.weights[1][j]
        out = []
        for r, rs in enumerate(rows):
            for c, cs in enumerate(cols):
                if rs.stop <= rs.start or cs.stop <= cs.start:
                    continue
                dst = (slice(y0 + rs.start, y0 + rs.stop), slice(x0 + cs.start, x0 + cs.stop))
                weight = None if r == c == 1 else wy[rs][:, None] * wx[cs][None, :]
                out.append((dst, (rs, cs), weight))
        return out


def _segments(profile: np.ndarray) -> list[slice]:
    """[rising band, core of ones, falling band] of a weight profile, zero-weight ends excluded."""
    support = np.flatnonzero(profile > 0)
    start, stop = int(support[0]), int(support[-1]) + 1
    ones = np.flatnonzero(profile == 1.0)
    if ones.size == 0 or not np.all(profile[ones[0] : ones[-1] + 1] == 1.0):
        return [slice(start, stop), slice(start, start), slice(stop, stop)]  # no clean core: blend all
    core = slice(int(ones[0]), int(ones[-1]) + 1)
    return [slice(start, core.start), core, slice(core.stop, stop)]


def check_tiling(tile: int, overlap: int) -> None:
    """Errors for tile/overlap values the grid cannot use, with the fix."""
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 32 or tile % 32:
        raise ValueError(f"tile must be a multiple of 32 pixels, at least 32 (e.g. 256 or 512), got {tile!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or overlap < 0:
        raise ValueError(f"overlap must be a whole number of pixels >= 0 (e.g. 32), got {overlap!r}")
    if overlap > tile // 2:
        raise ValueError(
            f"overlap {overlap} is more than half the tile ({tile}); use a smaller overlap or a larger tile"
        )
