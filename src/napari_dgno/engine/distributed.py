"""Running the lazy graph on a ``dask.distributed`` cluster, one worker process per GPU.

Nothing here is needed to *use* a cluster: once a ``distributed.Client`` exists, computing the array
from :func:`napari_dgno.deblur_lazy` runs on it. Give the model as a registry name, checkpoint path
or picklable factory: each worker then loads it once (see :mod:`.models`). Input files must be
readable at the same path on the workers. Torch-free, so :mod:`napari_dgno.io` can use it.
"""

from __future__ import annotations

import sys
from typing import Any


def active_client() -> Any | None:
    """The current ``distributed.Client``, or None (without importing distributed if unused)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


def parallel_tasks() -> int:
    """How many planes to compute at once: the cluster's worker threads, else 1 (torch uses all cores)."""
    client = active_client()
    if client is None:
        return 1
    return max(1, sum(client.nthreads().values()))


def local_gpu_cluster(gpus: list[int] | int | None = None, **scheduler_options: Any):
    """A cluster on this machine with one single-threaded worker process per GPU.

    Each worker sees only its GPU (``CUDA_VISIBLE_DEVICES``), so ``device="auto"`` picks it.
    ``gpus``: indices or a count (default: every visible CUDA device). Use as
    ``with local_gpu_cluster() as cluster, distributed.Client(cluster): ...``.
    """
    from distributed import Nanny, Scheduler, SpecCluster

    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
        if gpus == 0:
            raise RuntimeError("no CUDA GPU is visible; use distributed.LocalCluster for CPU workers")
    indices = list(range(gpus)) if isinstance(gpus, int) else list(gpus)
    if not indices:
        raise ValueError("local_gpu_cluster needs at least one GPU index")
    workers = {
        f"gpu-{i}": {
            "cls": Nanny,
            "options": {"nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": str(i)}, "name": f"gpu-{i}"},
        }
        for i in indices
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0", **scheduler_options}}
    return SpecCluster(workers=workers, scheduler=scheduler, name="napari-dgno-gpus")
