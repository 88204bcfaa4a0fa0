"""napari reader for TIFF / OME-TIFF / ImageJ TIFF: lazy (dask), with physical scale, axis labels and channels.

Opening never loads pixels (:func:`napari_dgno.io.read_image` maps the file through tifffile's zarr
store), so multi-gigabyte stacks open at once and napari reads only the planes it shows. Pixel sizes
become the layer scale (so scale bars, measurements and 3-D rendering are in µm), the axis letters
become axis labels, a channel axis becomes one layer per channel (named after the channels), and
interleaved RGB(A) stays one RGB layer. Files written by napari-dgno keep their provenance in
``layer.metadata["napari_dgno"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..io import PROVENANCE_KEY, read_image

LayerData = tuple[Any, dict[str, Any], str]
SUFFIXES = (".tif", ".tiff")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """The reader for one .tif/.tiff path (napari asks with a list when files are to be stacked: not ours)."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if not str(path).lower().endswith(SUFFIXES):
        return None
    return read_tiff


def _is_rgb(axes: str, shape: tuple[int, ...]) -> bool:
    """Interleaved colour samples as the last axis (3 or 4 of them)."""
    return axes.endswith("YXC") and shape[-1] in (3, 4)


def layer_data(path: str | Path) -> list[LayerData]:
    """The layers of one TIFF file, lazily."""
    image = read_image(path)
    data, axes = image.data, image.axes
    shape = tuple(int(n) for n in data.shape)
    name = _stem(image.path)
    metadata = {key: value for key, value in image.metadata.items() if key != PROVENANCE_KEY}
    meta: dict[str, Any] = {"metadata": {"source": str(image.path), "axes": axes, "tiff": metadata}}
    if PROVENANCE_KEY in image.metadata:
        meta["metadata"][PROVENANCE_KEY] = image.metadata[PROVENANCE_KEY]
    rgb = _is_rgb(axes, shape)
    layer_axes = axes[:-1] if rgb else axes
    split = "C" in layer_axes
    dims = layer_axes.replace("C", "") if split else layer_axes
    meta["scale"] = tuple(image.scale.get(a, 1.0) for a in dims)
    meta["units"] = tuple(image.units.get(a, "pixel") for a in dims)
    meta["axis_labels"] = tuple(dims)
    if rgb:
        meta["rgb"] = True
        meta["name"] = name
    elif split:
        channel_axis = layer_axes.index("C")
        count = shape[channel_axis]
        names = image.channel_names or [f"C{i}" for i in range(count)]
        meta["channel_axis"] = channel_axis
        meta["name"] = [f"{name} [{channel}]" for channel in names]
    else:
        meta["name"] = name
    return [(data, meta, "image")]


def read_tiff(path: str | list[str]) -> list[LayerData]:
    """napari reader entry point."""
    if isinstance(path, (list, tuple)):
        return [layer for item in path for layer in layer_data(item)]
    return layer_data(path)
