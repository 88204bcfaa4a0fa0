"""The DGNO deblur widget in a real napari viewer (Xvfb): docking, runs, cancel, lazy mode, preview, bad inputs.

A randomly initialised tiny DGNO saved to a checkpoint file is chosen as a "local file", as a user would.
Images are small (64-pixel planes, one tile each) so every run takes a fraction of a second per plane.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari.utils.notifications import notification_manager
from napari_helpers import ForwardCounter, save_tiny_checkpoint

from napari_dgno import deblur, load_model

pytestmark = pytest.mark.gui
JOB_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


@pytest.fixture
def viewer_widget(make_napari_viewer, checkpoint):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-dgno", "DGNO deblur")
    return viewer, widget


def _stack(planes: int = 3, shape=(64, 64), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((planes, *shape)) * 1000 + 100).astype(np.uint16)


def _wait(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: not widget.busy, timeout=JOB_TIMEOUT_MS)


def _messages(start: int) -> list[str]:
    return [str(n.message) for n in notification_manager.records[start:]]


def _ready(widget, checkpoint, layer) -> None:
    widget.select_model(checkpoint)
    widget.set_device("cpu")
    widget.layer_combo.setCurrentIndex(widget.layer_combo.findText(layer.name))
    assert widget.layer is layer
    assert widget.problems == {}
    assert widget.run_button.isEnabled()


def test_widget_docks_from_manifest_and_preselects_the_suggested_model(viewer_widget):
    from napari_dgno.checkpoints import suggest_models

    viewer, widget = viewer_widget
    assert widget.layer is None
    assert "layer" in widget.problems and not widget.run_button.isEnabled()
    assert "no image layer" in widget.run_button.toolTip()

    viewer.open_sample("napari-dgno", "defocus_stack")
    layer = viewer.layers[0]
    assert widget.layer is layer  # the picker followed the insert
    best, reason = suggest_models(layer)[0]
    assert widget.model.source == best.name
    assert widget.model_reason.text().endswith(reason)
    assert widget.axes_edit.text() == "ZYX"

    layer.name = "renamed stack"
    assert widget.layer_combo.currentText() == "renamed stack"
    viewer.layers.remove(layer)
    assert widget.layer is None and widget.layer_combo.count() == 0 and "layer" in widget.problems
    viewer.add_layer(layer)
    assert widget.layer is layer

    devices = [widget.device_combo.itemData(i) for i in range(widget.device_combo.count())]
    assert devices[-1] == "cpu"
    assert all(torch.zeros(1, device=d) is not None for d in devices)
    cpu_only = torch.version.cuda is None and not torch.backends.mps.is_available()
    assert widget.device_warning.isVisibleTo(widget) == cpu_only
    if cpu_only:
        assert "CPU-only" in widget.device_warning.text()
    assert "fp16" not in [widget.precision_combo.itemText(i) for i in range(widget.precision_combo.count())]


def test_run_adds_a_result_layer_with_geometry_and_provenance(viewer_widget, checkpoint, qtbot):
    viewer, widget = viewer_widget
    data = _stack()
    original = data.copy()
    layer = viewer.add_image(data, name="cells", scale=(2.0, 0.5, 0.25), translate=(1.0, 10.0, 20.0),
                             units=("µm", "µm", "µm"), axis_labels=("Z", "Y", "X"),
                             contrast_limits=(150, 900), colormap="magma")
    _ready(widget, checkpoint, layer)
    widget.run()
    assert widget.busy
    _wait(qtbot, widget)

    out = viewer.layers["cells [DGNO tiny]"]
    assert out is widget.last_layer
    assert out.data.shape == data.shape and out.data.dtype == np.float32
    np.testing.assert_allclose(out.scale, layer.scale)
    np.testing.assert_allclose(out.translate, layer.translate)
    assert out.units == layer.units and out.axis_labels == layer.axis_labels
    assert tuple(out.contrast_limits) == (150, 900) and out.colormap.name == "magma"
    expected = deblur(data, load_model(checkpoint, device="cpu"), axes="ZYX", device="cpu")
    np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-3)

    record = out.metadata["napari_dgno"]
    assert record["model"] == "tiny"
    assert record["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert record["parameters"]["axes"] == "ZYX" and record["parameters"]["overlap"] == 32
    assert record["device"] == "cpu" and record["mode"] == "eager" and record["input_layer"] == "cells"
    assert {"napari", "torch", "napari_dgno"} <= set(record["versions"])

    # the input layer is untouched: same object, same data, display and name
    assert viewer.layers["cells"] is layer and layer.data is data
    np.testing.assert_array_equal(layer.data, original)
    assert tuple(layer.contrast_limits) == (150, 900) and layer.name == "cells"

    # running again with the same model updates the same result layer
    count = len(viewer.layers)
    widget.layer_combo.setCurrentIndex(widget.layer_combo.findText("cells"))
    widget.run()
    _wait(qtbot, widget)
    assert len(viewer.layers) == count and widget.last_layer is out


def test_acceleration_is_offered_per_device_and_recorded(viewer_widget, checkpoint, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(_stack(planes=1)[0], name="plane")
    _ready(widget, checkpoint, layer)
    combo = widget.accelerate_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["auto", "none", "compile"]  # no CUDA graphs on CPU
    assert combo.currentText() == "auto"
    assert "about a minute" in combo.toolTip() and "1.6-2.0x" in combo.toolTip()
    for mode in ("none", "auto"):
        combo.setCurrentText(mode)
        widget.run()
        _wait(qtbot, widget)
        assert widget.last_layer.metadata["napari_dgno"]["parameters"]["accelerate"] == mode


def test_cancel_stops_the_computation_and_adds_nothing(viewer_widget, checkpoint, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(_stack(planes=8), name="long stack")
    _ready(widget, checkpoint, layer)
    before = [lyr.name for lyr in viewer.layers]
    start = len(notification_manager.records)
    with ForwardCounter(pause_at=2) as counter:
        widget.mode_combo.setCurrentIndex(widget.mode_combo.findData("eager"))
        widget.run()
        qtbot.waitUntil(counter.paused.is_set, timeout=JOB_TIMEOUT_MS)
        assert widget.cancel_button.isEnabled()
        widget.cancel()
        counter.resume.set()
        _wait(qtbot, widget)
        assert counter.calls == 2  # stopped at the next tile batch: 6 planes never ran
    assert [lyr.name for lyr in viewer.layers] == before
    assert any("cancelled" in m for m in _messages(start))
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_lazy_mode_computes_only_the_viewed_plane(viewer_widget, checkpoint, qtbot):
    viewer, widget = viewer_widget
    data = _stack(planes=5, seed=1)
    layer = viewer.add_image(data, name="lazy stack", contrast_limits=(0, 1200))
    _ready(widget, checkpoint, layer)
    widget.mode_combo.setCurrentIndex(widget.mode_combo.findData("lazy"))
    viewer.dims.set_current_step(0, 2)
    with ForwardCounter() as counter:
        widget.run()
        _wait(qtbot, widget)
        out = viewer.layers["lazy stack [DGNO tiny]"]
        assert out.metadata["napari_dgno"]["mode"] == "lazy"
        assert hasattr(out.data, "dask")
        assert counter.calls == 1  # one 64x64 plane = one tile: only the plane on screen ran
        viewer.dims.set_current_step(0, 4)
        assert counter.calls == 2
    expected = deblur(data[4], load_model(checkpoint, device="cpu"), device="cpu")
    np.testing.assert_allclose(out.data[4].compute(), expected, rtol=1e-5, atol=1e-3)


def test_preview_deblurs_the_current_plane_and_reuses_its_layer(viewer_widget, checkpoint, qtbot):
    viewer, widget = viewer_widget
    data = _stack(planes=4, seed=2)
    layer = viewer.add_image(data, name="stack", scale=(3.0, 1.0, 1.0))
    _ready(widget, checkpoint, layer)
    model = load_model(checkpoint, device="cpu")
    for plane in (1, 3):
        viewer.dims.set_current_step(0, plane)
        widget.preview()
        _wait(qtbot, widget)
        previews = [lyr for lyr in viewer.layers if lyr.name.endswith("preview]")]
        assert len(previews) == 1
        preview = previews[0]
        assert preview.name == "stack [DGNO tiny preview]"
        assert preview.data.shape == (1, 64, 64)
        np.testing.assert_allclose(preview.translate, (3.0 * plane, 0.0, 0.0))
        np.testing.assert_allclose(preview.data[0], deblur(data[plane], model, device="cpu"), rtol=1e-5, atol=1e-3)
        assert preview.metadata["napari_dgno"]["mode"] == "preview"


def test_bad_inputs_are_explained_not_raised(viewer_widget, checkpoint, qtbot):
    viewer, widget = viewer_widget
    widget.select_model(checkpoint)
    start = len(notification_manager.records)

    # no layers at all
    widget.run()
    assert "no image layer" in " ".join(_messages(start))

    # a Labels layer is not offered: there is still no image to deblur
    viewer.add_labels(np.zeros((32, 32), dtype=np.uint8), name="mask")
    assert widget.layer is None and "layer" in widget.problems
    widget.preview()
    assert len(_messages(start)) == 2

    # a 1-pixel image
    tiny = viewer.add_image(np.ones((1, 1), dtype=np.float32), name="dot")
    assert widget.layer is tiny
    assert "too small" in widget.problems["layer"] and not widget.run_button.isEnabled()
    assert "too small" in widget.run_button.toolTip()

    # a NaN image passes the cheap checks, and the engine's message arrives as a notification
    bad = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    bad[5, 7] = np.nan
    viewer.add_image(bad, name="nan image", contrast_limits=(0, 1))
    widget.layer_combo.setCurrentIndex(widget.layer_combo.findText("nan image"))
    widget.set_device("cpu")
    before = [lyr.name for lyr in viewer.layers]
    widget.run()
    _wait(qtbot, widget)
    errors = [n for n in notification_manager.records[start:] if "NaN" in str(n.message)]
    assert errors and str(errors[-1].severity).lower() == "error"
    assert [lyr.name for lyr in viewer.layers] == before
    assert widget.run_button.isEnabled()  # the widget is usable again


def test_a_model_not_downloaded_needs_fetch_and_offline_fetch_explains_why(viewer_widget, qtbot, monkeypatch,
                                                                             tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    viewer, widget = viewer_widget
    viewer.add_image(_stack(planes=1)[0], name="nuclei")
    widget.select_model("DGNO_BBBC006_w1_Face")
    assert widget.fetch_button.isVisibleTo(widget)
    assert "Fetch" in widget.problems["model"] and not widget.run_button.isEnabled()
    start = len(notification_manager.records)
    widget.fetch()
    _wait(qtbot, widget)
    errors = [str(n.message) for n in notification_manager.records[start:] if "HF_HUB_OFFLINE" in str(n.message)]
    assert errors and "DGNO_BBBC006_w1_Face" in errors[-1]
    assert "Fetch" in widget.problems["model"]  # still not available, still explained
