"""The deblurring engine: normalisation, tiling and blending, batching, devices, lazy dask graphs.

Modules, one job each:

* :mod:`.hooks`        progress callback and cancel token (:class:`Cancelled`), torch-free
* :mod:`.axes`         which dimensions are plane, channels and stack; guessing them
* :mod:`.normalize`    per-plane intensity normalisation and the way back; dtype checks
* :mod:`.tiling`       tile grids and blending weights that sum to one
* :mod:`.devices`      precision, default tile/batch per device, out-of-memory handling
* :mod:`.models`       what counts as a model; one copy per process (dask workers included)
* :mod:`.runner`       batched tiled inference with out-of-memory retry
* :mod:`.job`          a resolved job and the function that processes a block of planes
* :mod:`.eager`        the eager loop into a numpy array (no dask needed)
* :mod:`.lazy`         the lazy dask graph
* :mod:`.api`          :func:`deblur`, :func:`deblur_lazy`
* :mod:`.distributed`  helpers for dask.distributed clusters (one worker per GPU)
* :mod:`.record`       the provenance record of a run, stored with results

Heavy modules are imported on first use, so ``from napari_dgno.engine import Cancelled`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from .hooks import Cancelled

_EXPORTS = {
    "deblur": "api",
    "deblur_lazy": "api",
    "guess_axes": "axes",
    "provenance": "record",
    "DEFAULT_OVERLAP": "devices",
    "TileSizeReduced": "devices",
    "ConstantPlaneWarning": "normalize",
    "local_gpu_cluster": "distributed",
}

__all__ = ["Cancelled", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
