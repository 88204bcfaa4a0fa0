"""The napari reader and writer on real TIFF files: lazy opening, scale, axes, channels, provenance round trip."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

pytest.importorskip("napari")

from napari_dgno.io import read_image  # noqa: E402

pytestmark = pytest.mark.gui


def _ome_stack(path, data, axes, *, pixel=(0.5, 0.25, 0.25), channels=None):
    meta = {"axes": axes, "PhysicalSizeZ": pixel[0], "PhysicalSizeZUnit": "µm",
            "PhysicalSizeY": pixel[1], "PhysicalSizeYUnit": "µm", "PhysicalSizeX": pixel[2],
            "PhysicalSizeXUnit": "µm"}
    if channels:
        meta["Channel"] = {"Name": channels}
    tifffile.imwrite(path, data, ome=True, metadata=meta, photometric="minisblack")
    return path


def test_reader_opens_an_ome_tiff_lazily_with_physical_scale(make_napari_viewer, tmp_path):
    data = np.arange(4 * 32 * 48, dtype=np.uint16).reshape(4, 32, 48)
    path = _ome_stack(tmp_path / "stack.ome.tif", data, "ZYX")
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin="napari-dgno")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.name == "stack"
    assert hasattr(layer.data, "dask")  # lazy: nothing was read up front
    np.testing.assert_allclose(layer.scale, (0.5, 0.25, 0.25))
    assert [format(u, "~") for u in layer.units] == ["µm", "µm", "µm"]
    assert layer.axis_labels == ("Z", "Y", "X")
    np.testing.assert_array_equal(np.asarray(layer.data), data)


def test_reader_splits_channels_by_name_and_keeps_rgb_together(make_napari_viewer, tmp_path):
    rng = np.random.default_rng(0)
    two = rng.integers(0, 4000, (3, 2, 32, 40), dtype=np.uint16)  # ZCYX
    path = _ome_stack(tmp_path / "two.ome.tiff", two, "ZCYX", channels=["DAPI", "phalloidin"])
    rgb = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
    rgb_path = tmp_path / "he.tif"
    tifffile.imwrite(rgb_path, rgb, photometric="rgb")
    viewer = make_napari_viewer()

    layers = viewer.open(path, plugin="napari-dgno")
    assert [lyr.name for lyr in layers] == ["two [DAPI]", "two [phalloidin]"]
    for index, layer in enumerate(layers):
        assert layer.data.shape == (3, 32, 40)
        np.testing.assert_allclose(layer.scale, (0.5, 0.25, 0.25))
        np.testing.assert_array_equal(np.asarray(layer.data), two[:, index])

    (colour,) = viewer.open(rgb_path, plugin="napari-dgno")
    assert colour.rgb and colour.data.shape == (40, 48, 3) and colour.name == "he"


def test_writer_round_trips_scale_axes_and_provenance(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    data = np.random.default_rng(1).random((3, 24, 40)).astype(np.float32)
    record = {"model": "tiny", "sha256": "ab" * 32, "parameters": {"tile": 256, "overlap": 32}}
    viewer.add_image(data, name="result", scale=(2.0, 0.3, 0.3), units=("µm", "µm", "µm"),
                     axis_labels=("Z", "Y", "X"), metadata={"napari_dgno": record, "other": object()})
    for name in ("result.ome.tif", "result.tif"):
        out = tmp_path / name
        written = viewer.layers.save(str(out), selected=False, plugin="napari-dgno")
        assert written == [str(out)]
        back = read_image(out)
        assert back.axes == "ZYX"
        assert back.scale == pytest.approx({"Z": 2.0, "Y": 0.3, "X": 0.3})
        assert back.units == {"Z": "µm", "Y": "µm", "X": "µm"}
        assert back.metadata["napari_dgno"] == record
        np.testing.assert_array_equal(back.data.compute(), data)

        (reopened,) = viewer.open(out, plugin="napari-dgno")
        np.testing.assert_allclose(reopened.scale, (2.0, 0.3, 0.3))
        assert reopened.metadata["napari_dgno"] == record
        viewer.layers.remove(reopened)  # save() below writes every layer: keep just the one


def test_reader_is_offered_for_tiff_names_only():
    from napari_dgno._napari.reader import get_reader

    assert get_reader("a/b/stack.ome.tif") is not None
    assert get_reader("STACK.TIFF") is not None
    assert get_reader("image.png") is None
    assert get_reader(["a.tif", "b.tif"]) is None  # stacking several files is napari's job
