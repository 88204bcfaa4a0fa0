"""Small Qt pieces shared by the compare widget and the focus-curve dock."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QComboBox, QWidget

from ._compare_layers import is_image


class LayerCombo(QComboBox):
    """A combo box of the viewer's image layers that follows insertions, removals, moves and renames.

    Items hold the layer objects themselves, so a rename never loses the selection. ``layer_changed`` is
    emitted with the newly selected layer (or None) only when the selected layer object changes.
    """

    layer_changed = Signal(object)

    def __init__(self, viewer: Any, *, allow_none: bool = False, none_text: str = "(none)",
                 parent: QWidget | None = None):
        super().__init__(parent)
        self._viewer = viewer
        self._allow_none = allow_none
        self._none_text = none_text
        self._selected: Any = None
        self._refreshing = False
        self.currentIndexChanged.connect(self._index_changed)
        events = viewer.layers.events
        for emitter in (events.inserted, events.removed, events.moved, events.reordered):
            emitter.connect(self.refresh)
        self.refresh()

    def layer(self) -> Any:
        """The selected layer, or None."""
        return self._selected

    def set_layer(self, layer: Any) -> None:
        """Select ``layer`` (None selects the "none" item when allowed); layers not listed are ignored."""
        for i in range(self.count()):
            if self.itemData(i) is layer:
                self.setCurrentIndex(i)
                return

    def refresh(self, event: Any = None) -> None:
        """Rebuild the items from the viewer's layers, keeping the selection while its layer exists."""
        keep = self._selected
        self._refreshing = True
        try:
            self.clear()
            if self._allow_none:
                self.addItem(self._none_text, None)
            for layer in reversed(list(self._viewer.layers)):  # top of the layer list first, as napari shows it
                if is_image(layer):
                    layer.events.name.connect(self.refresh)
                    self.addItem(layer.name, layer)
            index = next((i for i in range(self.count()) if self.itemData(i) is keep), 0 if self.count() else -1)
            self.setCurrentIndex(index)
        finally:
            self._refreshing = False
        self._index_changed(self.currentIndex())

    def _index_changed(self, index: int) -> None:
        if self._refreshing:
            return
        layer = self.itemData(index) if index >= 0 else None
        if layer is not self._selected:
            self._selected = layer
            self.layer_changed.emit(layer)


class ProgressRelay(QObject):
    """Carries ``progress(done, total)`` calls from a worker thread to the main thread (queued signal)."""

    progressed = Signal(int, int)

    def __call__(self, done: int, total: int) -> None:
        self.progressed.emit(int(done), int(total))
