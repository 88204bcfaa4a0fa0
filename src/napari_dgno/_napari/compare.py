"""Compare focal planes: each input next to its DGNO result (and a reference plane), in napari's grid mode.

The widget is thin: pairing comes from :mod:`._compare_layers`, the arrangement and its exact undo from
:class:`._compare_view.SideBySide`, the best-focus plane from :func:`napari_dgno.focus.focus_curve`
(in a worker thread, cancellable). Nothing computes a plane of a lazy result: napari slices the plane each
panel shows, and nothing else.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ._compare_curves import curves_of
from ._compare_layers import displayed_plane, find_pairs, find_result, pair_of, unproxied, z_stack
from ._compare_view import SideBySide, rows_from_pairs
from ._compare_widgets import LayerCombo, ProgressRelay

__all__ = ["CompareWidget"]

#: Focus measure that picks the reference plane (best_focus_plane's default).
BEST_FOCUS_MEASURE = "normalized_variance"


def _best_planes(stacks: list[tuple[int, Any]], progress: Any, cancel: threading.Event) -> list[tuple[int, int, Any]]:
    """(row, best plane, that plane) for each (row, z-stack), [] when cancelled; runs in a worker thread."""
    curves = curves_of([(row, stack.data) for row, stack in stacks], BEST_FOCUS_MEASURE, progress, cancel)
    if curves is None:
        return []
    found = []
    for row, stack in stacks:
        best = int(np.argmax(curves[row]))  # best_focus_plane's rule (the first maximum), with progress and cancel
        found.append((row, best, displayed_plane(stack, best)))
    return found


class CompareWidget(QWidget):
    """Show inputs and their DGNO results side by side, with linked z, zoom, pan and contrast.

    Pairs are found by the deblur widget's convention (``"<input> [DGNO <model>]"`` and the provenance in
    ``layer.metadata["napari_dgno"]``) and can be edited. "Side by side" puts one row per input into
    napari's grid: the input, its results and optionally a reference panel (the input's best-focused or a
    chosen plane, shown at every z), every panel labelled with its layer name. "Back to normal view" puts
    the grid, visibility, layer order, name overlays and selection back exactly as they were.
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        napari_viewer = unproxied(napari_viewer)
        self.viewer = napari_viewer
        self.view = SideBySide(napari_viewer)
        self._pairs: list[tuple[Any, Any]] = []
        self._dismissed: set[tuple[int, int]] = set()
        self._worker: Any = None
        self._cancel = threading.Event()
        self._relay = ProgressRelay(self)
        self._relay.progressed.connect(self._show_progress)

        self.input_combo = LayerCombo(napari_viewer)
        self.result_combo = LayerCombo(napari_viewer)
        self.add_pair_button = QPushButton("Add pair")
        self.pairs_list = QListWidget()
        self.pairs_list.setToolTip("Each pair becomes a row: input | result(s) | reference")
        self.remove_pair_button = QPushButton("Remove pair")
        self.reference_check = QCheckBox("Reference panel (a plane of the input)")
        self.reference_check.setToolTip("Adds a panel showing one plane of the input at every z: by default its "
                                        "best-focused plane (highest normalised variance)")
        self.reference_plane = QSpinBox()
        self.reference_plane.setRange(-1, 100_000)
        self.reference_plane.setValue(-1)
        self.reference_plane.setSpecialValueText("auto")
        self.reference_plane.setToolTip("Plane of the input shown as reference; auto: its best-focused plane")
        self.across_check = QCheckBox("Link contrast across pairs")
        self.show_button = QPushButton("Side by side")
        self.back_button = QPushButton("Back to normal view")
        self.back_button.setEnabled(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Input", self.input_combo)
        form.addRow("Result", self.result_combo)
        pair_buttons = QHBoxLayout()
        pair_buttons.addWidget(self.add_pair_button)
        pair_buttons.addWidget(self.remove_pair_button)
        reference = QHBoxLayout()
        reference.addWidget(self.reference_check)
        reference.addStretch(1)
        reference.addWidget(QLabel("plane"))
        reference.addWidget(self.reference_plane)
        view_buttons = QHBoxLayout()
        view_buttons.addWidget(self.show_button)
        view_buttons.addWidget(self.back_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(pair_buttons)
        layout.addWidget(QLabel("Pairs to compare"))
        layout.addWidget(self.pairs_list)
        layout.addLayout(reference)
        layout.addWidget(self.across_check)
        layout.addLayout(view_buttons)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.input_combo.layer_changed.connect(self._pick_result)
        self.add_pair_button.clicked.connect(self._add_current_pair)
        self.remove_pair_button.clicked.connect(self._remove_selected_pair)
        self.show_button.clicked.connect(self.show_side_by_side)
        self.back_button.clicked.connect(self.back_to_normal)
        self.across_check.toggled.connect(self.view.set_link_across)
        events = napari_viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layers_changed)
        self._on_layers_changed()
        if self._pairs:  # start on the newest pair
            self._select(*self._pairs[-1])
        else:
            self._pick_result(self.input_combo.layer())

    # --- pairs ------------------------------------------------------------------------------------------

    def pairs(self) -> list[tuple[Any, Any]]:
        """The (input, result) pairs that "Side by side" shows."""
        return list(self._pairs)

    def add_pair(self, source: Any, result: Any) -> None:
        """Add a pair (any two image layers of the same shape); a pair already listed is not repeated."""
        if source is None or result is None:
            raise ValueError("choose both an input layer and a result layer")
        if source is result:
            raise ValueError(f"input and result are the same layer ({source.name!r}); choose its DGNO result")
        if tuple(source.data.shape) != tuple(result.data.shape):
            raise ValueError(f"{source.name!r} has shape {tuple(source.data.shape)} but {result.name!r} has shape "
                             f"{tuple(result.data.shape)}; a result must have its input's shape")
        self._dismissed.discard((id(source), id(result)))
        if not any(s is source and r is result for s, r in self._pairs):
            self._pairs.append((source, result))
            self._refresh_list()

    def remove_pair(self, index: int) -> None:
        """Remove pair ``index``; it is not added back automatically."""
        source, result = self._pairs.pop(index)
        self._dismissed.add((id(source), id(result)))
        self._refresh_list()

    def _pick_result(self, source: Any) -> None:
        result = find_result(self.viewer.layers, source) if source is not None else None
        if result is not None:
            self.result_combo.set_layer(result)

    def _add_current_pair(self) -> None:
        try:
            self.add_pair(self.input_combo.layer(), self.result_combo.layer())
        except ValueError as err:
            self.status.setText(str(err))

    def _remove_selected_pair(self) -> None:
        row = self.pairs_list.currentRow()
        if row >= 0:
            self.remove_pair(row)

    def _select(self, source: Any, result: Any) -> None:
        self.input_combo.set_layer(source)
        self.result_combo.set_layer(result)

    def _on_layers_changed(self, event: Any = None) -> None:
        layers = self.viewer.layers
        if event is not None and event.type == "inserted":
            pair = pair_of(layers, event.value)
            if pair is not None:  # a new DGNO result: offer it in the Input/Result choice
                self._select(*pair)
        self._pairs = [(s, r) for s, r in self._pairs if s in layers and r in layers]
        for source, result in find_pairs(layers):
            key = (id(source), id(result))
            if key not in self._dismissed and not self.view.is_scratch(result) and not any(
                    s is source and r is result for s, r in self._pairs):
                self._pairs.append((source, result))
        self._refresh_list()

    def _refresh_list(self, event: Any = None) -> None:
        self.pairs_list.clear()
        for source, result in self._pairs:
            self.pairs_list.addItem(f"{source.name}  |  {result.name}")
            for layer in (source, result):
                layer.events.name.connect(self._refresh_list)  # napari ignores a repeated connection

    # --- the view ---------------------------------------------------------------------------------------

    def show_side_by_side(self) -> None:
        """Enter the comparison (the listed pairs, or the Input/Result choice when the list is empty)."""
        pairs = self._pairs or [(self.input_combo.layer(), self.result_combo.layer())]
        try:
            if any(s is None or r is None for s, r in pairs):
                raise ValueError("choose an input and its result (or add pairs) first")
            rows = rows_from_pairs(pairs)
            stacks = self._reference_stacks(rows) if self.reference_check.isChecked() else []
        except ValueError as err:
            self.status.setText(str(err))
            return
        self._stop_worker()
        self.view.show(rows, link_across=self.across_check.isChecked())
        self.back_button.setEnabled(True)
        self.status.setText(f"{len(rows)} row(s) side by side; z, zoom and pan are linked")
        if not stacks:
            return
        plane = self.reference_plane.value()
        if plane >= 0:
            for row, stack in stacks:
                self._add_reference(row, plane, displayed_plane(stack, plane), "reference")
            return
        self._cancel = threading.Event()
        from napari.qt.threading import create_worker

        worker = create_worker(_best_planes, stacks, self._relay, self._cancel, _start_thread=False)
        worker.returned.connect(partial(self._references_found, self._cancel))
        worker.errored.connect(partial(self._failed, self._cancel))
        worker.finished.connect(partial(self._worker_finished, worker))
        self._worker = worker
        self.status.setText("finding the best-focused plane of the input…")
        worker.start()

    def back_to_normal(self) -> None:
        """Leave the comparison: grid, visibility, layer order and name overlays as they were before."""
        self._stop_worker()
        self.view.restore()
        self.back_button.setEnabled(False)
        self.status.setText("")

    def _reference_stacks(self, rows: list[list[Any]]) -> list[tuple[int, Any]]:
        stacks = [(i, z_stack(self.viewer, row[0])) for i, row in enumerate(rows)]
        plane = self.reference_plane.value()
        for _, stack in stacks:
            if plane >= stack.planes:
                raise ValueError(f"reference plane {plane} is out of range: {stack.layer.name!r} has planes "
                                 f"0 to {stack.planes - 1}")
        return stacks

    def _add_reference(self, row: int, plane: int, image: Any, label: str) -> None:
        if self.view.active and row < len(self.view.rows):
            self.view.add_reference(row, image, plane, label=label)

    def _references_found(self, cancel: threading.Event, found: list[tuple[int, int, Any]]) -> None:
        if cancel.is_set():  # "Back to normal view" (or a new comparison) came first
            return
        for row, plane, image in found:
            self._add_reference(row, plane, image, "best focus")
        self.status.setText(f"{len(self.view.rows)} row(s) side by side, with the best-focused plane "
                            "of each input as reference")

    def _failed(self, cancel: threading.Event, error: Exception) -> None:
        if not cancel.is_set():  # napari also shows the error as a notification
            self.status.setText(f"no reference panel: {error}")

    def _show_progress(self, done: int, total: int) -> None:
        if self._worker is not None:
            self.status.setText(f"finding the best-focused plane: {done}/{total} planes")

    def _worker_finished(self, worker: Any) -> None:
        if self._worker is worker:
            self._worker = None

    def _stop_worker(self) -> None:
        self._cancel.set()
        self._worker = None

    @property
    def busy(self) -> bool:
        """True while the best-focus plane is being searched."""
        return self._worker is not None

