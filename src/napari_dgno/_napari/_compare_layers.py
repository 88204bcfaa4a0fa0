"""Which layer is the DGNO result of which input, and where a layer's z-stack lies in the viewer.

Shared by the compare widget and the focus-curve dock: pairing follows the deblur widget's convention
(output named ``"<input> [DGNO <model>]"`` with provenance in ``layer.metadata["napari_dgno"]``), and the
z geometry maps between a layer's plane index and the viewer's dims, whatever the layer's scale and
translate. No Qt here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

#: ``layer.metadata`` key under which the deblur widget records provenance (and the input layer's name).
RESULT_KEY = "napari_dgno"
#: Provenance keys that may hold the input layer's name, most specific first.
_INPUT_KEYS = ("input_layer", "input_name", "input", "source_layer")
#: ``"<input> [DGNO <model>]"``, possibly with napari's ``" [1]"`` suffix for a repeated name.
_RESULT_NAME = re.compile(r"^(?P<input>.+) \[DGNO [^\]]*\](?: \[\d+\])?$")


def is_image(layer: Any) -> bool:
    """Image layers only: labels, points and shapes have no focus or contrast to compare."""
    from napari.layers import Image

    return isinstance(layer, Image)


def result_input_name(layer: Any) -> str | None:
    """Name of the input a DGNO result was computed from (provenance first, then the name), else None."""
    if not is_image(layer):
        return None
    record = layer.metadata.get(RESULT_KEY) if isinstance(layer.metadata, dict) else None
    if isinstance(record, dict):
        for key in _INPUT_KEYS:
            value = record.get(key)
            if isinstance(value, dict):  # e.g. {"input": {"name": ..., "shape": ...}}
                value = value.get("name") or value.get("layer")
            if isinstance(value, str) and value:
                return value
    match = _RESULT_NAME.match(layer.name)
    return match.group("input") if match else None


def find_result(layers: Any, input_layer: Any) -> Any | None:
    """The newest (top-most) image layer that is a DGNO result of ``input_layer`` with its shape, else None."""
    for layer in reversed(list(layers)):
        pair = pair_of(layers, layer)
        if pair is not None and pair[0] is input_layer:
            return layer
    return None


def pair_of(layers: Any, result: Any) -> tuple[Any, Any] | None:
    """(input, result) when ``result`` is a DGNO result whose input layer (same shape) is present, else None."""
    name = result_input_name(result)
    for layer in layers:
        if (layer is not result and is_image(layer) and layer.name == name
                and tuple(layer.data.shape) == tuple(result.data.shape)):
            return layer, result
    return None


def find_pairs(layers: Any) -> list[tuple[Any, Any]]:
    """Every (input, result) pair present, in layer-list order of the results."""
    return [pair for pair in (pair_of(layers, layer) for layer in layers) if pair is not None]


def unproxied(viewer: Any) -> Any:
    """The viewer itself when napari hands a widget its ``PublicOnlyProxy``.

    Layers returned through the proxy (``proxy.add_image(...)``) are proxies too, never identical to the
    objects in ``viewer.layers``; the widgets track layers by identity, so they work on the viewer itself
    (still only through napari's public API).
    """
    return getattr(viewer, "__wrapped__", viewer)


def grid_of(viewer: Any) -> Any:
    """The viewer's grid model (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def camera_of(viewer: Any) -> Any:
    """The viewer's camera model (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def is_lazy(array: Any) -> bool:
    """True for dask (and other non-numpy) arrays, whose planes may be expensive to compute."""
    return not isinstance(array, np.ndarray)


def base_data(layer: Any) -> Any:
    """The full-resolution array of a layer (level 0 of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def z_axis(layer: Any) -> int:
    """The layer dimension that is z: the one labelled "Z" (as the DGNO reader labels axes), else the third
    from the end (ZYX, TZYX; the channels of an RGB layer are not a napari dimension)."""
    ndim = int(layer.ndim)
    if ndim < 3:
        raise ValueError(f"layer {layer.name!r} is a single 2-D image; a focus curve and a reference plane need a "
                         "z-stack (Z, Y, X)")
    labels = [str(label).strip().upper() for label in (getattr(layer, "axis_labels", None) or ())][:ndim - 2]
    return labels.index("Z") if "Z" in labels else ndim - 3


def _data_position(viewer: Any, layer: Any) -> np.ndarray:
    """The viewer's current point in the layer's data coordinates (one value per layer dimension)."""
    return np.asarray(layer.world_to_data(viewer.dims.point), dtype=float)


def other_indices(viewer: Any, layer: Any) -> tuple[int, ...]:
    """Data indices, at the viewer's position, of the layer's non-plane axes other than z (e.g. the time point)."""
    za, shape = z_axis(layer), base_data(layer).shape
    position = _data_position(viewer, layer)
    return tuple(int(np.clip(np.round(position[i]), 0, shape[i] - 1))
                 for i in range(int(layer.ndim) - 2) if i != za)


def _index(axis: int, others: tuple[int, ...], plane: Any) -> tuple:
    """Index into a layer's data: ``plane`` along z (``axis``), ``others`` along the other non-plane axes."""
    rest = iter(others)
    return tuple(plane if i == axis else next(rest) for i in range(len(others) + 1))


@dataclass(frozen=True)
class ZStack:
    """A layer's (Z, Y, X) stack at the viewer's current position along its other axes (time, ...).

    ``data`` is lazy wherever the layer's data is (an RGB stack becomes its per-plane channel mean, computed
    plane by plane); ``key`` identifies the stack for caching; ``lazy`` says whether reading it may be costly.
    Everything a worker thread needs is captured here on the main thread: workers never touch the layer.
    """

    layer: Any
    data: Any
    source: Any
    axis: int
    others: tuple[int, ...]
    lazy: bool
    rgb: bool = False

    @property
    def planes(self) -> int:
        return int(self.data.shape[0])

    @property
    def key(self) -> tuple:
        return (id(self.layer), id(self.source), self.others)


def z_stack(viewer: Any, layer: Any) -> ZStack:
    """The (Z, Y, X) stack of ``layer`` that the viewer is showing."""
    data, axis = base_data(layer), z_axis(layer)
    others = other_indices(viewer, layer)
    stack = data[_index(axis, others, slice(None))]
    if getattr(layer, "rgb", False):  # measure the channel mean, one plane at a time
        import dask.array as da

        if not is_lazy(stack):
            stack = da.from_array(stack, chunks=(1, *stack.shape[1:]), name=False)  # name=False: no hashing
        stack = stack.mean(axis=-1)
    return ZStack(layer, stack, data, axis, others, is_lazy(data), bool(getattr(layer, "rgb", False)))


def current_plane(viewer: Any, layer: Any) -> int:
    """Index of the layer's z plane shown at the viewer's current position (clipped to the stack)."""
    za = z_axis(layer)
    z = _data_position(viewer, layer)[za]
    return int(np.clip(np.round(z), 0, base_data(layer).shape[za] - 1))


def go_to_plane(viewer: Any, layer: Any, plane: int) -> None:
    """Move the viewer's z slider so that ``layer`` shows its plane ``plane``."""
    za = z_axis(layer)
    position = _data_position(viewer, layer)
    position[za] = plane
    world_z = float(layer.data_to_world(position)[za])
    axis = viewer.dims.ndim - int(layer.ndim) + za  # layers occupy the viewer's last dimensions
    start, _, step = viewer.dims.range[axis]
    viewer.dims.set_current_step(axis, int(round((world_z - start) / step)) if step else 0)


def _computed(data: Any) -> np.ndarray:
    return np.asarray(data.compute() if hasattr(data, "compute") else data)


def plane_of(stack: ZStack, plane: int) -> np.ndarray:
    """One plane of a z-stack as measured (an RGB plane as its channel mean), computed when lazy."""
    return _computed(stack.data[plane])


def displayed_plane(stack: ZStack, plane: int) -> np.ndarray:
    """One plane of a z-stack's layer as napari shows it (RGB channels kept), computed when lazy."""
    if stack.rgb:  # keep the colour samples (the last data axis)
        return _computed(stack.source[_index(stack.axis, stack.others, plane)])
    return plane_of(stack, plane)
