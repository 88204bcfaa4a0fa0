"""A :class:`~.job.Job` as a lazy dask graph.

One chunk per plane (per channel too when channels are processed independently); each plane's
min/max are dask reductions of that same chunk, so computing one plane reads it once and runs the
model on it alone. The graph holds the model's recipe, never its weights when given by name,
path or factory, so it runs on dask.distributed workers as well.
"""

from __future__ import annotations

import uuid

import dask.array as da
import numpy as np

from .hooks import Hooks
from .job import Job, process_block


def _plane_chunks(job: Job) -> tuple[int, ...]:
    chunks = []
    for axis, size in zip(job.layout.axes, job.layout.shape):
        if axis in "YX":
            chunks.append(size)
        elif axis == "C":
            chunks.append(1 if job.group_size == 1 else size)
        else:
            chunks.append(1)
    return tuple(chunks)


def _dask_block(block, lo, hi, *, job: Job, hooks: Hooks, block_info=None):
    location = block_info[0]["array-location"]
    return process_block(
        block, lo, hi, job, hooks,
        stack_offset=tuple(start for start, _ in location[:-3]), channel_offset=location[-3][0],
    )


def build_lazy(job: Job, image, hooks: Hooks) -> da.Array:
    """The deblurred image as a dask array in the input's axis order (nothing computed)."""
    chunks = _plane_chunks(job)
    if isinstance(image, da.Array):
        array = image.rechunk(chunks)
    else:
        array = da.from_array(image, chunks=chunks, name=f"dgno-input-{uuid.uuid4().hex}")
    canon = job.layout.to_canonical(array)
    lo = canon.min(axis=(-2, -1), keepdims=True)
    hi = canon.max(axis=(-2, -1), keepdims=True)
    out = da.map_blocks(
        _dask_block, canon, lo, hi, job=job, hooks=hooks, dtype=np.float32,
        meta=np.empty((0,) * canon.ndim, dtype=np.float32), name=f"dgno-deblur-{uuid.uuid4().hex}",
    )
    return job.layout.from_canonical(out)
