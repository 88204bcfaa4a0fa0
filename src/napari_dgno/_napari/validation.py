"""All the widget's fields checked together, before Run/Preview are enabled.

Each problem names the field, what is wrong and how to fix it; the widget shows them as tooltips and
in its status line. The checks reuse the engine's own validators (axes, dtype, tiling, precision,
acceleration) so the widget and the engine can never disagree about what is allowed. Problems only the
engine can see (NaN pixels, which need the data to be read) surface as notifications when the job runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engine.acceleration import check_acceleration
from ..engine.axes import parse_axes
from ..engine.devices import check_precision, default_tile
from ..engine.normalize import check_dtype, check_shape
from ..engine.tiling import check_tiling
from .layer_info import LayerSnapshot
from .model_choice import DOWNLOAD, MISSING, ModelChoice

#: Smallest plane edge worth deblurring: a defocus blur spans several pixels, so a plane smaller than
#: this holds no structure the network could restore (and is almost always a mistake, e.g. a 1x1 image).
MIN_PLANE_EDGE = 16

#: Field names, in the order problems are reported.
FIELDS = ("layer", "axes", "model", "device", "tile", "precision", "accelerate", "busy")


@dataclass(frozen=True)
class FormState:
    """Everything the user chose, as plain values."""

    snapshot: LayerSnapshot | None
    axes: str
    model: ModelChoice | None
    model_state: str | None
    device: str
    tile: int | None
    overlap: int
    batch_size: int | None
    precision: str
    busy: bool = False
    #: Why the model is (not) available, from :func:`.model_choice.availability`.
    model_detail: str = ""
    #: The engine's ``accelerate`` mode (see :mod:`napari_dgno.engine.acceleration`).
    accelerate: str = "auto"


def _layer_problem(snap: LayerSnapshot | None) -> str | None:
    if snap is None:
        return ("no image layer to deblur: open an image (File > Open, or drop a TIFF on the viewer) or a "
                "sample (File > Open Sample > DGNO deblur)")
    try:
        check_dtype(snap.dtype)
        check_shape(snap.shape)
    except ValueError as err:
        return f"layer {snap.name!r}: {err}"
    h, w = snap.plane_shape
    if min(h, w) < MIN_PLANE_EDGE:
        return (f"layer {snap.name!r} has {h}x{w}-pixel planes, too small to deblur (at least "
                f"{MIN_PLANE_EDGE}x{MIN_PLANE_EDGE} needed); choose the image layer itself")
    return None


def _axes_problem(form: FormState) -> str | None:
    snap = form.snapshot
    try:
        layout = parse_axes(form.axes, snap.shape)
    except (TypeError, ValueError) as err:
        return f"axes: {err}"
    if snap.rgb and not layout.axes.endswith("YXC"):
        return f"axes: the layer is RGB, so its axes must end in 'YXC' (e.g. 'YXC' or 'ZYXC'), not {form.axes!r}"
    channels = form.model.channels if form.model is not None else None
    if channels and channels > 1:
        have = layout.channels - int(layout.rgba) if layout.has_channel else 1
        if have != channels:
            return (f"model {form.model.source} expects {channels}-channel (RGB) images but this layer has "
                    f"{have if layout.has_channel else 'no'} colour channel{'s' if have != 1 else ''} "
                    f"(axes {layout.axes!r}); choose a 1-channel model, or set axes naming the channel axis (C)")
    return None


def _model_problem(form: FormState) -> str | None:
    if form.model is None:
        return "no model chosen: pick one in the list, or 'Local file…'"
    if form.model_state == DOWNLOAD:
        return f"model {form.model.source} is not downloaded yet: click Fetch (needs internet once)"
    if form.model_state == MISSING:
        return f"model {form.model.source} is not available: {form.model_detail or 'choose another model'}"
    return None


def validate(form: FormState) -> dict[str, str]:
    """Problems by field (see :data:`FIELDS`); empty when Run can start."""
    problems: dict[str, str] = {}
    layer = _layer_problem(form.snapshot)
    if layer:
        problems["layer"] = layer
    elif axes := _axes_problem(form):
        problems["axes"] = axes
    if model := _model_problem(form):
        problems["model"] = model
    try:
        device = torch.device(form.device)
    except (RuntimeError, TypeError):
        problems["device"] = f"unknown device {form.device!r}"
        device = None
    if device is not None:
        try:
            check_tiling(form.tile if form.tile is not None else default_tile(device), form.overlap)
        except ValueError as err:
            problems["tile"] = str(err)
        try:
            check_precision(form.precision, device)
        except ValueError as err:
            problems["precision"] = str(err)
        try:
            check_acceleration(form.accelerate, device)
        except ValueError as err:
            problems["accelerate"] = str(err)
    if form.batch_size is not None and form.batch_size < 1:
        problems["tile"] = f"batch size must be at least 1 (or auto), got {form.batch_size}"
    if form.busy:
        problems["busy"] = "a job is running: wait for it or press Cancel"
    return {name: problems[name] for name in FIELDS if name in problems}
