"""Real training runs on CPU: a 2-process gloo DDP run under torchrun, kill + resume equal to an
uninterrupted run, overfitting, fine-tuning, and the evaluate/export commands on the checkpoints."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml

from napari_dgno.checkpoints import load_model
from napari_dgno.model.configs import tiny_network_g
from training import evaluate as evaluate_cli
from training import export as export_cli
from training import train as train_cli
from training.config import load_config
from training.data import SampleKey, SyntheticPairs, TrainPatches
from training.distributed import DistInfo
from training.metrics import psnr_float
from training.train import Trainer, build_network, build_optimizer, train_step

REPO = Path(__file__).resolve().parents[1]
RUN = Path("experiments") / "synthetic_smoke"


@pytest.fixture(autouse=True)
def one_thread():
    """In-process runs use one intra-op thread, like each torchrun rank (no oversubscription on 2 cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    env.pop("NAPARI_DGNO_SCAN", None)
    return env


def _train_cmd(*overrides: str, resume: bool = False, nproc: int | None = None) -> list[str]:
    launcher = [sys.executable, "-m", "training.train"]
    if nproc:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                    "-m", "training.train"]
    cmd = [*launcher, "--config", "synthetic_smoke"]
    for item in overrides:
        cmd += ["--set", item]
    return cmd + (["--resume"] if resume else [])


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "train_log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_ddp_two_processes_then_evaluate_and_export(tmp_path, monkeypatch):
    done = subprocess.run(_train_cmd("total_iter=2", nproc=2), cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 rank(s)" in done.stdout
    run = tmp_path / RUN
    ckpt = _weights(run / "models" / "net_g_2.pth")
    assert set(ckpt) >= {"params", "params_ema"}
    assert not any(k.startswith("module.") for k in ckpt["params"])
    assert [r["iter"] for r in _rows(run)] == ["1", "2"]
    # the plugin's loader takes the checkpoint, with the training network configuration
    model = load_model(run / "models" / "net_g_latest.pth", device="cpu", weights="params_ema")
    reference = build_network(load_config("synthetic_smoke")["network_g"])
    reference.load_state_dict(ckpt["params_ema"], strict=True)
    assert model.config == reference.config
    assert all(torch.equal(v, ckpt["params_ema"][k]) for k, v in model.state_dict().items())

    monkeypatch.chdir(tmp_path)
    out_csv = tmp_path / "eval.csv"
    assert evaluate_cli.main(["--config", "synthetic_smoke", "--weights", str(run / "models" / "net_g_2.pth"),
                              "--csv", str(out_csv), "--no-lpips"]) == 0
    rows = list(csv.DictReader(open(out_csv, newline="")))
    assert [r["image"] for r in rows][-1] == "mean" and len(rows) == 3  # the 2 held-out pairs + mean
    assert float(rows[-1]["psnr"]) == pytest.approx(np.mean([float(r["psnr"]) for r in rows[:2]]))

    out = tmp_path / "demo.safetensors"
    assert export_cli.main(["--checkpoint", str(run / "models" / "net_g_latest.pth"), "--out", str(out),
                            "--fp16"]) == 0
    exported = load_model(out, device="cpu")
    assert exported.config == reference.config and exported.info.normalization == "minmax"
    from safetensors import safe_open

    with safe_open(str(out), "pt") as handle:
        meta = handle.metadata()
        assert handle.get_tensor("output.weight").dtype == torch.float16
    assert meta["trained_with"] == "synthetic_smoke" and meta["iterations"] == "2"
    assert float(meta["heldout_psnr"]) > 0 and "heldout_ssim_input" in meta and "fp16_psnr_change" in meta
    for key, value in exported.state_dict().items():
        torch.testing.assert_close(value, ckpt["params_ema"][key].to(value.dtype), atol=2e-3, rtol=1e-3)


def test_killed_run_resumes_exactly(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir(), killed.mkdir()
    reference = subprocess.Popen(_train_cmd("total_iter=4"), cwd=straight, env=_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(_train_cmd("total_iter=1000"), cwd=killed, env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / RUN / "training_states" / "2.state"
    deadline = time.time() + 240
    while not state.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    victim.kill()
    victim.wait()
    assert state.exists(), "the run to kill never saved its first state"
    states = sorted(p.name for p in state.parent.glob("*.state"))
    assert states == ["2.state"], f"killed too late ({states}); nothing left to resume"

    resumed = subprocess.run(_train_cmd("total_iter=4", resume=True), cwd=killed, env=_env(), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed at iteration 2" in resumed.stdout
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-3000:]

    columns = ("iter", "lr", "loss", "l_content", "l_fft")
    expected = [[r[c] for c in columns] for r in _rows(straight / RUN)]
    got = [[r[c] for c in columns] for r in _rows(killed / RUN)]
    assert got == expected and len(got) == 4  # bit-identical losses, rows of the killed run replaced
    a = _weights(straight / RUN / "models" / "net_g_latest.pth")
    b = _weights(killed / RUN / "models" / "net_g_latest.pth")
    for key in ("params", "params_ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])


def test_existing_run_needs_resume_and_fine_tuning_loads_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NAPARI_DGNO_SCAN", raising=False)
    source_net = build_network(tiny_network_g())
    weights = {"params": source_net.state_dict(), "params_ema": source_net.state_dict()}
    (tmp_path / "start.pth").parent.mkdir(exist_ok=True)
    torch.save(weights, tmp_path / "start.pth")
    opt = load_config("synthetic_smoke", [f"init_from={tmp_path / 'start.pth'}"])
    trainer = Trainer(opt, DistInfo(0, 0, 1, torch.device("cpu")))
    for key, value in trainer.net.state_dict().items():
        assert torch.equal(value, weights["params"][key])
    assert all(torch.equal(v, weights["params"][k]) for k, v in trainer.ema.module.state_dict().items())

    state_dir = tmp_path / RUN / "training_states"
    state_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"iter": 3}, state_dir / "3.state")
    assert train_cli.main(["--config", "synthetic_smoke"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    bad_init = ["--config", "synthetic_smoke", "--set", "name=other", "--set", "init_from=no_such_model"]
    assert train_cli.main(bad_init) == 2
    assert "no_such_model" in capsys.readouterr().err


def test_loss_falls_when_overfitting_a_few_pairs():
    torch.manual_seed(0)
    dataset = TrainPatches(SyntheticPairs(64, "mixed", num_pairs=2, seed=3), 64, geometric_augs=False)
    items = [dataset[SampleKey(i, (0, 0, i), 64)] for i in range(2)]
    lq, gt = torch.stack([x["lq"] for x in items]), torch.stack([x["gt"] for x in items])
    net = build_network(tiny_network_g()).train()
    optimizer = build_optimizer(net, {"lr": 3e-4, "weight_decay": 1e-4, "betas": [0.9, 0.999]})
    losses = [train_step(net, lq, gt, optimizer, grad_clip=0.01).total.item() for _ in range(10)]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    net.eval()
    with torch.no_grad():
        restored = net(lq)[-1].clamp(0, 1)
    assert psnr_float(restored.numpy(), gt.numpy()) > psnr_float(lq.numpy(), gt.numpy())


def _bbbc_test_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for site in ("a01_s1",):
        sharp = rng.integers(0, 4000, size=(80, 100)).astype(np.uint16)
        (root / "GT").mkdir(parents=True, exist_ok=True)
        (root / "blur").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "GT" / f"plate_{site}_w1X.tif", sharp)
        for z in ("z0", "z1", "z2"):
            noisy = sharp + rng.integers(0, 500, size=sharp.shape).astype(np.uint16)
            tifffile.imwrite(root / "blur" / f"plate_{site}_w1{z}.tif", noisy)


@pytest.mark.parametrize("engine", ["official", "napari"])
def test_evaluate_bbbc_protocol_with_the_official_tiler(tmp_path, engine):
    _bbbc_test_folder(tmp_path / "BBBC006" / "test")
    config = yaml.safe_load((REPO / "training" / "configs" / "DGNO_BBBC006_w1_Face.yml").read_text())
    config["network_g"] = {"type": "DGNO", **tiny_network_g(), "train_size": 64}  # 80x100 -> 2x2 tiles of 64
    (tmp_path / "tiny_bbbc.yml").write_text(yaml.safe_dump(config))
    net = build_network(config["network_g"])
    torch.save({"params": net.state_dict(), "params_ema": net.state_dict()}, tmp_path / "w.pth")
    out = tmp_path / "metrics.csv"
    code = evaluate_cli.main(["--config", str(tmp_path / "tiny_bbbc.yml"), "--weights", str(tmp_path / "w.pth"),
                              "--input-dir", str(tmp_path / "BBBC006"), "--csv", str(out), "--engine", engine,
                              "--no-lpips"])
    assert code == 0
    rows = list(csv.DictReader(open(out, newline="")))
    assert len(rows) == 4 and rows[-1]["image"] == "mean"
    assert [r["image"] for r in rows[:3]] == ["plate_a01_s1_w1z0.tif", "plate_a01_s1_w1z1.tif", "plate_a01_s1_w1z2.tif"]
    first_blur = tifffile.imread(tmp_path / "BBBC006" / "test" / "blur" / "plate_a01_s1_w1z0.tif").astype(np.float32)
    first_gt = tifffile.imread(tmp_path / "BBBC006" / "test" / "GT" / "plate_a01_s1_w1X.tif").astype(np.float32)
    norm = [(x - x.min()) / (x.max() - x.min()) for x in (first_blur, first_gt)]
    assert float(rows[0]["psnr_input"]) == pytest.approx(psnr_float(*norm), abs=1e-4)
    assert all(np.isfinite(float(r["psnr"])) and 0 < float(r["ssim"]) <= 1 for r in rows)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_training_step_on_cuda():
    net = build_network(tiny_network_g()).cuda().train()
    optimizer = build_optimizer(net, {"lr": 3e-4, "weight_decay": 1e-4, "betas": [0.9, 0.999]})
    lq, gt = torch.rand(2, 1, 128, 128, device="cuda"), torch.rand(2, 1, 128, 128, device="cuda")
    terms = train_step(net, lq, gt, optimizer, grad_clip=0.01, bf16=True)
    assert torch.isfinite(terms.total)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_non_finite_gradients_skip_the_step_and_keep_weights():
    """A batch with NaN pixels must not poison the weights: the step is skipped and reported."""
    torch.manual_seed(0)
    net = build_network(tiny_network_g()).train()
    optimizer = build_optimizer(net, {"lr": 3e-4, "weight_decay": 1e-4, "betas": [0.9, 0.999]})
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lq, gt = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64)
    lq[0, 0, 3, 3] = float("nan")
    terms = train_step(net, lq, gt, optimizer, grad_clip=0.01)
    assert not terms.applied
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    terms = train_step(net, torch.rand(1, 1, 64, 64), gt, optimizer, grad_clip=0.01)
    assert terms.applied and torch.isfinite(terms.total)
    assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_a_run_directory_in_use_is_refused_and_a_stale_lock_taken_over(tmp_path):
    """Workers orphaned by a killed torchrun keep writing; a second run there must not start."""
    import json
    import socket

    run_dir = tmp_path / RUN
    run_dir.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = {"host": socket.gethostname(), "pid": other.pid, "started": "2026-11-27 16:03:42"}
        (run_dir / "run.lock").write_text(json.dumps(lock))
        refused = subprocess.run(_train_cmd("total_iter=2"), cwd=tmp_path, env=_env(), capture_output=True,
                                 text=True, timeout=300)
        assert refused.returncode == 2
        assert f"in use by training process {other.pid}" in refused.stderr and f"kill {other.pid}" in refused.stderr
        assert not (run_dir / "training_states").exists()  # nothing of the other run touched
    finally:
        other.kill()
        other.wait()
    done = subprocess.run(_train_cmd("total_iter=2"), cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"took over run.lock of process {other.pid}" in done.stdout + done.stderr
    assert (run_dir / "training_states" / "2.state").exists()
    assert not (run_dir / "run.lock").exists()  # released when the run ends
