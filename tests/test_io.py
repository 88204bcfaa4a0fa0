"""read_image / write_image on real files: lazy reading, metadata round trips, safe writing."""

from __future__ import annotations

import pickle
import threading

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_dgno.engine import Cancelled
from napari_dgno.io import ImageData, read_image, write_image

PROVENANCE = {"model": "demo", "sha256": "00ff", "parameters": {"tile": 256, "overlap": 32}, "date": "2026-01-01"}
SCALE = {"T": 2.5, "Z": 0.5, "Y": 0.1625, "X": 0.1625}
UNITS = {"T": "s", "Z": "µm", "Y": "µm", "X": "µm"}


def _stack(shape, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    return rng.random(shape).astype(dtype)


def _no_leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".partial")] == []


@pytest.mark.parametrize("name,axes,shape,fmt", [
    ("stack.ome.tif", "ZCYX", (3, 2, 40, 50), "ome"),
    ("stack.tif", "ZCYX", (3, 2, 40, 50), "imagej"),
    ("hyper.ome.tiff", "TZCYX", (2, 3, 2, 20, 30), "ome"),
    ("hyper.tif", "TZCYX", (2, 3, 2, 20, 30), "imagej"),
    ("czyx.tif", "CZYX", (2, 3, 20, 30), "shaped"),
    ("rgb.ome.tif", "ZYXC", (2, 20, 30, 3), "ome"),
    ("rgb.tif", "ZYXC", (2, 20, 30, 3), "shaped"),
])
def test_round_trip_keeps_data_axes_scale_units_channels_and_provenance(tmp_path, name, axes, shape, fmt):
    data = _stack(shape)
    names = [f"ch{i}" for i in range(shape[axes.index("C")])]
    path = write_image(tmp_path / name, da.from_array(data, chunks=(1, *data.shape[1:])), axes=axes, scale=SCALE, units=UNITS,
                       channel_names=names, metadata={"napari_dgno": PROVENANCE})
    image = read_image(path)
    assert isinstance(image, ImageData) and isinstance(image.data, da.Array)
    assert image.metadata["format"] == fmt
    assert image.axes == axes and image.data.shape == shape and image.data.dtype == np.float32
    np.testing.assert_array_equal(image.data.compute(), data)
    expected_scale = {a: v for a, v in SCALE.items() if a in axes}
    if fmt == "imagej":  # ImageJ stores pixel sizes as rationals
        assert image.scale == pytest.approx(expected_scale, rel=1e-7)
    else:
        assert image.scale == expected_scale
    assert image.units == {a: u for a, u in UNITS.items() if a in axes}
    assert image.channel_names == names
    assert image.metadata["napari_dgno"] == PROVENANCE
    assert image.path == path


def test_reading_is_lazy_one_chunk_per_page_and_picklable(tmp_path):
    data = _stack((5, 64, 48), np.uint16)
    tifffile.imwrite(tmp_path / "z.tif", data, imagej=True, metadata={"axes": "ZYX"})
    image = read_image(tmp_path / "z.tif")
    assert image.data.chunks == ((1,) * 5, (64,), (48,))
    np.testing.assert_array_equal(image.data[3].compute(), data[3])
    clone = pickle.loads(pickle.dumps(image.data))  # what a dask.distributed worker receives
    np.testing.assert_array_equal(clone[4].compute(), data[4])


def test_plain_multipage_rgb_and_calibrated_tiffs_from_other_tools(tmp_path):
    pages = _stack((4, 30, 20), np.uint16)
    with tifffile.TiffWriter(tmp_path / "pages.tif") as writer:
        for page in pages:
            writer.write(page, photometric="minisblack", metadata=None)
    image = read_image(tmp_path / "pages.tif")
    assert image.axes == "ZYX" and image.scale == {}
    np.testing.assert_array_equal(image.data.compute(), pages)

    rgb = _stack((30, 20, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb", metadata=None)
    assert read_image(tmp_path / "rgb.tif").axes == "YXC"

    tifffile.imwrite(tmp_path / "cm.tif", pages[0], resolution=(1e4 / 0.25, 1e4 / 0.25),
                     resolutionunit="CENTIMETER", metadata=None)
    image = read_image(tmp_path / "cm.tif")
    assert image.scale == pytest.approx({"Y": 0.25, "X": 0.25}) and image.units == {"Y": "µm", "X": "µm"}

    tifffile.imwrite(tmp_path / "dpi.tif", pages[0], resolution=(72, 72), resolutionunit="INCH", metadata=None)
    assert read_image(tmp_path / "dpi.tif").scale == {}  # screen dpi is not a pixel size

    tifffile.imwrite(tmp_path / "ij.tif", pages, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"axes": "ZYX", "spacing": 1.5, "unit": "micron"})
    image = read_image(tmp_path / "ij.tif")
    assert image.scale == pytest.approx({"Z": 1.5, "Y": 0.2, "X": 0.2})
    assert image.units == {"Z": "µm", "Y": "µm", "X": "µm"}


def test_rgba_and_integer_data_keep_their_samples_and_dtype(tmp_path):
    rgba = _stack((30, 20, 4), np.uint8)
    image = read_image(write_image(tmp_path / "rgba.tif", rgba, axes="YXC"))
    assert image.axes == "YXC"
    np.testing.assert_array_equal(image.data.compute(), rgba)
    stack = _stack((3, 30, 20), np.uint16)
    image = read_image(write_image(tmp_path / "u16.tif", stack, axes="ZYX"))
    assert image.data.dtype == np.uint16
    image = read_image(write_image(tmp_path / "f64.tif", stack.astype(np.float64), axes="ZYX"))
    assert image.data.dtype == np.float32


def test_yx_not_last_is_written_with_the_plane_last(tmp_path):
    data = _stack((30, 20, 5))
    image = read_image(write_image(tmp_path / "yxz.tif", data, axes="YXZ", scale={"Z": 2.0}))
    assert image.axes == "ZYX" and image.scale == {"Z": 2.0}
    np.testing.assert_array_equal(image.data.compute(), np.moveaxis(data, -1, 0))


def test_bigtiff_keeps_metadata(tmp_path):
    data = _stack((2, 30, 20))
    path = write_image(tmp_path / "big.tif", data, axes="ZYX", scale={"Z": 3.0}, units={"Z": "µm"},
                       metadata={"napari_dgno": PROVENANCE}, bigtiff=True)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff
    image = read_image(path)
    assert image.axes == "ZYX" and image.scale == {"Z": 3.0} and image.metadata["napari_dgno"] == PROVENANCE


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    path = write_image(tmp_path / "out.tif", _stack((20, 20)), axes="YX")
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_image(path, _stack((20, 20), seed=1), axes="YX")
    replacement = _stack((20, 20), seed=2)
    write_image(path, replacement, axes="YX", overwrite=True)
    np.testing.assert_array_equal(read_image(path).data.compute(), replacement)


def test_cancel_leaves_no_file_and_computes_pages_one_by_one(tmp_path):
    computed = []
    event = threading.Event()

    def page(block, block_info=None):
        computed.append(block_info[0]["array-location"][0][0])
        if len(computed) == 2:
            event.set()
        return block

    data = da.from_array(_stack((10, 30, 20)), chunks=(1, 30, 20)).map_blocks(page, dtype=np.float32)
    with pytest.raises(Cancelled):
        write_image(tmp_path / "out.ome.tif", data, axes="ZYX", cancel=event)
    assert computed == [0, 1]  # stopped before computing the rest: memory is bounded by a page
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_keeps_the_previous_file_intact(tmp_path):
    original = _stack((3, 30, 20))
    path = write_image(tmp_path / "out.tif", original, axes="ZYX")

    def fail_on_third(block, block_info=None):
        if block_info[0]["array-location"][0][0] == 2:
            raise RuntimeError("disk on fire")
        return block

    data = da.from_array(_stack((3, 30, 20), seed=5), chunks=(1, 30, 20)).map_blocks(fail_on_third, dtype=np.float32)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_image(path, data, axes="ZYX", overwrite=True)
    np.testing.assert_array_equal(read_image(path).data.compute(), original)
    assert _no_leftovers(tmp_path)


def test_progress_counts_pages(tmp_path):
    calls = []
    write_image(tmp_path / "p.tif", _stack((2, 3, 10, 10)), axes="TZYX", progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 6) for i in range(1, 7)]


@pytest.mark.parametrize("kwargs,error,message", [
    ({"path": "out.png"}, ValueError, ".tif"),
    ({"path": "missing/out.tif"}, FileNotFoundError, "does not exist"),
    ({"axes": "ZYX"}, ValueError, "one distinct letter per dimension"),
    ({"axes": "ZY"}, ValueError, "must contain Y and X"),
    ({"channel_names": ["a", "b"]}, ValueError, "channel_names"),
    ({"data": np.zeros((0, 4), np.float32)}, ValueError, "empty"),
    ({"data": np.zeros((4, 4), np.complex64)}, ValueError, "cannot write complex64"),
])
def test_bad_write_requests(tmp_path, kwargs, error, message):
    args = {"path": "out.tif", "data": np.zeros((4, 5), np.float32), "axes": "YX", **kwargs}
    with pytest.raises(error, match=message):
        write_image(tmp_path / args.pop("path"), args.pop("data"), **args)
    assert list(tmp_path.iterdir()) == []


def test_bad_read_requests(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "nope.tif")
    (tmp_path / "text.tif").write_text("not a tiff")
    with pytest.raises(ValueError, match="cannot read"):
        read_image(tmp_path / "text.tif")
    with pytest.raises(IsADirectoryError):
        read_image(tmp_path)
