"""The provenance record stored in ``layer.metadata["napari_dgno"]`` of every result layer.

The engine's record (model, sha256, parameters with defaults resolved, device, versions, date) plus
what only the napari side knows: the input layer, the mode (eager, lazy, preview) and napari's version.
The writer stores the same record in the TIFF, so a saved result still says how it was made.
"""

from __future__ import annotations

from typing import Any

from ..engine import provenance as engine_provenance

#: Key of the record in layer metadata (the same key the TIFF writer and the CLI use).
METADATA_KEY = "napari_dgno"


def layer_provenance(model: Any, parameters: dict[str, Any], *, input_layer: str, mode: str,
                     **extra: Any) -> dict[str, Any]:
    """A JSON-serialisable record of one run of the widget."""
    import napari

    record = engine_provenance(model, parameters=parameters, input_layer=input_layer, mode=mode, **extra)
    record["versions"] = {**record.get("versions", {}), "napari": napari.__version__}
    return record
