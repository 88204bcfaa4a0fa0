"""Focus-curve dock: how sharp every plane is, before and after DGNO, and scores against a reference plane.

The plot shows a focus measure (:data:`napari_dgno.focus.MEASURES`) against z for the input and its
result, marks the viewer's current plane and jumps there on a click. A curve reads every plane, so it is
computed in a worker thread with progress and Cancel: automatically for in-memory stacks, and only when
"Compute curve" is pressed for lazy ones (a lazy DGNO result computes each plane as it is read). With a
reference plane chosen, a small table gives PSNR/SSIM of the current plane of input and result against
it (:func:`napari_dgno.focus.reference_scores`).
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QAbstractScrollArea,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..focus import MEASURES
from ._compare_curves import curves_of
from ._compare_layers import (
    ZStack,
    current_plane,
    find_pairs,
    find_result,
    go_to_plane,
    other_indices,
    pair_of,
    plane_of,
    unproxied,
    z_stack,
)
from ._compare_plot import FocusPlot
from ._compare_widgets import LayerCombo, ProgressRelay

__all__ = ["FocusCurveWidget"]

#: Table rows (stacks) and columns (scores of the current plane).
ROWS = ("input", "result")
COLUMNS = ("Focus", "PSNR (dB)", "SSIM")
#: Wait this long after the last z change before scoring the plane (scrolling stays smooth).
SCORE_DELAY_MS = 150


def _scores(reference: np.ndarray, planes: dict[str, Any], cancel: threading.Event) -> dict[str, tuple[float, float]]:
    """PSNR and SSIM of each named (1, Y, X) plane against ``reference``; runs in a worker thread."""
    from ..engine.hooks import Cancelled
    from ..focus import reference_scores

    out = {}
    try:
        for name, plane in planes.items():
            scores = reference_scores(plane, reference, cancel=cancel)
            out[name] = (float(scores["psnr"][0]), float(scores["ssim"][0]))
    except Cancelled:
        return {}
    return out


class FocusCurveWidget(QWidget):
    """Dock with the focus curve of an input and its DGNO result, the current plane and reference scores."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        napari_viewer = unproxied(napari_viewer)
        self.viewer = napari_viewer
        self.stacks: dict[str, ZStack] = {}
        self._problem = ""  # why a stack is not shown (a 2-D layer, a result of another shape)
        self._selecting = False
        self._cache: dict[tuple, np.ndarray] = {}
        self._watched: list[Any] = []
        self._curve_worker: Any = None
        self._curve_cancel = threading.Event()
        self._score_worker: Any = None
        self._score_cancel = threading.Event()
        self._relay = ProgressRelay(self)
        self._relay.progressed.connect(self._show_progress)
        self._score_timer = QTimer(self)
        self._score_timer.setSingleShot(True)
        self._score_timer.setInterval(SCORE_DELAY_MS)
        self._score_timer.timeout.connect(self._compute_scores)

        self.input_combo = LayerCombo(napari_viewer)
        self.result_combo = LayerCombo(napari_viewer, allow_none=True)
        self.measure_combo = QComboBox()
        self.measure_combo.addItems(list(MEASURES))
        self.compute_button = QPushButton("Compute curve")
        self.compute_button.setToolTip("Reads every plane; a lazy DGNO result computes each plane it has not yet")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.plot = FocusPlot(self.go_to_plane, theme=getattr(napari_viewer, "theme", None))
        self.plot.canvas.setMinimumHeight(220)
        self.reference_spin = QSpinBox()
        self.reference_spin.setRange(-1, 0)
        self.reference_spin.setValue(-1)
        self.reference_spin.setSpecialValueText("none")
        self.best_button = QPushButton("Best focus of input")
        self.table_title = QLabel("")
        self.table = QTableWidget(len(ROWS), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setVerticalHeaderLabels([r.capitalize() for r in ROWS])
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.table.setSizeAdjustPolicy(QAbstractScrollArea.AdjustToContents)  # all rows, no scrolling
        self.table.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Input", self.input_combo)
        form.addRow("Result", self.result_combo)
        form.addRow("Measure", self.measure_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compute_button)
        buttons.addWidget(self.cancel_button)
        reference = QHBoxLayout()
        reference.addWidget(QLabel("Reference plane"))
        reference.addWidget(self.reference_spin)
        reference.addWidget(self.best_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.plot.canvas, 1)
        layout.addLayout(reference)
        layout.addWidget(self.table_title)
        layout.addWidget(self.table)
        layout.addWidget(self.status)

        self.input_combo.layer_changed.connect(self._input_changed)
        self.result_combo.layer_changed.connect(self._selection_changed)
        self.measure_combo.currentTextChanged.connect(self._selection_changed)
        self.compute_button.clicked.connect(self.compute_curve)
        self.cancel_button.clicked.connect(self.cancel)
        self.best_button.clicked.connect(self.use_best_focus)
        self.reference_spin.valueChanged.connect(self._schedule_scores)
        napari_viewer.dims.events.current_step.connect(self._on_step)
        napari_viewer.layers.events.inserted.connect(self._on_inserted)
        pairs = find_pairs(napari_viewer.layers)
        if pairs:  # start on the newest DGNO result and its input
            self.select(*pairs[-1])
        else:
            self._input_changed(self.input_combo.layer())

    # --- public --------------------------------------------------------------------------------------------

    @property
    def measure(self) -> str:
        return self.measure_combo.currentText()

    @property
    def curves(self) -> dict[str, np.ndarray | None]:
        """The computed curve of each selected stack ("input", "result"), None where not computed yet."""
        return {name: self._cache.get((stack.key, self.measure)) for name, stack in self.stacks.items()}

    @property
    def busy(self) -> bool:
        """True while a curve or the scores are being computed."""
        return self._curve_worker is not None or self._score_worker is not None or self._score_timer.isActive()

    def select(self, source: Any, result: Any = None) -> None:
        """Show the curves of ``source`` and ``result`` (None: no result)."""
        self._selecting = True
        try:
            self.input_combo.set_layer(source)
            self.result_combo.set_layer(result)
        finally:
            self._selecting = False
        self._selection_changed()

    def compute_curve(self) -> None:
        """Compute every missing curve, lazy stacks included, in a worker thread (progress bar, Cancel)."""
        self._start_curves([name for name, curve in self.curves.items() if curve is None])

    def cancel(self) -> None:
        """Stop the running curve computation (the planes already computed are dropped)."""
        self._curve_cancel.set()
        self._curve_worker = None
        self._busy_ui(False)
        self._say("cancelled")

    def go_to_plane(self, plane: int) -> None:
        """Move the viewer to ``plane`` of the input (what a click on the plot does)."""
        if "input" in self.stacks:
            go_to_plane(self.viewer, self.stacks["input"].layer, plane)

    def use_best_focus(self) -> None:
        """Take the input's best-focused plane (by the selected measure) as the reference plane."""
        curve = self.curves.get("input")
        if curve is None:
            self._say("compute the input's focus curve first (Compute curve)")
            return
        self.reference_spin.setValue(int(np.argmax(curve)))

    # --- selection -----------------------------------------------------------------------------------------

    def _input_changed(self, layer: Any) -> None:
        if self._selecting:
            return
        result = find_result(self.viewer.layers, layer) if layer is not None else None
        if result is not None and result is not self.result_combo.layer():
            self.result_combo.set_layer(result)  # emits layer_changed -> _selection_changed
        else:
            self._selection_changed()

    def _on_inserted(self, event: Any) -> None:
        pair = pair_of(self.viewer.layers, event.value)
        if pair is not None:  # a new DGNO result: follow it
            self.select(*pair)

    def _selection_changed(self, *_: Any) -> None:
        """New input, result or measure: drop running work, redraw from the cache, compute what is cheap."""
        if self._selecting:
            return
        self._stop_curves()
        for layer in self._watched:
            layer.events.data.disconnect(self._selection_changed)
        self._watched = [layer for layer in (self.input_combo.layer(), self.result_combo.layer()) if layer]
        for layer in self._watched:
            layer.events.data.connect(self._selection_changed)
        self.stacks, self._problem = {}, ""
        try:
            self._read_stacks()
        except ValueError as err:
            self._problem = str(err)
            self._say("")
        planes = self.stacks["input"].planes if "input" in self.stacks else 0
        self.reference_spin.setMaximum(max(0, planes - 1))
        self._redraw()
        if self.stacks and self._missing(lazy=False):
            self._start_curves(self._missing(lazy=False))
        else:
            self._say_what_is_missing()
        self._schedule_scores()

    def _read_stacks(self) -> None:
        source, result = self.input_combo.layer(), self.result_combo.layer()
        if source is None:
            raise ValueError("add or open an image stack (Z, Y, X) to see its focus curve")
        self.stacks["input"] = z_stack(self.viewer, source)
        if result is not None and result is not source:
            if tuple(result.data.shape) != tuple(source.data.shape):
                raise ValueError(f"{result.name!r} has shape {tuple(result.data.shape)} but {source.name!r} has "
                                 f"{tuple(source.data.shape)}; choose the result computed from this input")
            self.stacks["result"] = z_stack(self.viewer, result)

    def _missing(self, *, lazy: bool | None = None) -> list[str]:
        return [name for name, curve in self.curves.items()
                if curve is None and (lazy is None or self.stacks[name].lazy == lazy)]

    def _say_what_is_missing(self) -> None:
        lazy = self._missing(lazy=True)
        if lazy:
            names = " and ".join(f"{self.stacks[n].layer.name!r}" for n in lazy)
            planes = self.stacks[lazy[0]].planes
            self._say(f"{names} is computed on demand (lazy): press Compute curve to compute and measure "
                                f"all {planes} planes")
        elif self._curve_worker is None:
            self._say("")

    # --- curves --------------------------------------------------------------------------------------------

    def _start_curves(self, names: list[str]) -> None:
        self._stop_curves()
        if not names:
            return
        self._curve_cancel = threading.Event()
        from napari.qt.threading import create_worker

        jobs = [(name, self.stacks[name].data) for name in names]
        keys = {name: (self.stacks[name].key, self.measure) for name in names}
        worker = create_worker(curves_of, jobs, self.measure, self._relay, self._curve_cancel, _start_thread=False)
        worker.returned.connect(partial(self._curves_done, keys, self._curve_cancel))
        worker.errored.connect(partial(self._failed, self._curve_cancel))
        worker.finished.connect(partial(self._curve_worker_finished, worker))
        self._curve_worker = worker
        self.progress.setRange(0, sum(self.stacks[n].planes for n in names))
        self.progress.setValue(0)
        self._busy_ui(True)
        self._say("measuring focus of " + " and ".join(self.stacks[n].layer.name for n in names) + "…")
        worker.start()

    def _curves_done(self, keys: dict[str, tuple], cancel: threading.Event,
                     curves: dict[str, np.ndarray] | None) -> None:
        if cancel.is_set() or curves is None:
            return
        for name, curve in curves.items():
            self._cache[keys[name]] = curve
        self._curve_worker = None
        self._busy_ui(False)
        self._redraw()
        self._say_what_is_missing()
        self._fill_focus_column()

    def _say(self, text: str) -> None:
        """Show ``text`` in the status line, after the reason a stack is not shown (if any)."""
        self.status.setText("\n".join(t for t in (self._problem, text) if t))

    def _failed(self, cancel: threading.Event, error: Exception) -> None:
        if not cancel.is_set():  # napari also shows the error as a notification
            self._say(f"failed: {error}")

    def _curve_worker_finished(self, worker: Any) -> None:
        if self._curve_worker is worker:
            self._curve_worker = None
            self._busy_ui(False)

    def _stop_curves(self) -> None:
        self._curve_cancel.set()
        self._curve_worker = None
        self._busy_ui(False)

    def _busy_ui(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setEnabled(busy)
        self.compute_button.setEnabled(not busy)

    def _show_progress(self, done: int, total: int) -> None:
        if self._curve_worker is not None:
            self.progress.setMaximum(total)
            self.progress.setValue(done)

    def _redraw(self) -> None:
        planes = self.stacks["input"].planes if "input" in self.stacks else 0
        self.plot.set_curves(self.curves, planes, self.measure)
        self._update_marker()

    # --- current plane and scores ------------------------------------------------------------------------

    def _on_step(self, event: Any = None) -> None:
        stack = self.stacks.get("input")
        if stack is None:
            return
        if other_indices(self.viewer, stack.layer) != stack.others:  # another time point: other stacks
            self._selection_changed()
            return
        self._update_marker()
        self._schedule_scores()

    def _update_marker(self) -> None:
        stack = self.stacks.get("input")
        self.plot.set_current(current_plane(self.viewer, stack.layer) if stack else None)
        self._fill_focus_column()

    def _schedule_scores(self, *_: Any) -> None:
        self._score_cancel.set()
        self._score_worker = None
        self._set_scores({})
        if self.reference_spin.value() >= 0 and self.stacks:
            self._score_timer.start()
        else:
            self._score_timer.stop()
            self.table_title.setText("choose a reference plane for PSNR / SSIM" if self.stacks else "")

    def _compute_scores(self) -> None:
        reference = self.reference_spin.value()
        if reference < 0 or "input" not in self.stacks:
            return
        self._score_cancel = threading.Event()
        from napari.qt.threading import create_worker

        z = {name: current_plane(self.viewer, stack.layer) for name, stack in self.stacks.items()}
        planes = {name: stack.data[z[name]:z[name] + 1] for name, stack in self.stacks.items()}
        reference_plane = partial(plane_of, self.stacks["input"], reference)
        worker = create_worker(lambda cancel: _scores(reference_plane(), planes, cancel), self._score_cancel,
                               _start_thread=False)
        worker.returned.connect(partial(self._scores_done, self._score_cancel))
        worker.errored.connect(partial(self._failed, self._score_cancel))
        worker.finished.connect(partial(self._score_worker_finished, worker))
        self._score_worker = worker
        self.table_title.setText(f"plane z={z['input']} vs reference plane z={reference} (input)")
        worker.start()

    def _scores_done(self, cancel: threading.Event, scores: dict[str, tuple[float, float]]) -> None:
        if not cancel.is_set():
            self._set_scores(scores)

    def _score_worker_finished(self, worker: Any) -> None:
        if self._score_worker is worker:
            self._score_worker = None

    def _set_scores(self, scores: dict[str, tuple[float, float]]) -> None:
        for row, name in enumerate(ROWS):
            psnr, ssim = scores.get(name, (None, None))
            self._set_cell(row, 1, "—" if psnr is None else ("∞" if np.isinf(psnr) else f"{psnr:.2f}"))
            self._set_cell(row, 2, "—" if ssim is None else f"{ssim:.4f}")
        self._fill_focus_column()

    def _fill_focus_column(self) -> None:
        curves = self.curves
        for row, name in enumerate(ROWS):
            curve, stack = curves.get(name), self.stacks.get(name)
            text = "—" if curve is None or stack is None else f"{curve[current_plane(self.viewer, stack.layer)]:.4g}"
            self._set_cell(row, 0, text)

    def _set_cell(self, row: int, column: int, text: str) -> None:
        item = self.table.item(row, column)
        if item is None:
            self.table.setItem(row, column, QTableWidgetItem(text))
        else:
            item.setText(text)

    def scores(self) -> dict[str, tuple[str, str]]:
        """The table's (PSNR, SSIM) text per row ("input", "result"); "—" where empty."""
        return {name: (self.table.item(row, 1).text(), self.table.item(row, 2).text())
                for row, name in enumerate(ROWS)}
