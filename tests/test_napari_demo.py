"""`napari-dgno demo`: headless (forced, and automatic without a display) writes the TIFF, the PNG and a summary."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from napari_helpers import save_tiny_checkpoint

from napari_dgno import registry
from napari_dgno.cli.demo_cmd import has_display
from napari_dgno.io import read_image


def test_demo_without_display_runs_headless_and_writes_both_files(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pth")
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from napari_dgno.cli import main; sys.exit(main())", "demo",
         "--out", str(out), "--model", str(checkpoint),
         "--device", "cpu", "--planes", "2", "--quiet"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    if sys.platform.startswith("linux"):
        assert "no display" in done.stderr and "headless" in done.stderr

    tif, png = out / "deblurred.tif", out / "side_by_side.png"
    assert f"wrote {tif}" in done.stdout and f"wrote {png}" in done.stdout
    image = read_image(tif)
    assert image.axes == "ZYX" and image.data.shape == (2, 256, 320) and image.data.dtype == np.float32
    assert image.scale["Z"] == pytest.approx(1.0) and image.units["X"] == "µm"
    record = image.metadata["napari_dgno"]
    assert record["model"] == "tiny" and record["parameters"]["axes"] == "ZYX" and record["device"] == "cpu"
    assert record["input_planes"] == [12, 14]  # the 2 planes around the shown one (in focus + 3)

    import matplotlib.image

    picture = matplotlib.image.imread(png)
    assert picture.shape[1] > 2 * picture.shape[0]  # three panels side by side
    table = [line for line in done.stdout.splitlines() if line.strip()[:2].strip().isdigit()]
    assert [int(line.split()[0]) for line in table] == [12, 13]  # one row per deblurred plane


def test_demo_reports_missing_weights_clearly(tmp_path, capsys):
    from napari_dgno.cli import main

    missing = tmp_path / "nope.pth"
    assert main(["demo", "--headless", "--out", str(tmp_path / "o"), "--model", str(missing), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "nope.pth" in err and "does not exist" in err
    assert not (tmp_path / "o" / "deblurred.tif").exists()


def test_display_detection_follows_the_environment(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert has_display() is (sys.platform in ("win32", "darwin"))
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert has_display()


@pytest.mark.skipif(not registry.DEMO_WEIGHTS.is_file(), reason="demo weights not trained yet")
def test_demo_with_the_bundled_model_restores_the_defocused_planes(tmp_path):
    """The shipped demo weights sharpen the sample: scored like the paper's BBBC006 test against the truth."""
    from napari_dgno.cli import main
    from napari_dgno.synthetic import sample_stack, sample_stack_truth
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    assert main(["demo", "--headless", "--out", str(tmp_path), "--device", "cpu", "--quiet"]) == 0
    assert (tmp_path / "side_by_side.png").is_file()
    stack, meta = sample_stack()
    result = read_image(tmp_path / "deblurred.tif").data.compute()
    truth = sample_stack_truth()
    truth = (truth - truth.min()) / (truth.max() - truth.min())
    defocus = np.abs(np.asarray(meta["defocus_um"]))
    gains_psnr, gains_ssim = [], []
    for z in np.flatnonzero((defocus >= 2) & (defocus <= 5)):
        lo, hi = float(stack[z].min()), float(stack[z].max())
        blurred = (stack[z] - lo) / (hi - lo)  # the network's input scale
        restored = np.clip((result[z] - lo) / (hi - lo), 0, 1)  # its output, clamped as the paper does
        gains_psnr.append(peak_signal_noise_ratio(truth, restored, data_range=1)
                          - peak_signal_noise_ratio(truth, blurred, data_range=1))
        gains_ssim.append(structural_similarity(truth, restored, data_range=1)
                          - structural_similarity(truth, blurred, data_range=1))
    assert min(gains_psnr) > 2.0, gains_psnr
    assert min(gains_ssim) > 0.2, gains_ssim
