"""A :class:`~.job.Job` run eagerly into a numpy array.

All planes' min/max come first (one pass, so a NaN in the last plane fails before hours of work),
then blocks of planes sized to fill a batch are processed into one preallocated array. Needs no
dask unless the input is a dask array.
"""

from __future__ import annotations

import numpy as np

from .hooks import Hooks
from .job import Job, process_block


def _is_dask(array) -> bool:
    return type(array).__module__.startswith("dask.")


def _plane_stats(canon) -> tuple[np.ndarray, np.ndarray]:
    lo = canon.min(axis=(-2, -1), keepdims=True)
    hi = canon.max(axis=(-2, -1), keepdims=True)
    if _is_dask(canon):
        import dask

        lo, hi = dask.compute(lo, hi)
    return np.asarray(lo), np.asarray(hi)


def run_eager(job: Job, image, hooks: Hooks) -> np.ndarray:
    """The deblurred image as a numpy array in the input's axis order."""
    canon = job.layout.to_canonical(image)
    lo, hi = _plane_stats(canon)
    for index in np.ndindex(canon.shape[:-3]):  # validate every plane before any model time
        job.scalings(lo[index], hi[index], index, 0)
    out = np.empty(canon.shape, dtype=np.float32)
    per_block = max(1, job.batch_size // max(1, job.images_per_plane * job.tiles_per_image()))
    hooks.start()
    stack = canon.shape[:-3]
    blocks = [()] if not stack else [
        (*lead, slice(s, min(s + per_block, stack[-1])))
        for lead in np.ndindex(stack[:-1]) for s in range(0, stack[-1], per_block)
    ]
    for key in blocks:
        hooks.check()
        block = canon[key]
        if _is_dask(block):
            block = block.compute()
        offset = tuple(k.start if isinstance(k, slice) else k for k in key)
        out[key] = process_block(block, lo[key], hi[key], job, hooks, stack_offset=offset, channel_offset=0)
    return job.layout.from_canonical(out)
