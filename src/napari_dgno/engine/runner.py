"""Run a model over the tiles of a few same-sized images, batched on the device, and blend.

Images are normalised float32 arrays (N, k, H, W); tiles of all N images are pooled into batches,
so a stack of small planes fills a GPU batch as well as one large plane. Between batches the cancel
token is checked and progress reported. Out of device memory, the tile is halved (down to
:data:`~.devices.MIN_TILE`), a :class:`~.devices.TileSizeReduced` warning says so, and the images
are run again; the smaller tile is kept for the rest of the job.
"""

from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .acceleration import accelerated, release, resolve_acceleration
from .devices import MIN_TILE, TileSizeReduced, autocast, device_lock, is_out_of_memory, release_memory
from .hooks import Hooks
from .models import forward
from .tiling import TileGrid


@dataclass
class TileState:
    """The tile size of a running job; shrinks after an out-of-memory error, shared by its threads."""

    tile: int
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {"tile": self.tile}

    def __setstate__(self, state: dict) -> None:
        self.tile = state["tile"]
        self.lock = threading.Lock()

    def shrink(self, failed: int) -> int | None:
        """The tile to retry with after ``failed`` ran out of memory, or None at the minimum."""
        with self.lock:
            if self.tile < failed:  # another thread already shrank it
                return self.tile
            if failed <= MIN_TILE:
                return None
            self.tile = max(MIN_TILE, failed // 2 // 32 * 32)
            return self.tile


@dataclass
class TileRunner:
    model: Any
    device: torch.device
    precision: str
    overlap: int
    batch_size: int
    state: TileState
    hooks: Hooks
    accelerate: str = "auto"

    def run(self, images: np.ndarray) -> np.ndarray:
        """Blended model output (float64, normalised units) for ``images`` of shape (N, k, H, W)."""
        while True:
            tile = self.state.tile
            grid = TileGrid(images.shape[-2:], tile, self.overlap)
            try:
                return self._run_grid(images, grid)
            except Exception as err:
                if not is_out_of_memory(err):
                    raise
                release(self.model)  # captured CUDA graphs hold the old tile's activations
                release_memory(self.device)
                smaller = self.state.shrink(tile)
                if smaller is None:
                    raise RuntimeError(
                        f"out of memory on {self.device} even with {tile}-pixel tiles in batches of "
                        f"{self.batch_size}; use a smaller batch_size (--batch-size 1), close other programs "
                        "using the GPU, or choose another device"
                    ) from err
                warnings.warn(
                    f"out of memory on {self.device} with {tile}-pixel tiles (batch {self.batch_size}); "
                    f"retrying with {smaller}-pixel tiles",
                    TileSizeReduced,
                    stacklevel=2,
                )
                self.hooks.retile(len(TileGrid(images.shape[-2:], smaller, self.overlap)))

    def _run_grid(self, images: np.ndarray, grid: TileGrid) -> np.ndarray:
        acc = np.zeros(images.shape, dtype=np.float64)
        jobs = [(n, t) for n in range(images.shape[0]) for t in range(len(grid))]
        for first in range(0, len(jobs), self.batch_size):
            self.hooks.check()
            chunk = jobs[first : first + self.batch_size]
            windows = [grid.window(t) for _, t in chunk]
            batch = np.stack([images[n][(slice(None), *w)] for (n, _), w in zip(chunk, windows)])
            out = self._forward(batch)
            for (n, t), tile_out in zip(chunk, out):
                for dst, src, weight in grid.pieces(t):
                    target, values = acc[n][(slice(None), *dst)], tile_out[(slice(None), *src)]
                    if weight is None:
                        target[...] = values  # core: this tile alone, weight exactly one
                    else:
                        target += values * weight
            self.hooks.advance(len(chunk))
        return acc

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        count = batch.shape[0]
        if count < self.batch_size and "graphs" in self._mode:
            # A short last batch is padded to the full one: the graph captured for it is replayed
            # instead of capturing (and keeping in memory) a second one.
            pad = np.zeros((self.batch_size - count, *batch.shape[1:]), dtype=batch.dtype)
            batch = np.concatenate([batch, pad])
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        with device_lock(self.device), torch.inference_mode(), autocast(self.device, self.precision):
            y = forward(accelerated(self.model, self.device, self._mode), x)
        return y[:count].float().cpu().numpy()

    @functools.cached_property
    def _mode(self) -> str:
        """``accelerate`` resolved once per runner, not per batch (``auto`` asks the scan dispatcher)."""
        return resolve_acceleration(self.accelerate, self.model, self.device)
