"""`napari-dgno deblur` on real files with a real (tiny) checkpoint: output, metadata, refusals, Ctrl-C."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
import torch

from napari_dgno import DGNO, __version__
from napari_dgno.cli import main
from napari_dgno.engine import deblur
from napari_dgno.io import read_image
from napari_dgno.model.configs import tiny_network_g

pytest.importorskip("napari_dgno.checkpoints")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"params": DGNO(**tiny_network_g()).state_dict()}, path)
    return path


def _imagej_stack(path, planes=2, seed=0):
    data = (np.random.default_rng(seed).random((planes, 64, 64)) * 4000 + 100).astype(np.uint16)
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.1625, 1 / 0.1625),
                     metadata={"axes": "ZYX", "spacing": 0.5, "unit": "micron"})
    return data


def _cli(*args):
    return main(["deblur", *map(str, args), "--device", "cpu", "--tile", "64", "--overlap", "16", "-q"])


@pytest.mark.parametrize("output", ["out.tif", "out.ome.tif"])
def test_cli_round_trips_tiff_and_ome_tiff_with_metadata(tmp_path, checkpoint, output, capsys):
    data = _imagej_stack(tmp_path / "in.tif")
    assert _cli(tmp_path / "in.tif", "-o", tmp_path / output, "--model", checkpoint) == 0
    assert "->" in capsys.readouterr().err
    result = read_image(tmp_path / output)
    assert result.metadata["format"] == ("ome" if output.endswith("ome.tif") else "imagej")
    assert result.axes == "ZYX" and result.data.dtype == np.float32 and result.data.shape == data.shape
    assert result.scale == pytest.approx({"Z": 0.5, "Y": 0.1625, "X": 0.1625}, rel=1e-7)
    assert result.units == {"Z": "µm", "Y": "µm", "X": "µm"}
    record = result.metadata["napari_dgno"]
    assert record["model"] == "tiny"
    assert record["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert record["parameters"] == {"axes": "ZYX", "tile": 64, "overlap": 16, "batch_size": 1, "device": "cpu",
                                    "precision": "fp32", "accelerate": "auto"}
    assert record["versions"]["napari_dgno"] == __version__ and record["versions"]["torch"] == torch.__version__
    assert record["input"] == str((tmp_path / "in.tif").resolve()) and record["date"].startswith("20")
    expected = deblur(data, str(checkpoint), axes="ZYX", tile=64, overlap=16, device="cpu")
    np.testing.assert_allclose(result.data.compute(), expected, rtol=1e-5, atol=1e-3)


def test_cli_refuses_to_overwrite_without_the_flag(tmp_path, checkpoint, capsys):
    _imagej_stack(tmp_path / "in.tif", planes=1)
    (tmp_path / "out.tif").write_bytes(b"precious")
    assert _cli(tmp_path / "in.tif", "-o", tmp_path / "out.tif", "--model", checkpoint) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "out.tif").read_bytes() == b"precious"
    assert _cli(tmp_path / "in.tif", "-o", tmp_path / "out.tif", "--model", checkpoint, "--overwrite") == 0
    assert read_image(tmp_path / "out.tif").data.shape == (64, 64)


def test_cli_processes_a_folder_and_reports_bad_files(tmp_path, checkpoint, capsys):
    (tmp_path / "in").mkdir()
    a = _imagej_stack(tmp_path / "in" / "a.tif", planes=1, seed=1)
    tifffile.imwrite(tmp_path / "in" / "b.ome.tif", a[0], metadata={"axes": "YX", "PhysicalSizeX": 0.3,
                                                                     "PhysicalSizeY": 0.3})
    (tmp_path / "in" / "broken.tif").write_text("not an image")
    (tmp_path / "in" / "notes.txt").write_text("ignored")
    assert _cli(tmp_path / "in", "-o", tmp_path / "out", "--model", checkpoint) == 1  # one file failed
    err = capsys.readouterr().err
    assert "broken.tif" in err and "1 of 3 files failed" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.tif", "b.ome.tif"]
    assert read_image(tmp_path / "out" / "b.ome.tif").scale == {"X": 0.3, "Y": 0.3}


@pytest.mark.parametrize("args,message", [
    (["missing.tif", "-o", "out.tif"], "does not exist"),
    (["in.tif", "-o", "out.png"], "must end in .tif"),
    (["in.tif", "-o", "in.tif"], "choose another name"),
    (["in.tif", "-o", "out.tif", "--model", "no-such-model"], "no model named 'no-such-model'"),
    (["in.tif", "-o", "out.tif", "--model", "missing.pth"], "does not exist"),
    (["in.tif", "-o", "out.tif", "--axes", "ZYX"], "axes 'ZYX' has 3 letters"),
])
def test_cli_bad_requests_give_one_line_errors(tmp_path, checkpoint, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    _imagej_stack(tmp_path / "in.tif", planes=1)
    if "--model" not in args:
        args = [*args, "--model", str(checkpoint)]
    assert _cli(*args) in (1, 2)
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


def test_cli_on_a_dask_cluster_matches_the_local_run(tmp_path, checkpoint):
    distributed = pytest.importorskip("distributed")
    data = _imagej_stack(tmp_path / "in.tif", planes=4)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as cluster:
        code = _cli(tmp_path / "in.tif", "-o", tmp_path / "out.tif", "--model", checkpoint,
                    "--scheduler", cluster.scheduler_address)
    assert code == 0
    result = read_image(tmp_path / "out.tif")
    assert result.metadata["napari_dgno"]["scheduler"].startswith("tcp://")
    expected = deblur(data, str(checkpoint), tile=64, overlap=16, device="cpu")
    np.testing.assert_allclose(result.data.compute(), expected, rtol=0, atol=1e-3 * np.ptp(expected))


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery differs on Windows")
def test_ctrl_c_leaves_no_partial_output(tmp_path, checkpoint):
    _imagej_stack(tmp_path / "in.tif", planes=40)
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from napari_dgno.cli import main; sys.exit(main())",
         "deblur", str(tmp_path / "in.tif"), "-o", str(tmp_path / "out.tif"),
         "--model", str(checkpoint), "--device", "cpu", "--tile", "64"],
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(".partial") for p in tmp_path.iterdir()):  # writing has started
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "nothing partial was written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]
    assert not os.path.exists(tmp_path / "out.tif")
