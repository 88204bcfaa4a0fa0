"""Result and preview layers: their names, geometry copied from the input, and which part a preview covers.

A result is float32 in the input's intensity units, so the input's contrast limits and colormap fit it
as they are; scale, translate, units and axis labels are copied so the result overlays the input
exactly. A preview covers the current plane (all non-plane dimensions at the viewer's position) and,
for planes too large to deblur interactively, only the visible part of it; its layer is translated to
where that part sits in the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .layer_info import LayerSnapshot
from .provenance import METADATA_KEY

#: Planes up to this many pixels are previewed whole; larger ones only where the view shows them.
PREVIEW_FULL_PLANE_PIXELS = 1024 * 1024
#: Largest preview edge (pixels) when only the visible field of view is previewed.
PREVIEW_MAX_EDGE = 1024


def output_name(input_name: str, model_name: str, preview: bool = False) -> str:
    """``"<input> [DGNO <model>]"`` (``... preview]`` for previews)."""
    return f"{input_name} [DGNO {model_name}{' preview' if preview else ''}]"


def layer_kwargs(snap: LayerSnapshot, name: str, record: dict[str, Any], *,
                 translate: tuple[float, ...] | None = None) -> dict[str, Any]:
    """``viewer.add_image`` keyword arguments for a result of ``snap``'s shape (or a part of it)."""
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": snap.scale,
        "translate": translate if translate is not None else snap.translate,
        "axis_labels": snap.axis_labels or None,
        "units": snap.units or None,
        "contrast_limits": snap.contrast_limits,
        "rgb": snap.rgb,
        "metadata": {METADATA_KEY: record},
    }
    if not snap.rgb:
        kwargs["colormap"] = snap.colormap
    return {k: v for k, v in kwargs.items() if v is not None}


@dataclass(frozen=True)
class PreviewRegion:
    """Index into the input's data, the data-pixel offset of that part per layer dimension, and a description."""

    index: tuple[slice, ...]
    offset: tuple[int, ...]
    description: str
    cropped: bool

    def translate(self, snap: LayerSnapshot) -> tuple[float, ...]:
        return tuple(t + o * s for t, o, s in zip(snap.translate, self.offset, snap.scale))

    def as_record(self) -> dict[str, Any]:
        """JSON-friendly form for the provenance record."""
        return {"start": list(self.offset), "description": self.description}


def _window(span: tuple[int, int], limit: int) -> tuple[int, int]:
    """At most ``limit`` pixels of ``span``, centred in it."""
    start, stop = span
    if stop - start <= limit:
        return start, stop
    middle = (start + stop) // 2
    return middle - limit // 2, middle - limit // 2 + limit


def preview_region(snap: LayerSnapshot, axes: str) -> PreviewRegion:
    """The part of the input a preview deblurs: the current plane, or its visible part when large."""
    h, w = snap.plane_shape
    ys, xs, cropped = (0, h), (0, w), False
    layer_axes = axes[:-1] if snap.rgb else axes
    yx_last = layer_axes[-2:] == "YX"
    if h * w > PREVIEW_FULL_PLANE_PIXELS:
        if snap.visible is not None and yx_last:
            ys, xs = snap.visible
        ys, xs = _window(ys, PREVIEW_MAX_EDGE), _window(xs, PREVIEW_MAX_EDGE)
        cropped = (ys, xs) != ((0, h), (0, w))
    index: list[slice] = []
    offset: list[int] = []
    where: list[str] = []
    for i, letter in enumerate(layer_axes):
        if letter == "Y":
            index.append(slice(*ys))
            offset.append(ys[0])
        elif letter == "X":
            index.append(slice(*xs))
            offset.append(xs[0])
        elif letter == "C":
            index.append(slice(None))
            offset.append(0)
        else:
            position = snap.position[i] if i < len(snap.position) else 0
            index.append(slice(position, position + 1))
            offset.append(position)
            where.append(f"{letter}={position}")
    if snap.rgb:
        index.append(slice(None))
    text = ("plane " + ", ".join(where)) if where else "the image"
    if cropped:
        text += f", visible region y {ys[0]}:{ys[1]}, x {xs[0]}:{xs[1]}"
    return PreviewRegion(tuple(index), tuple(offset), text, cropped)


def put_layer(viewer: Any, existing: Any, data: Any, kwargs: dict[str, Any]) -> Any:
    """Update ``existing`` (when still in the viewer) with new data and metadata, else add a new layer.

    An updated layer keeps the display settings the user may have changed (contrast, colormap).
    Returns the layer itself, not napari's plugin proxy of it, so it compares by identity.
    A new layer is added hidden and shown once it is in the viewer: napari slices a visible layer when
    it is built, at plane 0 before it knows the viewer's position, which for a lazy result would run
    the network on a plane nobody looks at.
    """
    if existing is not None and existing in viewer.layers and existing.ndim == len(kwargs.get("scale", ())):
        existing.data = data
        existing.translate = kwargs["translate"]
        existing.metadata = kwargs["metadata"]
        existing.name = kwargs["name"]
        return existing
    layer = viewer.add_image(data, **{**kwargs, "visible": False})
    layer = getattr(layer, "__wrapped__", layer)
    layer.visible = kwargs.get("visible", True)
    return layer
