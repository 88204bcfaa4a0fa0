"""Compare widget and focus-curve dock in a real napari viewer (under Xvfb).

Results are built the way the deblur widget names and tags its output; "lazy" results are dask arrays
whose planes run a counting function, so the tests see exactly which planes were computed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from matplotlib.backend_bases import MouseButton, MouseEvent  # noqa: E402
from qtpy.QtCore import QThreadPool  # noqa: E402
from skimage.filters import unsharp_mask  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402

from napari_dgno.synthetic import make_focus_stack  # noqa: E402

pytestmark = pytest.mark.gui

DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
IN_FOCUS = 5


@pytest.fixture(scope="module")
def series():
    return make_focus_stack((9, 64, 64), kind="nuclei", in_focus=IN_FOCUS, rng=3)


def sharpen(planes: np.ndarray) -> np.ndarray:
    """A stand-in restoration (per plane), so the result differs from the input."""
    return np.stack([unsharp_mask(p, radius=2, amount=1.5, preserve_range=True) for p in planes]).astype(np.float32)


class CountingResult:
    """A lazy "result": plane k is computed (and recorded) only when something reads it."""

    def __init__(self, stack: np.ndarray, delay: float = 0.0):
        self.computed: list[int] = []
        self.threads: list[str] = []
        self._lock = threading.Lock()
        self.delay = delay
        self.array = da.map_blocks(self._plane, da.from_array(stack, chunks=(1, *stack.shape[1:])),
                                   dtype=np.float32)

    def _plane(self, block: np.ndarray, block_info=None) -> np.ndarray:
        if block_info is not None and block.size:  # dask's meta probe has no block_info
            with self._lock:
                self.computed.append(int(block_info[0]["chunk-location"][0]))
                self.threads.append(threading.current_thread().name)
            time.sleep(self.delay)
        return sharpen(block)


def add_result(viewer, source, data, model="tiny", tag=True):
    """A layer named and tagged as the deblur widget names and tags its output (its own helpers)."""
    from napari_dgno._napari.output_layers import output_name
    from napari_dgno._napari.provenance import METADATA_KEY

    meta = {METADATA_KEY: {"input_layer": source.name, "model": model}} if tag else {}
    return viewer.add_image(data, name=output_name(source.name, model), metadata=meta, scale=source.scale,
                            contrast_limits=tuple(source.contrast_limits))


def grid(viewer):
    return viewer.canvas.grid


def name_label(viewer, layer) -> str:
    """The text napari draws for a layer's name overlay (what the panel shows)."""
    visuals = viewer.window._qt_viewer.canvas._layer_overlay_to_visual[layer]
    return visuals[layer.name_overlay].node.text


# --- compare widget ------------------------------------------------------------------------------------------

def test_pairs_side_by_side_in_labelled_panels(make_napari_viewer, series):
    from napari_dgno._napari.compare import CompareWidget

    viewer = make_napari_viewer()
    other = viewer.add_image(np.zeros((64, 64)), name="mask")
    inp = viewer.add_image(series.stack, name="nuclei")
    res = add_result(viewer, inp, sharpen(series.stack))
    widget = CompareWidget(viewer)
    assert widget.pairs() == [(inp, res)]

    widget.show_side_by_side()
    g = grid(viewer)
    assert g.enabled
    assert g.actual_shape(viewer.layers) == (1, 2)
    positions = {layer.name: g.position(viewer.layers.index(layer), viewer.layers) for layer in viewer.layers}
    assert positions["nuclei"] == (0, 0)
    assert positions[res.name] == (0, 1)
    assert not other.visible and positions["mask"] == (-1, -1)
    for layer in (inp, res):
        assert layer.name_overlay.visible
        assert name_label(viewer, layer) == layer.name


def test_pairing_by_name_or_by_metadata(make_napari_viewer, series):
    from napari_dgno._napari.compare import CompareWidget

    viewer = make_napari_viewer()
    a = viewer.add_image(series.stack, name="a")
    b = viewer.add_image(series.stack * 2, name="b")
    by_name = add_result(viewer, a, sharpen(series.stack), tag=False)
    by_meta = viewer.add_image(sharpen(series.stack), name="renamed by the user",
                               metadata={"napari_dgno": {"input_layer": "b"}})
    viewer.add_image(np.zeros((3, 8, 8)), name="a [DGNO wrong shape]")
    widget = CompareWidget(viewer)
    assert widget.pairs() == [(a, by_name), (b, by_meta)]
    # choosing an input picks its result; pairs can be edited
    widget.input_combo.set_layer(b)
    assert widget.result_combo.layer() is by_meta
    widget.remove_pair(0)
    assert widget.pairs() == [(b, by_meta)]
    widget.add_pair(a, by_meta)  # by_meta cannot fill two panels
    widget.show_side_by_side()
    assert "two pairs" in widget.status.text() and not grid(viewer).enabled
    widget.remove_pair(1)
    widget.add_pair(a, by_name)
    widget.show_side_by_side()
    assert grid(viewer).actual_shape(viewer.layers) == (2, 2)
    with pytest.raises(ValueError, match="shape"):
        widget.add_pair(a, viewer.layers["a [DGNO wrong shape]"])


def test_two_results_of_one_input_share_its_row(make_napari_viewer, series):
    from napari_dgno._napari.compare import CompareWidget

    viewer = make_napari_viewer()
    inp = viewer.add_image(series.stack, name="nuclei")
    r1 = add_result(viewer, inp, sharpen(series.stack), model="face")
    r2 = add_result(viewer, inp, sharpen(series.stack) * 0.5, model="cell")
    other = viewer.add_image(series.stack[:, ::-1].copy(), name="second")
    r3 = add_result(viewer, other, sharpen(series.stack), model="face")
    widget = CompareWidget(viewer)
    widget.show_side_by_side()
    g = grid(viewer)
    where = {layer.name: g.position(viewer.layers.index(layer), viewer.layers) for layer in viewer.layers}
    assert g.actual_shape(viewer.layers) == (2, 3)
    assert [where[x.name] for x in (inp, r1, r2)] == [(0, 0), (0, 1), (0, 2)]
    assert [where[x.name] for x in (other, r3)] == [(1, 0), (1, 1)]  # a blank filler keeps rows aligned
    filler = next(layer for layer in viewer.layers if where[layer.name] == (1, 2))
    assert not filler.name_overlay.visible


def test_z_zoom_and_contrast_are_linked(make_napari_viewer, series):
    from napari_dgno._napari.compare import CompareWidget

    viewer = make_napari_viewer()
    inp = viewer.add_image(series.stack, name="nuclei")
    res = add_result(viewer, inp, sharpen(series.stack))
    inp2 = viewer.add_image(series.stack * 3, name="bright")
    res2 = add_result(viewer, inp2, sharpen(series.stack * 3))
    res.contrast_limits = (0.0, 2.0)
    widget = CompareWidget(viewer)
    widget.show_side_by_side()
    assert res.contrast_limits == inp.contrast_limits  # the result starts with the input's contrast

    for z in (2, 7):
        viewer.dims.set_current_step(0, z)
        np.testing.assert_array_equal(inp._data_view, series.stack[z])
        np.testing.assert_array_equal(res._data_view, res.data[z])
        np.testing.assert_array_equal(res2._data_view, res2.data[z])

    inp.contrast_limits = (0.1, 0.4)
    inp.gamma = 0.7
    assert res.contrast_limits == [0.1, 0.4] and res.gamma == 0.7
    assert res2.contrast_limits != [0.1, 0.4] and inp2.contrast_limits != [0.1, 0.4]  # pairs independent

    widget.across_check.setChecked(True)
    inp.contrast_limits = (0.05, 0.5)
    assert inp2.contrast_limits == res2.contrast_limits == res.contrast_limits == [0.05, 0.5]

    # every panel's view follows the viewer's one camera: zooming or panning moves them together
    camera = viewer.scene.camera
    camera.zoom, camera.center = 3.0, (0.0, 20.0, 30.0)
    views = viewer.window._qt_viewer.canvas.grid_cameras
    assert len(views) == 4
    for view in views:
        assert view.zoom == pytest.approx(3.0, rel=1e-3)
        assert view.center[-2:] == pytest.approx((20.0, 30.0), abs=1e-3)


def test_back_to_normal_view_restores_everything(make_napari_viewer, series):
    from napari_dgno._napari.compare import CompareWidget

    viewer = make_napari_viewer()
    hidden = viewer.add_image(np.ones((64, 64)), name="hidden", visible=False)
    inp = viewer.add_image(series.stack, name="nuclei")
    labels = viewer.add_labels(np.zeros((9, 64, 64), dtype=np.uint8), name="labels")
    res = add_result(viewer, inp, sharpen(series.stack))
    viewer.layers.move(viewer.layers.index(res), 0)  # the user's own order
    labels.name_overlay.visible = True
    g = grid(viewer)
    g.shape, g.stride, g.spacing = (2, -1), 2, 5.0
    viewer.layers.selection = {labels}
    viewer.scene.camera.zoom, viewer.scene.camera.center = 2.5, (0.0, 10.0, 12.0)
    before = {
        "camera": (viewer.scene.camera.zoom, viewer.scene.camera.center),
        "order": [layer.name for layer in viewer.layers],
        "visible": [layer.visible for layer in viewer.layers],
        "names": [layer.name_overlay.visible for layer in viewer.layers],
        "grid": (g.enabled, g.shape, g.stride, g.spacing),
    }
    widget = CompareWidget(viewer)
    widget.reference_check.setChecked(True)
    widget.reference_plane.setValue(2)
    widget.show_side_by_side()
    assert len(viewer.layers) == 5 and g.enabled  # + the reference panel
    inp.contrast_limits = (0.2, 0.3)

    widget.back_to_normal()
    assert [layer.name for layer in viewer.layers] == before["order"]
    assert [layer.visible for layer in viewer.layers] == before["visible"]
    assert [layer.name_overlay.visible for layer in viewer.layers] == before["names"]
    assert (g.enabled, g.shape, g.stride, g.spacing) == before["grid"]
    assert (viewer.scene.camera.zoom, viewer.scene.camera.center) == before["camera"]
    assert set(viewer.layers.selection) == {labels} and hidden in viewer.layers
    inp.contrast_limits = (0.0, 0.9)
    assert res.contrast_limits == [0.2, 0.3]  # no longer linked


def test_reference_panel_is_the_best_focused_plane(make_napari_viewer, qtbot, series):
    from napari_dgno._napari.compare import CompareWidget

    viewer = make_napari_viewer()
    inp = viewer.add_image(series.stack, name="nuclei", scale=(2.0, 0.5, 0.5))
    add_result(viewer, inp, sharpen(series.stack))
    widget = CompareWidget(viewer)
    widget.reference_check.setChecked(True)
    widget.show_side_by_side()
    qtbot.waitUntil(lambda: len(viewer.layers) == 3 and not widget.busy, timeout=10_000)
    reference = viewer.layers[-1]
    np.testing.assert_array_equal(reference.data, series.stack[IN_FOCUS])
    assert f"z={IN_FOCUS}" in reference.name and reference.name_overlay.visible
    assert tuple(reference.scale) == (0.5, 0.5)
    g = grid(viewer)
    assert g.actual_shape(viewer.layers) == (1, 3)
    assert g.position(viewer.layers.index(reference), viewer.layers) == (0, 2)
    for z in (0, 8):  # a 2-D layer: the same plane at every z
        viewer.dims.set_current_step(0, z)
        np.testing.assert_array_equal(reference._data_view, series.stack[IN_FOCUS])
    inp.contrast_limits = (0.1, 0.2)
    assert reference.contrast_limits == [0.1, 0.2]


def test_rgb_stacks(make_napari_viewer, qtbot, series):
    from napari_dgno._napari.compare import CompareWidget
    from napari_dgno._napari.focus_dock import FocusCurveWidget

    viewer = make_napari_viewer()
    rgb = (np.clip(series.stack, 0, 1)[..., None] * np.array([255, 180, 90])).astype(np.uint8)  # ZYXC
    original = rgb.copy()
    inp = viewer.add_image(rgb, name="slide", rgb=True)
    add_result(viewer, inp, rgb.astype(np.float32))
    compare = CompareWidget(viewer)
    compare.reference_check.setChecked(True)
    compare.show_side_by_side()
    qtbot.waitUntil(lambda: len(viewer.layers) == 3 and not compare.busy, timeout=10_000)
    reference = viewer.layers[-1]
    assert reference.rgb and reference.data.shape == (64, 64, 3)
    np.testing.assert_array_equal(reference.data, rgb[IN_FOCUS])
    compare.back_to_normal()

    dock = FocusCurveWidget(viewer)
    qtbot.waitUntil(lambda: all(c is not None for c in dock.curves.values()), timeout=10_000)
    assert int(np.argmax(dock.curves["input"])) == IN_FOCUS
    np.testing.assert_array_equal(inp.data, original)  # the input is read, never modified


def test_two_dimensional_layers_and_clear_errors(make_napari_viewer, series):
    from napari_dgno._napari.compare import CompareWidget

    viewer = make_napari_viewer()
    inp = viewer.add_image(series.stack[0], name="plane")
    add_result(viewer, inp, sharpen(series.stack[:1])[0])
    widget = CompareWidget(viewer)
    widget.reference_check.setChecked(True)
    widget.show_side_by_side()
    assert "2-D" in widget.status.text() and not grid(viewer).enabled
    widget.reference_check.setChecked(False)
    widget.show_side_by_side()
    assert grid(viewer).actual_shape(viewer.layers) == (1, 2)

    from napari_dgno._napari.focus_dock import FocusCurveWidget

    dock = FocusCurveWidget(viewer)
    assert "2-D" in dock.status.text() and dock.curves == {} and dock.plot.curves == {}
    stack = viewer.add_image(series.stack, name="stack")
    other = viewer.add_image(series.stack[:4], name="short")
    dock.select(stack, other)
    assert "shape" in dock.status.text() and "short" in dock.status.text()


def test_lazy_result_only_shown_planes_are_computed(make_napari_viewer, qtbot, series):
    from napari_dgno._napari.compare import CompareWidget
    from napari_dgno._napari.focus_dock import FocusCurveWidget

    viewer = make_napari_viewer()
    lazy = CountingResult(series.stack)
    inp = viewer.add_image(series.stack, name="nuclei")
    res = add_result(viewer, inp, lazy.array)
    res.visible = False
    viewer.dims.set_current_step(0, 1)
    lazy.computed.clear()

    widget = CompareWidget(viewer)
    widget.reference_check.setChecked(True)  # computed from the input, never from the result
    widget.show_side_by_side()
    qtbot.waitUntil(lambda: len(viewer.layers) == 3 and not widget.busy, timeout=10_000)
    viewer.dims.set_current_step(0, 3)
    inp.contrast_limits = (0.1, 0.3)
    widget.back_to_normal()
    assert set(lazy.computed) <= {1, 3}
    assert 3 in lazy.computed

    dock = FocusCurveWidget(viewer)
    dock.select(inp, res)
    qtbot.waitUntil(lambda: dock.curves["input"] is not None and not dock.busy, timeout=10_000)
    assert dock.curves["result"] is None and "Compute curve" in dock.status.text()
    assert set(lazy.computed) <= {1, 3}
    lazy.threads.clear()
    with dask.config.set(scheduler="synchronous"):  # planes run in the thread that asks for them
        dock.compute_curve()
        qtbot.waitUntil(lambda: dock.curves["result"] is not None, timeout=20_000)
    assert set(lazy.computed) == set(range(9))
    assert lazy.threads and threading.main_thread().name not in lazy.threads  # never on the main thread


def test_with_the_deblur_widgets_lazy_output(make_napari_viewer, qtbot, series, tmp_path):
    """End to end: a real (tiny, untrained) DGNO run in the deblur widget's lazy mode, then both docks."""
    from napari_helpers import ForwardCounter, save_tiny_checkpoint

    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pth")
    viewer = make_napari_viewer()
    stack = (series.stack * 1000 + 100).astype(np.uint16)
    inp = viewer.add_image(stack, name="stack")
    _, deblur_widget = viewer.window.add_plugin_dock_widget("napari-dgno", "DGNO deblur")
    deblur_widget.select_model(checkpoint)
    deblur_widget.set_device("cpu")
    deblur_widget.mode_combo.setCurrentIndex(deblur_widget.mode_combo.findData("lazy"))
    viewer.dims.set_current_step(0, 2)
    with ForwardCounter() as forwards:
        deblur_widget.run()
        qtbot.waitUntil(lambda: not deblur_widget.busy, timeout=60_000)
        result = viewer.layers["stack [DGNO tiny]"]
        shown = forwards.calls  # the plane on screen (one 64x64 tile: one forward per plane)

        _, compare = viewer.window.add_plugin_dock_widget("napari-dgno", "Compare focal planes")
        assert compare.pairs() == [(inp, result)]
        compare.reference_check.setChecked(True)
        compare.show_side_by_side()
        qtbot.waitUntil(lambda: len(viewer.layers) == 3 and not compare.busy, timeout=10_000)
        viewer.dims.set_current_step(0, 6)
        assert forwards.calls == shown + 1  # only the newly shown plane ran

        _, dock = viewer.window.add_plugin_dock_widget("napari-dgno", "Focus curve")
        assert dock.input_combo.layer() is inp and dock.result_combo.layer() is result
        qtbot.waitUntil(lambda: dock.curves["input"] is not None and not dock.busy, timeout=10_000)
        assert dock.curves["result"] is None and forwards.calls == shown + 1  # lazy: waits for the button
        dock.compute_curve()
        qtbot.waitUntil(lambda: dock.curves["result"] is not None, timeout=60_000)
        assert shown + 1 < forwards.calls <= shown + 1 + 9
    compare.back_to_normal()
    assert [layer.name for layer in viewer.layers] == ["stack", "stack [DGNO tiny]"]


# --- focus-curve dock ---------------------------------------------------------------------------------------

def click_plot(plot, plane: float, button=MouseButton.LEFT):
    """Simulate a mouse press on the plot at x = plane (in data coordinates)."""
    plot.canvas.draw()
    x, y = plot.axes.transData.transform((plane, np.mean(plot.axes.get_ylim())))
    MouseEvent("button_press_event", plot.canvas, x, y, button=button)._process()


def test_focus_curve_follows_and_drives_the_viewer(make_napari_viewer, qtbot, series):
    from napari_dgno._napari.focus_dock import FocusCurveWidget

    viewer = make_napari_viewer()
    inp = viewer.add_image(series.stack, name="nuclei")
    res = add_result(viewer, inp, sharpen(series.stack))
    dock = FocusCurveWidget(viewer)
    assert dock.input_combo.layer() is inp and dock.result_combo.layer() is res
    qtbot.waitUntil(lambda: all(c is not None for c in dock.curves.values()), timeout=10_000)
    curves = dock.curves
    assert int(np.argmax(curves["input"])) == IN_FOCUS  # the curve peaks at the in-focus plane
    assert set(dock.plot.curves) == {"input", "result"}
    np.testing.assert_array_equal(dock.plot.curves["result"], curves["result"])

    for z in (2, 7):
        viewer.dims.set_current_step(0, z)
        assert dock.plot.marker_x == z
    click_plot(dock.plot, 4.2)
    assert viewer.dims.current_step[0] == 4 and dock.plot.marker_x == 4
    click_plot(dock.plot, 6, button=MouseButton.RIGHT)  # only the left button jumps
    assert viewer.dims.current_step[0] == 4

    dock.measure_combo.setCurrentText("brenner")
    qtbot.waitUntil(lambda: dock.curves["input"] is not None, timeout=10_000)
    assert int(np.argmax(dock.curves["input"])) == IN_FOCUS
    assert not np.allclose(dock.curves["input"], curves["input"])
    assert dock.plot.axes.get_ylabel() == "brenner"


def test_focus_curve_in_scaled_layers_maps_planes(make_napari_viewer, qtbot, series):
    from napari_dgno._napari.focus_dock import FocusCurveWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((20, 64, 64)), name="taller", scale=(0.5, 1, 1))  # world z step 0.5
    inp = viewer.add_image(series.stack, name="nuclei", scale=(1.5, 1, 1), translate=(1.0, 0, 0))
    dock = FocusCurveWidget(viewer)
    dock.select(inp)
    qtbot.waitUntil(lambda: dock.curves["input"] is not None, timeout=10_000)
    for plane in (0, 3, 8):
        dock.go_to_plane(plane)
        assert inp.world_to_data(viewer.dims.point)[0] == pytest.approx(plane)
        assert dock.plot.marker_x == plane


def test_focus_curve_of_the_shown_time_point(make_napari_viewer, qtbot):
    from napari_dgno._napari.focus_dock import FocusCurveWidget

    first = make_focus_stack((7, 48, 48), in_focus=2, rng=1).stack
    second = make_focus_stack((7, 48, 48), in_focus=5, rng=2).stack
    viewer = make_napari_viewer()
    # Z before T, as the axis labels say (the DGNO reader labels axes with letters)
    inp = viewer.add_image(np.stack([first, second], axis=1), name="timelapse", axis_labels=("Z", "T", "Y", "X"))
    dock = FocusCurveWidget(viewer)
    for t, in_focus in ((0, 2), (1, 5)):
        viewer.dims.set_current_step(1, t)
        qtbot.waitUntil(lambda: dock.curves["input"] is not None and not dock.busy, timeout=10_000)
        assert len(dock.curves["input"]) == 7 and int(np.argmax(dock.curves["input"])) == in_focus
    dock.go_to_plane(4)
    assert viewer.dims.current_step[:2] == (4, 1) and dock.plot.marker_x == 4
    assert inp.data.shape == (7, 2, 48, 48)


def test_score_table_against_reference_plane(make_napari_viewer, qtbot, series):
    from napari_dgno._napari.focus_dock import FocusCurveWidget

    viewer = make_napari_viewer()
    inp = viewer.add_image(series.stack, name="nuclei")
    res = add_result(viewer, inp, sharpen(series.stack))
    dock = FocusCurveWidget(viewer)
    qtbot.waitUntil(lambda: dock.curves["input"] is not None and not dock.busy, timeout=10_000)
    assert dock.scores() == {"input": ("—", "—"), "result": ("—", "—")}

    dock.use_best_focus()
    assert dock.reference_spin.value() == IN_FOCUS
    viewer.dims.set_current_step(0, IN_FOCUS)
    qtbot.waitUntil(lambda: dock.scores()["input"][0] != "—", timeout=10_000)
    assert dock.scores()["input"] == ("∞", "1.0000")  # the reference against itself

    viewer.dims.set_current_step(0, 2)
    qtbot.waitUntil(lambda: dock.scores()["result"][0] != "—", timeout=10_000)
    ref = series.stack[IN_FOCUS].astype(np.float64)
    span = ref.max() - ref.min()
    for name, stack in (("input", series.stack), ("result", res.data)):
        plane = stack[2].astype(np.float64)
        psnr, ssim = dock.scores()[name]
        assert float(psnr) == pytest.approx(peak_signal_noise_ratio(ref, plane, data_range=span), abs=0.01)
        assert float(ssim) == pytest.approx(structural_similarity(ref, plane, data_range=span), abs=1e-4)
    assert "z=2" in dock.table_title.text() and f"z={IN_FOCUS}" in dock.table_title.text()

    dock.reference_spin.setValue(-1)
    assert dock.scores()["input"] == ("—", "—")


def test_cancel_stops_a_lazy_curve(make_napari_viewer, qtbot, series):
    from napari_dgno._napari.focus_dock import FocusCurveWidget

    viewer = make_napari_viewer()
    lazy = CountingResult(series.stack, delay=0.3)
    inp = viewer.add_image(series.stack, name="nuclei")
    res = add_result(viewer, inp, lazy.array)
    dock = FocusCurveWidget(viewer)
    dock.select(inp, res)
    qtbot.waitUntil(lambda: dock.curves["input"] is not None and not dock.busy, timeout=10_000)
    lazy.computed.clear()
    dock.compute_curve()
    assert dock.progress.isVisible() or dock.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: len(lazy.computed) >= 1, timeout=10_000)
    dock.cancel()
    assert dock.status.text() == "cancelled" and dock.compute_button.isEnabled()
    pool = QThreadPool.globalInstance()
    qtbot.waitUntil(lambda: pool.activeThreadCount() == 0, timeout=10_000)  # the worker stopped
    qtbot.wait(50)
    assert dock.curves["result"] is None
    assert len(lazy.computed) < 9


# --- screenshots (checked by eye; saved for the docs) -------------------------------------------------------

def test_screenshots(make_napari_viewer, qtbot):
    series = make_focus_stack((15, 192, 192), kind="nuclei", in_focus=9, rng=7)
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1700, 760)
    blurred = np.clip(series.stack, 0, 1).astype(np.float32)
    inp = viewer.add_image(blurred, name="nuclei", colormap="gray")
    # no official weights offline: an honestly named stand-in restoration plays the DGNO result
    add_result(viewer, inp, np.clip(sharpen(blurred), 0, 1), model="stand-in")
    viewer.dims.set_current_step(0, 6)

    _, compare = viewer.window.add_plugin_dock_widget("napari-dgno", "Compare focal planes")  # as users open it
    compare.reference_check.setChecked(True)
    compare.show_side_by_side()
    qtbot.waitUntil(lambda: len(viewer.layers) == 3 and not compare.busy, timeout=10_000)
    assert all(layer.visible for layer in viewer.layers)  # napari hands plugin widgets a proxy viewer
    assert grid(viewer).actual_shape(viewer.layers) == (1, 3)
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    qtbot.wait(200)
    shot = viewer.screenshot(str(DOCS_IMAGES / "compare.png"), canvas_only=False, flash=False)
    assert shot.shape[0] > 300 and shot.std() > 0

    compare.back_to_normal()
    viewer.window.remove_dock_widget(compare)
    _, dock = viewer.window.add_plugin_dock_widget("napari-dgno", "Focus curve")
    qtbot.waitUntil(lambda: all(c is not None for c in dock.curves.values()), timeout=10_000)
    dock.use_best_focus()
    qtbot.waitUntil(lambda: dock.scores()["result"][0] != "—", timeout=10_000)
    qtbot.wait(200)
    shot = viewer.screenshot(str(DOCS_IMAGES / "focus_curve.png"), canvas_only=False, flash=False)
    assert shot.shape[0] > 300 and shot.std() > 0
