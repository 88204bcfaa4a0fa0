"""napari-dgno: remove defocus blur from microscopy images with DGNO, in napari or headless.

The public API is imported lazily so that ``import napari_dgno`` (done by napari at start-up to
read the plugin manifest) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "DGNO": "napari_dgno.model",
    "load_model": "napari_dgno.checkpoints",
    "list_models": "napari_dgno.checkpoints",
    "suggest_models": "napari_dgno.checkpoints",
    "fetch_model": "napari_dgno.checkpoints",
    "is_cached": "napari_dgno.checkpoints",
    "deblur": "napari_dgno.engine",
    "deblur_lazy": "napari_dgno.engine",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_dgno' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
