"""A screenshot of the docked widget next to a result, saved to docs/images/widget.png for the README.

Uses the bundled demo model when its weights are installed, else a random tiny DGNO (then the result
panel shows what an untrained network makes of the plane; the layout is what the picture is for).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("napari")

from napari_helpers import save_tiny_checkpoint  # noqa: E402

from napari_dgno import registry  # noqa: E402

pytestmark = pytest.mark.gui
OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "widget.png"


def test_screenshot_of_widget_with_a_result(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1600, 820)
    viewer.open_sample("napari-dgno", "defocus_stack")
    stack = viewer.layers[0]
    plane = stack.metadata["synthetic"]["in_focus"] + 3
    viewer.dims.set_current_step(0, plane)
    _, widget = viewer.window.add_plugin_dock_widget("napari-dgno", "DGNO deblur")
    if registry.DEMO_WEIGHTS.is_file():
        widget.select_model("demo")
    else:
        widget.select_model(save_tiny_checkpoint(tmp_path / "tiny-random.pth"))
    widget.set_device("cpu")
    assert widget.problems == {}
    widget.preview()
    qtbot.waitUntil(lambda: not widget.busy, timeout=180_000)
    result = widget.last_layer
    assert result is not None and result.name.endswith("preview]")
    viewer.layers.selection.active = stack
    for layer in (stack, result):
        layer.name_overlay.visible = True  # each grid panel says what it shows
    canvas = getattr(viewer, "canvas", None)  # napari >= 0.9 moved the grid to viewer.canvas
    (canvas.grid if canvas is not None else viewer.grid).enabled = True
    qtbot.wait(300)
    viewer.reset_view()
    qtbot.wait(300)

    OUT.parent.mkdir(parents=True, exist_ok=True)
    image = viewer.screenshot(str(OUT), canvas_only=False, flash=False)
    assert OUT.is_file() and image.shape[0] >= 600 and image.shape[1] >= 1000
    assert image[..., :3].std() > 10  # not a blank window
