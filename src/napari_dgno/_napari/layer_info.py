"""What the plugin needs to know about an image layer, read once on the main thread.

A :class:`LayerSnapshot` is a frozen copy of an image layer's geometry and display settings (the data
itself is referenced, never copied or modified), so worker threads never touch viewer state. The
axes of the data (``"ZYX"``, ``"YXC"``, ...) are taken from the layer's axis labels when they are
axis letters (the DGNO reader sets them), else guessed by the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.axes import guess_axes, guess_axes_or_none

#: napari's unit for dimensions without a physical size.
PIXEL_UNIT = "pixel"


@dataclass(frozen=True)
class AxesGuess:
    """The axes string for a layer's data, and why it may need the user's attention."""

    axes: str
    ambiguous: bool
    note: str


@dataclass(frozen=True)
class LayerSnapshot:
    """An image layer as the worker sees it. ``data`` is level 0 of a multiscale layer."""

    name: str
    data: Any
    shape: tuple[int, ...]
    dtype: np.dtype
    rgb: bool
    multiscale: bool
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    units: tuple[str, ...]
    axis_labels: tuple[str, ...]
    contrast_limits: tuple[float, float]
    colormap: str
    metadata: dict = field(default_factory=dict)
    #: The viewer's position as a data index per layer dimension (non-displayed dims: the current plane).
    position: tuple[int, ...] = ()
    #: Visible part of the layer's last two layer dimensions: ((y0, y1), (x0, x1)), clipped to the data.
    visible: tuple[tuple[int, int], tuple[int, int]] | None = None

    @property
    def plane_shape(self) -> tuple[int, int]:
        """(Y, X) pixels of one plane."""
        yx = self.shape[-3:-1] if self.rgb else self.shape[-2:]
        return int(yx[0]), int(yx[1])

    @property
    def planes(self) -> int:
        """How many YX planes (stack positions) the layer has."""
        lead = self.shape[:-3] if self.rgb else self.shape[:-2]
        return int(np.prod(lead, dtype=np.int64)) if lead else 1

    @property
    def nbytes_float32(self) -> int:
        """Bytes of a float32 result of the same shape (eager mode holds it in memory)."""
        return int(np.prod(self.shape, dtype=np.int64)) * 4


def unit_text(unit: Any) -> str:
    """A pint unit (napari's) or a string as a short symbol, e.g. ``µm``."""
    try:
        return format(unit, "~")
    except (TypeError, ValueError):
        return str(unit)


def _letters(labels: tuple[str, ...], rgb: bool) -> str | None:
    """The labels as an axes string when each is one distinct letter and Y and X are among them."""
    text = "".join(str(label).strip().upper() for label in labels)
    if len(text) != len(labels) or not text.isalpha() or len(set(text)) != len(text):
        return None
    if rgb and "C" in text:  # the colour samples of an RGB layer are not a layer dimension
        return None
    return text if "Y" in text and "X" in text else None


def layer_axes(shape: tuple[int, ...], dtype: Any, rgb: bool, axis_labels: tuple[str, ...] = (),
               channels: int = 1) -> AxesGuess:
    """Axes of a layer's data for a model with ``channels`` inputs (RGB layers end in ``C``).

    ``axis_labels`` are the layer's (one per layer dimension, i.e. without the RGB samples).
    """
    labelled = _letters(tuple(axis_labels), rgb) if len(axis_labels) == len(shape) - int(rgb) else None
    if labelled is not None:
        return AxesGuess(labelled + ("C" if rgb else ""), False, "from the layer's axis labels")
    if rgb:
        lead = len(shape) - 3
        if lead <= 2:
            return AxesGuess("TZ"[2 - lead:] + "YXC", False, "RGB layer")
    try:
        axes = guess_axes(shape, dtype, channels)
    except ValueError as err:
        return AxesGuess(guess_axes_or_none(shape), True, str(err))
    if len(shape) >= 4 and channels <= 1:
        return AxesGuess(axes, True, f"guessed {axes!r} for {len(shape)}-D data; check the order (e.g. TZYX)")
    if channels > 1 and not rgb:
        return AxesGuess(axes, True, f"guessed {axes!r}: which dimension holds the {channels} colour channels?")
    if len(shape) == 3 and shape[-1] in (3, 4) and not rgb:
        other = "ZYX" if axes.endswith("C") else "YXC"
        return AxesGuess(axes, True, f"the last dimension has {shape[-1]} entries: colour or planes? "
                                     f"({axes!r} reads them as {'colour' if axes.endswith('C') else 'planes'}; "
                                     f"{other!r} as {'planes' if axes.endswith('C') else 'colour'})")
    return AxesGuess(axes, False, "2-D image" if len(shape) == 2 else "each YX plane is deblurred on its own")


def _visible_region(layer: Any, shape_yx: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The visible part of the layer's last two dimensions, from napari's ``corner_pixels``."""
    corners = getattr(layer, "corner_pixels", None)
    if corners is None:
        return None
    corners = np.asarray(corners)
    if corners.shape[0] != 2 or corners.shape[1] < 2:
        return None
    (y0, x0), (y1, x1) = corners[0, -2:], corners[1, -2:]
    y0, x0 = max(0, int(y0)), max(0, int(x0))
    y1, x1 = min(shape_yx[0], int(y1) + 1), min(shape_yx[1], int(x1) + 1)
    if y1 - y0 < 1 or x1 - x0 < 1:
        return None
    return (y0, y1), (x0, x1)


def _position(layer: Any, viewer: Any) -> tuple[int, ...]:
    """The viewer's current point as data indices of the layer (one per layer dimension)."""
    ndim = layer.ndim
    point = tuple(viewer.dims.point)[-ndim:] if viewer is not None else (0.0,) * ndim
    if len(point) < ndim:
        point = (0.0,) * (ndim - len(point)) + point
    data = np.asarray(layer.world_to_data(point), dtype=float)
    extent = layer.data[0].shape if layer.multiscale else layer.data.shape
    dims = extent[:ndim]
    return tuple(int(np.clip(np.round(v), 0, n - 1)) for v, n in zip(data, dims))


def snapshot(layer: Any, viewer: Any = None) -> LayerSnapshot:
    """Copy what the worker needs from an image ``layer`` (call on the main thread)."""
    data = layer.data[0] if layer.multiscale else layer.data
    shape = tuple(int(n) for n in data.shape)
    rgb = bool(getattr(layer, "rgb", False))
    yx = shape[-3:-1] if rgb else shape[-2:]
    colormap = getattr(getattr(layer, "colormap", None), "name", "gray")
    return LayerSnapshot(
        name=str(layer.name),
        data=data,
        shape=shape,
        dtype=np.dtype(data.dtype),
        rgb=rgb,
        multiscale=bool(layer.multiscale),
        scale=tuple(float(s) for s in layer.scale),
        translate=tuple(float(t) for t in layer.translate),
        units=tuple(unit_text(u) for u in getattr(layer, "units", ()) or ()),
        axis_labels=tuple(str(a) for a in getattr(layer, "axis_labels", ()) or ()),
        contrast_limits=tuple(float(c) for c in layer.contrast_limits),
        colormap=str(colormap),
        metadata=dict(layer.metadata or {}),
        position=_position(layer, viewer),
        visible=_visible_region(layer, (int(yx[0]), int(yx[1]))),
    )


def suggest_input(snap: LayerSnapshot) -> dict[str, Any]:
    """The description :func:`napari_dgno.checkpoints.suggest_models` reads."""
    return {"shape": snap.shape, "dtype": snap.dtype, "rgb": snap.rgb, "channel_axis": None,
            "name": snap.name, "metadata": snap.metadata}


def physical_scale(axes: str, rgb: bool, scale: tuple[float, ...],
                   units: tuple[str, ...]) -> tuple[dict[str, float], dict[str, str]]:
    """Pixel sizes and units per axis letter, for the layer dimensions that have a physical unit.

    ``scale``/``units`` are per layer dimension (an RGB layer's colour samples are not one).
    """
    letters = axes[:-1] if rgb else axes
    units = tuple(units) or (PIXEL_UNIT,) * len(scale)
    out_scale, out_units = {}, {}
    for letter, size, unit in zip(letters, scale, units):
        if letter == "C" or unit in ("", PIXEL_UNIT):
            continue
        out_scale[letter], out_units[letter] = float(size), unit
    return out_scale, out_units
