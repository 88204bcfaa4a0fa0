"""napari writer: an image layer to TIFF / OME-TIFF with its axes, pixel sizes and DGNO provenance.

``.ome.tif``/``.ome.tiff`` give OME-TIFF, other names an ImageJ-compatible TIFF where possible (see
:func:`napari_dgno.io.write_image`). The provenance in ``layer.metadata["napari_dgno"]`` is stored in
the file, so :func:`napari_dgno.io.read_image` (and the DGNO reader) give it back. Lazy (dask) layers
are written page by page without holding the whole result in memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io import PROVENANCE_KEY, write_image
from .layer_info import layer_axes, physical_scale, unit_text


def write_tiff(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: returns the path written."""
    rgb = bool(attributes.get("rgb", False))
    shape = tuple(int(n) for n in data.shape)
    labels = tuple(str(a) for a in attributes.get("axis_labels") or ())
    axes = layer_axes(shape, np.dtype(data.dtype), rgb, labels).axes
    units = tuple(unit_text(u) for u in attributes.get("units") or ())
    scale, units_by_axis = physical_scale(axes, rgb, tuple(attributes.get("scale") or ()), units)
    metadata = attributes.get("metadata") or {}
    extra = {PROVENANCE_KEY: metadata[PROVENANCE_KEY]} if PROVENANCE_KEY in metadata else None
    written = write_image(path, data, axes=axes, scale=scale, units=units_by_axis, metadata=extra, overwrite=True)
    return [str(written)]
