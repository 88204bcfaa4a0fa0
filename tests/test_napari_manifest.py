"""The npe2 manifest: valid, shipped with the package, and its menus, samples and widgets reach napari."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

ROOT = Path(__file__).resolve().parents[1]


def _npe2() -> str:
    exe = Path(sys.executable).with_name("npe2")
    return str(exe) if exe.exists() else (shutil.which("npe2") or pytest.skip("npe2 command not found"))


def test_npe2_validate_passes():
    for target in (str(ROOT / "napari.yaml"), "napari-dgno"):
        done = subprocess.run([_npe2(), "validate", target], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "valid" in done.stdout


def test_manifest_is_the_package_resource_and_declares_everything():
    from importlib.resources import files

    from npe2 import PluginManifest

    packaged = files("napari_dgno").joinpath("napari.yaml")
    assert packaged.read_text() == (ROOT / "napari.yaml").read_text()
    manifest = PluginManifest.from_file(ROOT / "napari.yaml")
    contrib = manifest.contributions
    assert {w.display_name for w in contrib.widgets} == {"DGNO deblur", "Compare focal planes", "Focus curve"}
    assert [item.command for item in contrib.menus["napari/layers/filter"]] == ["napari-dgno.deblur_widget"]
    assert set(contrib.readers[0].filename_patterns) >= {"*.tif", "*.tiff", "*.ome.tif"}
    assert contrib.writers[0].layer_types == ["image"]
    assert len(contrib.sample_data) == 3


def test_deblur_widget_is_in_the_layers_filter_menu(make_napari_viewer):
    from napari._app_model import get_app_model

    make_napari_viewer()
    items = get_app_model().menus.get_menu("napari/layers/filter")
    assert "napari-dgno.deblur_widget" in [getattr(i, "command", None) and i.command.id for i in items]


@pytest.mark.gui
def test_samples_open_with_names_scale_and_contrast(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-dgno", "defocus_stack")
    viewer.open_sample("napari-dgno", "pair_2d")
    viewer.open_sample("napari-dgno", "rgb_patch")
    names = [layer.name for layer in viewer.layers]
    assert names == ["DGNO sample: defocus z-stack", "DGNO sample: 2D pair (in focus)",
                     "DGNO sample: 2D pair (defocused)", "DGNO sample: RGB pathology patch"]
    stack = viewer.layers[0]
    assert stack.data.shape == (21, 256, 320) and stack.data.dtype == np.uint16
    assert stack.axis_labels == ("Z", "Y", "X") and stack.scale[0] == 1.0 and 0 < stack.scale[1] < 1
    assert [format(u, "~") for u in stack.units] == ["µm"] * 3
    focus = stack.metadata["synthetic"]["in_focus"]
    lo, hi = stack.contrast_limits
    assert np.percentile(stack.data[focus], 1) >= lo - 1 and np.percentile(stack.data[focus], 99) <= hi
    assert viewer.layers["DGNO sample: RGB pathology patch"].rgb
    pair = viewer.layers["DGNO sample: 2D pair (defocused)"]
    assert pair.data.shape == viewer.layers["DGNO sample: 2D pair (in focus)"].data.shape
