"""Regenerate the README/issue screenshots of the compare and focus-curve docks with the demo model.

    xvfb-run -a python docs/make_screenshots.py      # writes docs/images/compare_demo.png, focus_curve_demo.png

The sample z-stack is deblurred with the bundled demo model through the engine (as the widget's eager
mode does), then the two docks are opened from the plugin manifest and driven through their public API.
"""

from __future__ import annotations

import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_dgno import deblur, load_model
from napari_dgno.synthetic import sample_stack

OUT = Path(__file__).parent / "images"


def wait(predicate, timeout: float = 300.0) -> None:
    end = time.time() + timeout
    while not predicate():
        QApplication.processEvents()
        time.sleep(0.02)
        if time.time() > end:
            raise TimeoutError("the dock did not finish in time")


def main() -> None:
    stack, meta = sample_stack()
    model = load_model("demo", device="cpu")
    result = deblur(stack, model, axes="ZYX")
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1700, 900)
    source = viewer.add_image(stack, name="sample z-stack", scale=meta["scale"], contrast_limits=meta["contrast_limits"])
    viewer.add_image(result, name="sample z-stack [DGNO demo]", scale=meta["scale"],
                     contrast_limits=meta["contrast_limits"], metadata={"napari_dgno": {"input_layer": source.name}})
    viewer.dims.set_current_step(0, meta["in_focus"] + 3)
    _, compare = viewer.window.add_plugin_dock_widget("napari-dgno", "Compare focal planes")
    compare.show_side_by_side()
    wait(lambda: not compare.busy)
    for _ in range(20):
        QApplication.processEvents()
    viewer.screenshot(str(OUT / "compare_demo.png"), canvas_only=False)
    compare.back_to_normal()
    _, focus = viewer.window.add_plugin_dock_widget("napari-dgno", "Focus curve")
    focus.compute_curve()
    wait(lambda: not focus.busy and all(c is not None for c in focus.curves.values()))
    for _ in range(20):
        QApplication.processEvents()
    viewer.screenshot(str(OUT / "focus_curve_demo.png"), canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    main()
