"""The side-by-side arrangement: rows of panels in napari's grid mode, linked contrast, and the exact way back.

One row per input: the input, each of its DGNO results and optionally a reference plane. Grid mode shows
every visible layer in its own viewbox under one camera, so zoom/pan are linked, and all panels share the
viewer's dims, so scrolling z moves every panel. Nothing here computes image data: a lazy result is
sliced by napari only for the plane it shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._compare_layers import camera_of, grid_of, is_image

#: ``layer.metadata`` key marking the layers this view adds (reference planes, empty fillers).
SCRATCH_KEY = "napari_dgno_compare"
#: Attributes a follower copies from its leader: the display contrast.
LINKED = ("contrast_limits", "gamma")
_GRID_FIELDS = ("enabled", "shape", "stride", "spacing")
_CAMERA_FIELDS = ("center", "zoom", "angles")


def rows_from_pairs(pairs: Sequence[tuple[Any, Any]]) -> list[list[Any]]:
    """Group (input, result) pairs into rows ``[input, result, result, ...]``, one per input, in order.

    A layer can sit in one panel only, so a layer that is the input of one pair and the result of another
    (or the result of two inputs) is refused with a message naming it.
    """
    rows: list[list[Any]] = []
    row_of: dict[int, int] = {}
    used: set[int] = set()
    for source, result in pairs:
        if source is result:
            raise ValueError(f"layer {source.name!r} is paired with itself; choose its DGNO result as the result")
        if id(source) not in row_of:
            if id(source) in used:
                raise ValueError(f"layer {source.name!r} is both an input and a result; a layer can fill one "
                                 "panel only, so remove one of those pairs")
            row_of[id(source)] = len(rows)
            rows.append([source])
            used.add(id(source))
        row = rows[row_of[id(source)]]
        if any(result is p for p in row):
            continue
        if id(result) in used:
            raise ValueError(f"layer {result.name!r} appears in two pairs; a layer can fill one panel only, "
                             "so remove one of those pairs")
        row.append(result)
        used.add(id(result))
    return rows


@dataclass
class _Snapshot:
    """What entering the comparison changes, recorded to be put back exactly."""

    grid: dict[str, Any]
    order: list[Any]
    visible: list[tuple[Any, bool]]
    name_overlay: list[tuple[Any, bool]]
    selected: list[Any]
    active: Any
    camera: dict[str, Any]


@dataclass
class SideBySide:
    """Shows rows of panels side by side in a viewer and restores the viewer's previous view on request."""

    viewer: Any
    rows: list[list[Any]] = field(default_factory=list)
    link_across: bool = False
    _snapshot: _Snapshot | None = None
    _scratch: list[Any] = field(default_factory=list)
    _unlink: list[Callable[[], None]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self._snapshot is not None

    @property
    def panels(self) -> list[Any]:
        """The layers shown, row by row (fillers included), in grid order."""
        return [layer for row in self.rows for layer in row]

    def is_scratch(self, layer: Any) -> bool:
        """True for the layers this view added (reference panels, empty fillers)."""
        return any(layer is p for p in self._scratch)

    def show(self, rows: Sequence[Sequence[Any]], *, link_across: bool = False) -> None:
        """Enter (or re-arrange) the comparison: one grid row per row of layers, everything else hidden."""
        if not rows or not all(rows):
            raise ValueError("nothing to compare: add at least one (input, result) pair")
        if self.active:
            self.restore()
        layers = self.viewer.layers
        grid = grid_of(self.viewer)
        self._snapshot = _Snapshot(
            grid={name: getattr(grid, name) for name in _GRID_FIELDS},
            order=list(layers),
            visible=[(layer, bool(layer.visible)) for layer in layers],
            name_overlay=[(layer, bool(layer.name_overlay.visible)) for layer in layers
                          if hasattr(layer, "name_overlay")],
            selected=list(layers.selection),
            active=layers.selection.active,
            camera={name: getattr(camera_of(self.viewer), name) for name in _CAMERA_FIELDS},
        )
        self.rows = [list(row) for row in rows]
        self.link_across = link_across
        self._layout()

    def add_reference(self, row: int, image: np.ndarray, plane: int, *, label: str = "best focus") -> Any:
        """Add a 2-D plane of row ``row``'s input as the last panel of that row (shown at every z)."""
        if not self.active or not 0 <= row < len(self.rows):
            raise RuntimeError("add_reference needs an active comparison with that row")
        source = self.rows[row][0]
        ndim = 2
        kwargs: dict[str, Any] = {
            "name": f"{source.name} ({label} z={plane})",
            "scale": tuple(source.scale[-ndim:]),
            "translate": tuple(source.translate[-ndim:]),
            "rgb": bool(getattr(source, "rgb", False)),
            "contrast_limits": tuple(source.contrast_limits),
            "gamma": source.gamma,
            "metadata": {SCRATCH_KEY: {"reference_for": source.name, "plane": int(plane)}},
        }
        if not kwargs["rgb"]:
            kwargs["colormap"] = source.colormap
        units = getattr(source, "units", None)
        if units is not None:
            kwargs["units"] = tuple(units[-ndim:])
        layer = self.viewer.add_image(image, **kwargs)
        self._scratch.append(layer)
        self.rows[row] = [p for p in self.rows[row] if not self._is_filler(p)] + [layer]
        self._layout()
        return layer

    def set_link_across(self, link_across: bool) -> None:
        """Link contrast across rows (every panel follows the first input) or within each row only."""
        self.link_across = link_across
        if self.active:
            self._link()

    def restore(self) -> None:
        """Back to the view before :meth:`show`: grid, visibility, layer order, name overlays, selection, camera."""
        snap = self._snapshot
        if snap is None:
            return
        self._unlink_all()
        layers = self.viewer.layers
        for layer in self._scratch:
            if layer in layers:
                layers.remove(layer)
        self._scratch.clear()
        present = [layer for layer in snap.order if layer in layers]
        order = present + [layer for layer in layers if layer not in present]  # added meanwhile: kept on top
        for index, layer in enumerate(order):
            current = layers.index(layer)
            if current != index:
                layers.move(current, index)
        for layer, visible in snap.visible:
            if layer in layers:
                layer.visible = visible
        for layer, shown in snap.name_overlay:
            if layer in layers:
                layer.name_overlay.visible = shown
        grid = grid_of(self.viewer)
        grid.enabled = False  # switch off first so that shape/stride changes do not re-layout twice
        for name in ("shape", "stride", "spacing", "enabled"):
            setattr(grid, name, snap.grid[name])
        layers.selection.clear()
        layers.selection.update([layer for layer in snap.selected if layer in layers])
        if snap.active in layers:
            layers.selection.active = snap.active
        camera = camera_of(self.viewer)
        for name, value in snap.camera.items():
            setattr(camera, name, value)
        self._snapshot = None
        self.rows = []

    # --- internals ----------------------------------------------------------------------------------------

    def _is_filler(self, layer: Any) -> bool:
        return self.is_scratch(layer) and not is_image(layer)

    def _layout(self) -> None:
        """Pad rows to equal length, stack the panels in row-major order on top, hide the rest, set the grid."""
        layers = self.viewer.layers
        for row in self.rows:
            for layer in [p for p in row if self._is_filler(p)]:
                row.remove(layer)
                self._scratch.remove(layer)
                layers.remove(layer)
        self.rows = [[p for p in row if p in layers] for row in self.rows]
        self.rows = [row for row in self.rows if row]
        columns = max(len(row) for row in self.rows)
        for row in self.rows:
            while len(row) < columns:  # napari fills viewboxes in order: keep every input in the first column
                filler = self.viewer.add_shapes(name="(empty panel)", metadata={SCRATCH_KEY: {"filler": True}})
                self._scratch.append(filler)
                row.append(filler)
        shown = self.panels
        for layer in shown:
            layers.move(layers.index(layer), len(layers))
        for layer in layers:
            layer.visible = any(layer is p for p in shown)
        for layer in shown:
            if hasattr(layer, "name_overlay"):
                layer.name_overlay.visible = not self._is_filler(layer)
        grid = grid_of(self.viewer)
        grid.stride = 1
        grid.shape = (len(self.rows), columns)
        grid.enabled = True
        self.viewer.reset_view()  # fit the new grid: every panel shows its whole plane
        self._link()

    def _link(self) -> None:
        """One-way contrast links: each row's panels follow its input; across rows, the first input leads."""
        self._unlink_all()
        images = [[p for p in row if is_image(p)] for row in self.rows]
        if self.link_across:
            groups = [(images[0][0], [p for row in images for p in row][1:])]
        else:
            groups = [(row[0], row[1:]) for row in images]
        for leader, followers in groups:
            if followers:
                self._follow(leader, followers)

    def _follow(self, leader: Any, followers: list[Any]) -> None:
        def sync(event: Any = None) -> None:
            for follower in followers:
                for name in LINKED:
                    value = getattr(leader, name)
                    if not np.array_equal(getattr(follower, name), value):
                        setattr(follower, name, value)

        for name in LINKED:
            emitter = getattr(leader.events, name)
            emitter.connect(sync)
            self._unlink.append(lambda emitter=emitter: emitter.disconnect(sync))
        sync()

    def _unlink_all(self) -> None:
        for disconnect in self._unlink:
            disconnect()
        self._unlink.clear()
