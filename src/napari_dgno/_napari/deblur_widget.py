"""The "DGNO deblur" dock widget: pick an image, a model and a device; preview a plane; run on everything.

A thin layer over the core. On the main thread it reads the viewer (:func:`layer_info.snapshot`),
checks every field together (:mod:`.validation`) and turns results into layers (:mod:`.output_layers`);
the work itself (loading weights, deblurring, downloading) runs in ``thread_worker`` generators
(:mod:`.workers`) that yield per tile batch, drive a napari progress bar and stop on Cancel. Failures
come back as napari notifications, never as tracebacks; the input layer is only ever read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from .devices import accelerations_for, available_devices, cpu_only_warning, no_gpu_note, precisions_for
from .layer_info import LayerSnapshot, layer_axes, snapshot
from .model_choice import (
    CHECKPOINT_FILTER,
    DOWNLOAD,
    MISSING,
    ModelChoice,
    availability,
    local_choice,
    registry_choices,
    suggestions,
)
from .output_layers import layer_kwargs, output_name, preview_region, put_layer
from .validation import FormState, validate
from .workers import DeblurRequest, ModelCache, Outcome, Step, deblur_job, fetch_job

if TYPE_CHECKING:
    import napari

#: Eager results above this size (float32 bytes) default to the lazy mode, which holds no full copy.
LAZY_DEFAULT_BYTES = 2 * 2**30
LAZY, EAGER = "lazy", "eager"
_LOCAL_FILE = "__local_file__"
PREVIEW_TIP = ("Deblur the plane on screen into a preview layer (reused on re-runs). Planes over 1 megapixel: only "
               "the visible part, at most 1024x1024 and normalised over that part, so it can differ slightly from Run.")
RUN_TIP = "Deblur every plane of the layer into a new layer '<input> [DGNO <model>]'."
ACCELERATE_TIP = (
    "How the network runs. auto: CUDA graphs on a GPU when the model allows (replays the whole forward, less "
    "launch overhead), plain PyTorch elsewhere. none: plain PyTorch. graphs: CUDA graphs (GPU only). "
    "compile / compile+graphs: torch.compile the network's blocks; the first run of each tile size and "
    "precision compiles for about a minute (longer on a CPU), later runs are 1.6-2.0x faster on a GPU "
    "(H200, 512-pixel tiles)."
)
_WARN_STYLE = "color: #e8a33d;"
_MUTED_STYLE = "color: #9a9a9a;"


def _wrapped(text: str = "", style: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    label.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)
    if style:
        label.setStyleSheet(style)
    return label


def _refill(combo: QComboBox, options: list[str]) -> None:
    """Replace a combo's items for a new device, keeping the current choice when it is still allowed."""
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(options)
    combo.setCurrentIndex(options.index(current) if current in options else 0)
    combo.blockSignals(False)


class DeblurWidget(QWidget):
    """Deblur an image layer with DGNO. Public methods mirror the buttons, for scripts and tests."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._models = ModelCache()
        self._worker: Any = None
        self._cancel: threading.Event | None = None
        self._pbar: progress | None = None
        self._model_picked_by_user = False
        self._axes_edited = False
        self._results: dict[tuple[int, str], Image] = {}
        self._previews: dict[int, Image] = {}
        self._problems: dict[str, str] = {}
        self._reasons: dict[str, str] = {}
        self._model_availability: str | None = None
        self._model_detail = ""
        self._last_model_source: str | None = None
        self._layer_shown: Image | None = None
        self._gone = False
        #: The last layer a run or preview produced (for scripts and tests).
        self.last_layer: Image | None = None
        self._build()
        self._connect_viewer()
        self._refresh_layers()
        # When the viewer closes, a job's late result is dropped rather than shown on a deleted widget.
        self.destroyed.connect(lambda *_: setattr(self, "_gone", True))

    # ------------------------------------------------------------------------------------------- UI

    def _build(self) -> None:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)

        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("The image layer to deblur (it is never modified).")
        form.addRow("Image", self.layer_combo)

        self.axes_edit = QLineEdit()
        self.axes_edit.setToolTip(
            "One letter per dimension of the data, e.g. YX, ZYX, TZYX, YXC (RGB). "
            "Every YX plane is deblurred on its own."
        )
        self.axes_note = _wrapped(style=_MUTED_STYLE)
        form.addRow("Axes", self.axes_edit)
        form.addRow("", self.axes_note)

        self.model_combo = QComboBox()
        self.model_combo.setToolTip("The DGNO checkpoint; the one that fits the image is pre-selected.")
        for choice in registry_choices():
            self.model_combo.addItem(choice.label, choice)
        self.model_combo.insertSeparator(self.model_combo.count())
        self.model_combo.addItem("Local file…", _LOCAL_FILE)
        form.addRow("Model", self.model_combo)
        self.model_reason = _wrapped(style=_MUTED_STYLE)
        form.addRow("", self.model_reason)
        self.model_state = _wrapped()
        self.fetch_button = QPushButton("Fetch")
        self.fetch_button.setToolTip("Download the weights once into the Hugging Face cache (~52 MB).")
        state_row = QHBoxLayout()
        state_row.addWidget(self.model_state, 1)
        state_row.addWidget(self.fetch_button)
        form.addRow("", state_row)

        self.device_combo = QComboBox()
        self.device_combo.setToolTip("Only devices that work on this machine are listed, fastest first.")
        for device in available_devices():
            self.device_combo.addItem(device.label, device.value)
        form.addRow("Device", self.device_combo)
        warning = cpu_only_warning() or no_gpu_note()
        self.device_warning = _wrapped(f"⚠ {warning}" if warning else "", _WARN_STYLE)
        self.device_warning.setVisible(bool(warning))
        form.addRow("", self.device_warning)

        self.mode_combo = QComboBox()
        self.mode_combo.addItem("Eager: all planes now, in the background", EAGER)
        self.mode_combo.addItem("Lazy: each plane when it is viewed", LAZY)
        self.mode_combo.setToolTip(
            "For stacks. Eager computes every plane in the background with progress and Cancel, and keeps the "
            "result in memory. Lazy returns at once and computes a plane when you view it (the viewer waits for "
            "that plane); it holds no full copy, for stacks larger than memory."
        )
        form.addRow("Stack", self.mode_combo)

        advanced = QWidget()
        adv = QFormLayout(advanced)
        adv.setContentsMargins(0, 0, 0, 0)
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(0, 8192)
        self.tile_spin.setSingleStep(32)
        self.tile_spin.setSpecialValueText("auto")
        self.tile_spin.setToolTip("Tile edge in pixels, a multiple of 32 (auto: 256 on CPU, 512 on GPU).")
        self.overlap_spin = QSpinBox()
        self.overlap_spin.setRange(0, 1024)
        self.overlap_spin.setSingleStep(8)
        self.overlap_spin.setValue(32)
        self.overlap_spin.setToolTip("Pixels shared by neighbouring tiles, blended so no seams show.")
        self.precision_combo = QComboBox()
        self.precision_combo.setToolTip("fp32 everywhere; bf16/fp16 are faster on GPUs that support them.")
        self.accelerate_combo = QComboBox()
        self.accelerate_combo.setToolTip(ACCELERATE_TIP)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(0, 1024)
        self.batch_spin.setSpecialValueText("auto")
        self.batch_spin.setToolTip("Tiles per forward pass (auto: 1 on CPU, ~1 megapixel on GPU).")
        adv.addRow("Tile", self.tile_spin)
        adv.addRow("Overlap", self.overlap_spin)
        adv.addRow("Precision", self.precision_combo)
        adv.addRow("Acceleration", self.accelerate_combo)
        adv.addRow("Batch", self.batch_spin)
        self.advanced = QCollapsible("Advanced")
        self.advanced.addWidget(advanced)

        self.preview_button = QPushButton("Preview")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.preview_button)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)

        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.status = _wrapped()

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.advanced)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.layer_combo.currentIndexChanged.connect(self._on_layer_changed)
        self.axes_edit.textEdited.connect(self._on_axes_edited)
        self.model_combo.activated.connect(self._on_model_activated)
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        self.fetch_button.clicked.connect(self.fetch)
        self.device_combo.currentIndexChanged.connect(self._on_device_changed)
        for spin in (self.tile_spin, self.overlap_spin, self.batch_spin):
            spin.valueChanged.connect(self._revalidate)
        self.precision_combo.currentIndexChanged.connect(self._revalidate)
        self.accelerate_combo.currentIndexChanged.connect(self._revalidate)
        self.mode_combo.currentIndexChanged.connect(self._revalidate)
        self.preview_button.clicked.connect(self.preview)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self._on_device_changed()

    # ------------------------------------------------------------------------------ viewer events

    def _connect_viewer(self) -> None:
        events = self.viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layers_changed)
        events.reordered.connect(self._on_layers_changed)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._on_layers_changed)

    def _on_layers_changed(self, event: Any = None) -> None:
        if getattr(event, "type", None) == "inserted":
            event.value.events.name.connect(self._on_layers_changed)
        elif getattr(event, "type", None) == "removed":
            event.value.events.name.disconnect(self._on_layers_changed)
        self._refresh_layers()

    def _image_layers(self) -> list[Image]:
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _refresh_layers(self) -> None:
        """Rebuild the layer list, keeping the selected layer (or picking the active image layer)."""
        current = self.layer
        layers = self._image_layers()
        if current not in layers:
            active = self.viewer.layers.selection.active
            current = active if isinstance(active, Image) else (layers[0] if layers else None)
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        for layer in layers:
            self.layer_combo.addItem(layer.name, layer)
        self.layer_combo.setCurrentIndex(layers.index(current) if current in layers else -1)
        self.layer_combo.blockSignals(False)
        if current is not self._layer_shown:
            self._on_layer_changed()
        else:
            self._revalidate()

    @property
    def layer(self) -> Image | None:
        """The selected image layer."""
        data = self.layer_combo.currentData()
        return data if isinstance(data, Image) else None

    def _on_layer_changed(self, *_: Any) -> None:
        layer = self.layer
        self._layer_shown = layer
        self._axes_edited = False
        if layer is None:
            self.axes_edit.setText("")
            self.axes_note.setText("")
            self.model_reason.setText("")
            self._revalidate()
            return
        snap = snapshot(layer, self.viewer)
        self._suggest(snap)
        self._guess_axes(snap)
        stack = snap.planes > 1
        self.mode_combo.setEnabled(stack)
        self.mode_combo.setCurrentIndex(
            self.mode_combo.findData(LAZY if snap.nbytes_float32 > LAZY_DEFAULT_BYTES else EAGER)
        )
        self._revalidate()

    def _guess_axes(self, snap: LayerSnapshot) -> None:
        choice = self.model
        guess = layer_axes(snap.shape, snap.dtype, snap.rgb, snap.axis_labels, (choice.channels if choice else 1) or 1)
        self.axes_edit.setText(guess.axes)
        self.axes_edit.setStyleSheet("border: 1px solid #e8a33d;" if guess.ambiguous else "")
        self.axes_note.setText(("⚠ " if guess.ambiguous else "") + guess.note)
        self.axes_note.setStyleSheet(_WARN_STYLE if guess.ambiguous else _MUTED_STYLE)

    def _on_axes_edited(self, *_: Any) -> None:
        self._axes_edited = True
        self._revalidate()

    # ------------------------------------------------------------------------------------ models

    @property
    def model(self) -> ModelChoice | None:
        data = self.model_combo.currentData()
        return data if isinstance(data, ModelChoice) else None

    def _suggest(self, snap: LayerSnapshot) -> None:
        """Pre-select the best model for the layer, unless the user picked one."""
        self._reasons = dict(suggestions(snap))
        if not self._model_picked_by_user and self._reasons:
            self._select_choice(next(iter(self._reasons)))
        self._show_model_state()

    def _select_choice(self, source: str) -> bool:
        for index in range(self.model_combo.count()):
            data = self.model_combo.itemData(index)
            if isinstance(data, ModelChoice) and data.source.lower() == source.lower():
                self.model_combo.setCurrentIndex(index)
                return True
        return False

    def select_model(self, source: str | Path) -> None:
        """Choose a registry model by name, or a local checkpoint by path (as if picked by the user)."""
        if not self._select_choice(str(source)):
            path = Path(source).expanduser()
            if not path.suffix and not path.exists():
                raise ValueError(f"no model named {source!r}; choose one of the list or give a checkpoint path")
            self.add_local_model(path)
        self._model_picked_by_user = True

    def add_local_model(self, path: str | Path) -> None:
        """Add a checkpoint file to the list and select it."""
        choice = local_choice(path)
        if not self._select_choice(choice.source):
            self.model_combo.insertItem(self.model_combo.count() - 2, choice.label, choice)
            self._select_choice(choice.source)
        self._model_picked_by_user = True

    def _on_model_activated(self, index: int) -> None:
        """A choice made by the user in the list (not by the suggestion)."""
        if self.model_combo.itemData(index) == _LOCAL_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "DGNO checkpoint", "", CHECKPOINT_FILTER)
            if path:
                self.add_local_model(path)
            else:
                self._select_choice(self._last_model_source or "")
            return
        self._model_picked_by_user = True

    def _on_model_changed(self, *_: Any) -> None:
        choice = self.model
        if choice is None:
            return
        self._last_model_source = choice.source
        layer = self.layer
        if layer is not None and not self._axes_edited:
            self._guess_axes(snapshot(layer, self.viewer))
        self._show_model_state()
        self._revalidate()

    def _show_model_state(self) -> None:
        choice = self.model
        if choice is None:
            return
        reasons = self._reasons
        if choice.is_local:
            reason = "your checkpoint; its configuration is read from the file"
        elif choice.source in reasons:
            best = next(iter(reasons)) == choice.source
            reason = ("★ suggested: " if best else "") + reasons[choice.source]
        else:
            reason = "not suggested for this image (different channels or modality)" if reasons else ""
        self.model_reason.setText(reason)
        state, text = availability(choice)
        self._model_availability, self._model_detail = state, text
        mark = {DOWNLOAD: "⬇ ", MISSING: "✗ "}.get(state, "✓ ")
        self.model_state.setText(mark + text)
        self.model_state.setToolTip(choice.source if choice.is_local else (choice.info.description or ""))
        self.model_state.setStyleSheet(_WARN_STYLE if state == MISSING else "")
        self.fetch_button.setVisible(state == DOWNLOAD)

    def fetch(self) -> None:
        """Download the selected registry model (progress in the viewer; Cancel stops it)."""
        choice = self.model
        if choice is None or choice.is_local or self.busy:
            return
        self._start(fetch_job, (choice.source, self._new_cancel()), f"Downloading {choice.source}", self._fetched)

    def _fetched(self, outcome: Outcome) -> None:
        if outcome.cancelled:
            show_info(f"DGNO: download of {outcome.model_name} cancelled")
        elif outcome.error:
            show_error(f"DGNO: {outcome.error}")
        else:
            show_info(f"DGNO: {outcome.model_name} downloaded to {outcome.result}")
        self._show_model_state()

    # ------------------------------------------------------------------------------------ device

    def _on_device_changed(self, *_: Any) -> None:
        _refill(self.precision_combo, precisions_for(self.device))
        _refill(self.accelerate_combo, accelerations_for(self.device))
        self._revalidate()

    @property
    def device(self) -> str:
        return str(self.device_combo.currentData() or "cpu")

    def set_device(self, value: str) -> None:
        index = self.device_combo.findData(value)
        if index < 0:
            raise ValueError(f"device {value!r} is not available here; available: "
                             f"{', '.join(self.device_combo.itemData(i) for i in range(self.device_combo.count()))}")
        self.device_combo.setCurrentIndex(index)

    # -------------------------------------------------------------------------------- validation

    def _form(self, snap: LayerSnapshot | None) -> FormState:
        return FormState(
            snapshot=snap,
            axes=self.axes_edit.text().strip(),
            model=self.model,
            model_state=self._model_availability,
            device=self.device,
            tile=self.tile_spin.value() or None,
            overlap=self.overlap_spin.value(),
            batch_size=self.batch_spin.value() or None,
            precision=self.precision_combo.currentText() or "fp32",
            busy=self.busy,
            model_detail=self._model_detail,
            accelerate=self.accelerate_combo.currentText() or "auto",
        )

    def _revalidate(self, *_: Any) -> dict[str, str]:
        layer = self.layer
        snap = snapshot(layer, self.viewer) if layer is not None else None
        self._problems = validate(self._form(snap))
        ok = not self._problems
        why = "\n".join(f"• {text}" for text in self._problems.values())
        for button, label in ((self.run_button, RUN_TIP), (self.preview_button, PREVIEW_TIP)):
            button.setEnabled(ok)
            button.setToolTip(label if ok else f"Cannot start:\n{why}")
        self.axes_edit.setToolTip(self._problems.get("axes", "One letter per dimension, e.g. ZYX, YXC."))
        self.tile_spin.setToolTip(self._problems.get("tile", "Tile edge in pixels, a multiple of 32."))
        if not self.busy:
            self.status.setText(f"⚠ {next(iter(self._problems.values()))}" if self._problems else "Ready.")
            self.status.setStyleSheet(_WARN_STYLE if self._problems else "")
        return self._problems

    @property
    def problems(self) -> dict[str, str]:
        """Why Run is disabled, by field (empty when it can start)."""
        return self._revalidate()

    # ---------------------------------------------------------------------------------- running

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def _new_cancel(self) -> threading.Event:
        self._cancel = threading.Event()
        return self._cancel

    def _checked_snapshot(self, action: str) -> LayerSnapshot | None:
        problems = self._revalidate()
        if problems:
            show_warning(f"DGNO: cannot {action}: {next(iter(problems.values()))}")
            return None
        return snapshot(self.layer, self.viewer)

    def _request(self, snap: LayerSnapshot, data: Any, mode: str, extra: dict | None = None) -> DeblurRequest:
        form = self._form(snap)
        return DeblurRequest(
            data=data, axes=form.axes, model=self.model.source, device=form.device, tile=form.tile,
            overlap=form.overlap, batch_size=form.batch_size, precision=form.precision, input_name=snap.name,
            mode=mode, extra=extra or {}, accelerate=form.accelerate,
        )

    def run(self) -> None:
        """Deblur the whole layer: eagerly in the background, or lazily for stacks in lazy mode."""
        snap = self._checked_snapshot("run")
        if snap is None:
            return
        mode = LAZY if snap.planes > 1 and self.mode_combo.currentData() == LAZY else EAGER
        layer = self.layer
        request = self._request(snap, snap.data, mode)
        label = f"DGNO: deblurring {snap.name}" + (" (lazy)" if mode == LAZY else "")
        self._start(deblur_job, (request, self._models, self._new_cancel()), label,
                    lambda outcome: self._show_result(outcome, snap, layer))

    def preview(self) -> None:
        """Deblur the current plane (or its visible part); the preview layer is reused on re-runs."""
        snap = self._checked_snapshot("preview")
        if snap is None:
            return
        axes = self.axes_edit.text().strip().upper()
        region = preview_region(snap, axes)
        layer = self.layer
        request = self._request(snap, snap.data[region.index], "preview", {"region": region.as_record()})
        self._start(deblur_job, (request, self._models, self._new_cancel()), f"DGNO: preview of {region.description}",
                    lambda outcome: self._show_preview(outcome, snap, layer, region))

    def cancel(self) -> None:
        """Stop the running job between tile batches; nothing partial is added."""
        if self._cancel is not None:
            self._cancel.set()
        if self.busy:
            self.status.setText("Cancelling…")

    def _start(self, job: Callable[..., Generator[Step, None, Outcome]], args: tuple, label: str,
               done: Callable[[Outcome], None]) -> None:
        """Run generator function ``job(*args)`` in a thread_worker; ``done(outcome)`` on the main thread."""
        cancel = self._cancel
        worker = create_worker(job, *args, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_step)
        worker.returned.connect(lambda outcome: None if self._gone else done(outcome))
        worker.aborted.connect(cancel.set)  # napari's activity dock can abort the worker
        worker.finished.connect(self._on_finished)
        self.destroyed.connect(cancel.set)  # closing the viewer stops the job
        self._worker = worker
        self._pbar = progress(total=0, desc=label)
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setVisible(True)
        self.cancel_button.setEnabled(True)
        self.status.setStyleSheet("")
        self.status.setText(label + "…")
        self._revalidate()
        worker.start()

    def _on_step(self, step: Step) -> None:
        pbar = self._pbar
        if pbar is None:
            return
        # The widget's own display first: napari's progress widgets call processEvents(), so the job's
        # later signals (even "finished") may be handled inside the pbar calls below.
        if step.total:
            self.progress_bar.setRange(0, step.total)
            self.progress_bar.setValue(step.done)
        self.status.setText(step.describe())
        pbar.set_description(step.message)
        if step.total and not pbar.disable:  # a closed napari progress is disabled
            if pbar.total != step.total:
                pbar.total = step.total
            pbar.update(step.done - pbar.n)

    def _on_finished(self) -> None:
        pbar, self._pbar = self._pbar, None  # reset state before napari's progress may process events
        self._worker = None
        self._cancel = None
        self.progress_bar.setVisible(False)
        self.cancel_button.setEnabled(False)
        self._show_model_state()
        self._revalidate()
        if pbar is not None:
            pbar.close()

    def _report(self, outcome: Outcome) -> bool:
        """Show a failed or cancelled outcome; True when there is a result to show."""
        if outcome.cancelled:
            show_info("DGNO: cancelled; no layer was added or changed")
            return False
        if outcome.error:
            show_error(f"DGNO: {outcome.error}")
            return False
        return True

    def _show_result(self, outcome: Outcome, snap: LayerSnapshot, source: Image | None) -> None:
        if not self._report(outcome):
            return
        key = (id(source), outcome.model_name)
        name = output_name(snap.name, outcome.model_name)
        existing = self._results.get(key)
        if existing is not None and existing.name != name:  # renamed by the user: leave it alone
            existing = None
        kwargs = layer_kwargs(snap, name, outcome.record)
        self.last_layer = self._results[key] = put_layer(self.viewer, existing, outcome.result, kwargs)
        if outcome.record.get("mode") == LAZY:
            show_info(f"DGNO: {self.last_layer.name} computes each plane when you view it")

    def _show_preview(self, outcome: Outcome, snap: LayerSnapshot, source: Image | None, region: Any) -> None:
        if not self._report(outcome):
            return
        name = output_name(snap.name, outcome.model_name, preview=True)
        kwargs = layer_kwargs(snap, name, outcome.record, translate=region.translate(snap))
        key = id(source)
        self.last_layer = self._previews[key] = put_layer(self.viewer, self._previews.get(key), outcome.result, kwargs)

    def closeEvent(self, event: Any) -> None:  # Qt's name
        self.cancel()
        super().closeEvent(event)
