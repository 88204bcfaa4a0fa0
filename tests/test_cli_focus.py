"""`napari-dgno focus` on real TIFF files written with tifffile."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_dgno.cli import main
from napari_dgno.focus import focus_curve, reference_scores
from napari_dgno.synthetic import make_focus_stack, to_counts

IN_FOCUS = 5


@pytest.fixture(scope="module")
def series():
    return make_focus_stack((8, 96, 96), kind="nuclei", in_focus=IN_FOCUS, rng=3)


@pytest.fixture
def stack_file(tmp_path, series):
    """A 16-bit ImageJ hyperstack with 0.5 µm z-steps, as a camera and Fiji would save it."""
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, to_counts(series.stack, full_scale=1000.0), imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"axes": "ZYX", "spacing": 0.5, "unit": "um"})
    return path


@pytest.fixture
def result_file(tmp_path, series):
    """A float32 stack of the same shape whose sharpest plane is another one (the input upside down)."""
    restored = series.stack[::-1].astype(np.float32) * 1000 + 100
    path = tmp_path / "result.tif"
    tifffile.imwrite(path, restored, imagej=True, metadata={"axes": "ZYX"})
    return path


def _table_rows(out: str) -> dict[int, list[str]]:
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0].isdigit() and len(parts) >= 8:
            rows[int(parts[0])] = parts
    return rows


def test_prints_a_row_per_plane_and_the_best_plane(stack_file, capsys):
    assert main(["focus", str(stack_file), "-q"]) == 0
    out = capsys.readouterr().out
    rows = _table_rows(out)
    assert sorted(rows) == list(range(8))
    assert f"best-focus plane: input {IN_FOCUS}" in out
    assert rows[IN_FOCUS][1] == f"{IN_FOCUS * 0.5:.2f}"                 # z in µm from the file's spacing
    assert rows[IN_FOCUS][4] == "inf" and rows[IN_FOCUS][5] == "1.0000"  # the reference scores itself
    assert "reference" in out.splitlines()[1 + IN_FOCUS + 1]
    data = tifffile.imread(stack_file)
    expected = focus_curve(data)
    printed = [float(rows[i][2]) for i in range(8)]
    np.testing.assert_allclose(printed, expected, rtol=1e-3)


def test_with_result_reference_plane_and_csv(stack_file, result_file, tmp_path, capsys):
    out_csv = tmp_path / "focus.csv"
    code = main(["focus", str(stack_file), "--result", str(result_file), "--reference-plane", "2",
                 "--measure", "tenengrad", "--csv", str(out_csv), "-q"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"best-focus plane: input {IN_FOCUS}, result {7 - IN_FOCUS}" in out
    assert "reference for PSNR/SSIM: input plane 2 (chosen)" in out
    with out_csv.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    assert [int(r["plane"]) for r in records] == list(range(8))
    assert {"plane", "z_um", "measure", "focus_input", "focus_result", "psnr_input", "ssim_input", "psnr_result",
            "ssim_result"} == set(records[0])
    assert all(r["measure"] == "tenengrad" for r in records)
    data, result = tifffile.imread(stack_file), tifffile.imread(result_file)
    np.testing.assert_allclose([float(r["focus_result"]) for r in records], focus_curve(result, "tenengrad"),
                               rtol=1e-9)
    ref = data[2].astype(np.float64)
    expected = reference_scores(result, ref, data_range=float(ref.max() - ref.min()))
    np.testing.assert_allclose([float(r["ssim_result"]) for r in records], expected["ssim"], rtol=1e-9)
    assert records[2]["psnr_input"] == "inf"
    # an existing CSV is kept unless --overwrite
    assert main(["focus", str(stack_file), "--csv", str(out_csv), "-q"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["focus", str(stack_file), "--csv", str(out_csv), "--overwrite", "-q",
                 "--reference-plane", "none"]) == 0
    assert out_csv.read_text().splitlines()[1].endswith(",,,,,")        # no result, no scores


def test_multichannel_files_need_a_channel(tmp_path, series, capsys):
    path = tmp_path / "zcyx.tif"
    two = np.stack([series.stack, series.stack[::-1]], axis=1).astype(np.float32)   # channel 1 focused elsewhere
    tifffile.imwrite(path, two, imagej=True, metadata={"axes": "ZCYX"})
    assert main(["focus", str(path), "-q"]) == 2
    err = capsys.readouterr().err
    assert "2 channels" in err and "--channel N" in err
    assert main(["focus", str(path), "--channel", "1", "-q"]) == 0
    assert f"best-focus plane: input {7 - IN_FOCUS}" in capsys.readouterr().out
    assert main(["focus", str(path), "--channel", "2", "-q"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_clear_errors(stack_file, tmp_path, series, capsys):
    flat = tmp_path / "plane.tif"
    tifffile.imwrite(flat, series.stack[0])
    assert main(["focus", str(flat), "-q"]) == 2
    assert "not a z-stack" in capsys.readouterr().err

    other = tmp_path / "other.tif"
    tifffile.imwrite(other, series.stack[:, :64], imagej=True, metadata={"axes": "ZYX"})
    assert main(["focus", str(stack_file), "--result", str(other), "-q"]) == 2
    assert "planes of" in capsys.readouterr().err

    assert main(["focus", str(stack_file), "--reference-plane", "8", "-q"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["focus", str(stack_file), "--reference-plane", "best", "-q"]) == 2
    assert "--reference-plane" in capsys.readouterr().err

    assert main(["focus", str(tmp_path / "missing.tif"), "-q"]) == 2
    assert "does not exist" in capsys.readouterr().err

    assert main(["focus", str(stack_file), "--axes", "ZY", "-q"]) == 2
    assert "dimensions" in capsys.readouterr().err

    nan = tmp_path / "nan.tif"
    bad = series.stack.copy()
    bad[4, 10, 10] = np.nan
    tifffile.imwrite(nan, bad, imagej=True, metadata={"axes": "ZYX"})
    assert main(["focus", str(nan), "-q"]) == 1
    assert "plane 4" in capsys.readouterr().err

    with pytest.raises(SystemExit):
        main(["focus", str(stack_file), "--measure", "sharpness"])


def test_axes_override_reads_a_time_series_as_focus_series(tmp_path, series, capsys):
    path = tmp_path / "tyx.tif"
    tifffile.imwrite(path, series.stack, imagej=True, metadata={"axes": "TYX"})
    assert main(["focus", str(path), "-q"]) == 2
    assert "--time" in capsys.readouterr().err
    assert main(["focus", str(path), "--axes", "ZYX", "-q"]) == 0
    assert f"best-focus plane: input {IN_FOCUS}" in capsys.readouterr().out


def test_console_script_runs(stack_file):
    script = Path(sys.executable).parent / "napari-dgno"     # the installed console script
    proc = subprocess.run([str(script), "focus", str(stack_file), "-q"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"best-focus plane: input {IN_FOCUS}" in proc.stdout
