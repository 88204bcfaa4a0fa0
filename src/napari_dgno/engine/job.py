"""One deblurring job, fully resolved, and the function that processes a block of its planes.

A block is part of the canonical array ``(*stack, C, Y, X)``: whole planes, all or some channels.
The same :func:`process_block` serves the eager path (several planes per block, so small planes fill
a GPU batch) and the lazy dask graph (one plane per block), locally or on dask.distributed workers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .._checkpoints.device import resolve_device
from .axes import Layout
from .hooks import Hooks
from .models import ModelMeta, ModelSpec
from .normalize import ConstantPlaneWarning, Scaling, plane_scaling
from .runner import TileRunner, TileState
from .tiling import TileGrid


@dataclass(frozen=True)
class Job:
    layout: Layout
    dtype: np.dtype
    spec: ModelSpec
    meta: ModelMeta
    device: str
    precision: str
    overlap: int
    batch_size: int
    state: TileState
    accelerate: str = "auto"

    @property
    def group_size(self) -> int:
        """Channels the model sees together: all colour channels for a multi-channel model, else 1."""
        return self.meta.in_channels if (self.meta.in_channels or 1) > 1 else 1

    @property
    def alpha(self) -> int | None:
        """Index of the passed-through alpha channel (RGBA), if any."""
        return self.layout.channels - 1 if self.layout.rgba else None

    @property
    def colour_channels(self) -> int:
        return self.layout.channels - (self.alpha is not None)

    @property
    def images_per_plane(self) -> int:
        return self.colour_channels // self.group_size

    @property
    def planes(self) -> int:
        return int(np.prod(self.layout.stack_shape, dtype=np.int64))

    def tiles_per_image(self, tile: int | None = None) -> int:
        return len(TileGrid(self.layout.canonical_shape[-2:], tile or self.state.tile, self.overlap))

    def groups(self, channels: int, offset: int) -> list[list[int]]:
        """Channel groups (block-local indices) fed to the model together; alpha excluded."""
        colour = [c for c in range(channels) if c + offset != self.alpha]
        return [colour] if self.group_size > 1 else [[c] for c in colour]

    def scalings(
        self, lo: np.ndarray, hi: np.ndarray, stack_index: tuple[int, ...], offset: int
    ) -> list[tuple[list[int], Scaling | None]]:
        """Per channel group of one plane: its channels and scaling (None: constant plane).

        ``lo``/``hi``: the plane's per-channel min and max, shape (C, 1, 1). Raises for NaN/Inf.
        """
        out = []
        for group in self.groups(lo.shape[0], offset):
            where = self.layout.describe(stack_index, group[0] + offset if self.group_size == 1 else None)
            scaling = plane_scaling(
                self.meta.normalization, self.dtype, float(lo[group].min()), float(hi[group].max()), where
            )
            out.append((group, scaling))
        return out


def process_block(
    block: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    job: Job,
    hooks: Hooks,
    stack_offset: tuple[int, ...],
    channel_offset: int,
) -> np.ndarray:
    """Deblur every plane of ``block`` (..., C, Y, X); float32 in the input's units."""
    block = np.asarray(block)
    out = np.empty(block.shape, dtype=np.float32)
    images, targets = [], []
    for index in np.ndindex(block.shape[:-3]):
        plane, result = block[index], out[index]
        where = tuple(o + i for o, i in zip(stack_offset, index))
        if job.alpha is not None and job.alpha - channel_offset in range(plane.shape[0]):
            result[job.alpha - channel_offset] = plane[job.alpha - channel_offset]
        for group, scaling in job.scalings(lo[index], hi[index], where, channel_offset):
            if scaling is None:
                warnings.warn(
                    f"{job.layout.describe(where, group[0] + channel_offset)} is constant; passed through unchanged",
                    ConstantPlaneWarning,
                    stacklevel=2,
                )
                result[group] = plane[group]
                hooks.advance(job.tiles_per_image())
                hooks.finish_images(1)
                continue
            images.append(scaling.to_model(plane[group]))
            targets.append((index, group, scaling))
    if images:
        device = resolve_device(job.device)
        runner = TileRunner(
            model=job.spec.get(device), device=device, precision=job.precision, overlap=job.overlap,
            batch_size=job.batch_size, state=job.state, hooks=hooks, accelerate=job.accelerate,
        )
        blended = runner.run(np.stack(images))
        for (index, group, scaling), values in zip(targets, blended):
            out[index][group] = scaling.from_model(values)
        hooks.finish_images(len(images))
    return out
