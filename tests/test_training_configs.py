"""Training configs, overrides, schedules and the official tiler (no training run here)."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from napari_dgno.model.configs import tiny_network_g
from napari_dgno.registry import DEMO_NETWORK_G, OFFICIAL_MODELS, get_model_info
from training.config import CONFIG_DIR, ConfigError, load_config
from training.schedule import CosineAnnealingRestartCyclicLR, ProgressiveSchedule, cosine_restart_lr
from training.tiling import blend_tiles, official_tiled_forward, tile_grid, tile_weights


@pytest.mark.parametrize("name", [m.name for m in OFFICIAL_MODELS])
def test_paper_configs_match_registry_and_recipe(name):
    raw = yaml.safe_load((CONFIG_DIR / f"{name}.yml").read_text())
    assert raw["network_g"] == get_model_info(name).network_g
    opt = load_config(name)
    train, data = opt["train"], opt["datasets"]["train"]
    assert opt["name"] == name and opt["manual_seed"] == 100
    assert train["optim_g"] == {"type": "AdamW", "lr": 3e-4, "weight_decay": 1e-4, "betas": [0.9, 0.999]}
    assert train["ema_decay"] == 0.999 and train["grad_clip_norm"] == 0.01 and train["use_grad_clip"]
    assert train["fft_loss_weight"] == 0.1 and train["scheduler"]["eta_mins"] == [3e-4, 1e-6]
    assert data["batch_size_per_gpu"] == 8 and data["gt_size"] == 256
    assert opt["val"]["val_freq"] == 4000 and opt["val"]["center_crop"] == 256
    if "BBBC006" in name:
        assert train["total_iter"] == 60000 and train["scheduler"]["periods"] == [20000, 40000]
        assert data["type"] == "bbbc006" and data["channel"] == get_model_info(name).channel
    else:
        assert train["total_iter"] == 300000 and train["scheduler"]["periods"] == [92000, 208000]
        assert data["mini_batch_sizes"] == [8, 5, 4, 3, 2]
        assert data["gt_sizes"] == [128, 160, 192, 224, 256]
        assert data["iters"] == [92000, 64000, 48000, 36000, 60000]
        assert sum(data["iters"]) == train["total_iter"]


def test_smoke_and_demo_networks_match_the_package():
    smoke = load_config("synthetic_smoke")["network_g"]
    assert {k: v for k, v in smoke.items() if k != "type"} == tiny_network_g()
    assert load_config("demo_synthetic")["network_g"] == DEMO_NETWORK_G


def test_overrides_aliases_and_errors():
    opt = load_config("synthetic_smoke", ["total_iter=7", "scan_backend=torch", "init_from=demo",
                                          "train.optim_g.lr=1e-3", "datasets.train.kind=nuclei"])
    assert opt["train"]["total_iter"] == 7 and opt["train"]["scan_backend"] == "torch"
    assert opt["path"]["init_from"] == "demo"
    assert opt["train"]["optim_g"]["lr"] == pytest.approx(1e-3)  # "1e-3" is a string to YAML 1.1
    assert opt["datasets"]["train"]["kind"] == "nuclei"
    with pytest.raises(ConfigError, match="unknown setting 'totl_iter'"):
        load_config("synthetic_smoke", ["train.totl_iter=3"])
    with pytest.raises(ConfigError, match="scan_backend"):
        load_config("synthetic_smoke", ["scan_backend=cuda-magic"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config("synthetic_smoke", ["total_iter"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("no_such_config")


def test_cosine_restart_schedule_values():
    periods, weights, mins = [20000, 40000], [1, 1], [3e-4, 1e-6]
    # flat first period (eta_min == base lr), then cosine from 3e-4 to 1e-6 over 40k steps
    assert cosine_restart_lr(0, 3e-4, periods, weights, mins) == pytest.approx(3e-4)
    assert cosine_restart_lr(20000, 3e-4, periods, weights, mins) == pytest.approx(3e-4)
    assert cosine_restart_lr(40000, 3e-4, periods, weights, mins) == pytest.approx(1e-6 + 0.5 * (3e-4 - 1e-6))
    assert cosine_restart_lr(60000, 3e-4, periods, weights, mins) == pytest.approx(1e-6)
    # a plain cosine: lr(t) = 0.5 (1 + cos(pi t / T)) for base 1, eta_min 0
    assert cosine_restart_lr(25, 1.0, [100], [1], [0.0]) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = CosineAnnealingRestartCyclicLR(opt, [4, 4], [1, 0.5], [0.0, 0.0])
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [1, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4)), 0,
                0.25 * (1 + math.cos(math.pi / 4)), 0.25, 0.25 * (1 + math.cos(3 * math.pi / 4))]
    assert seen == pytest.approx(expected, abs=1e-12)


def test_progressive_schedule():
    sched = ProgressiveSchedule([8, 5, 2], [128, 160, 256], [3, 2, 4])
    assert [sched.at(i) for i in (1, 3, 4, 5, 6, 9, 50)] == [(8, 128), (8, 128), (5, 160), (5, 160), (2, 256),
                                                              (2, 256), (2, 256)]
    assert [sched.samples_before(i) for i in (1, 2, 4, 6, 7, 12)] == [0, 8, 24, 34, 36, 46]


def test_official_tiler_weights_sum_to_one_for_bbbc_images():
    grid = tile_grid(520, 696, 512)
    assert grid.origins == ((0, 0), (0, 184), (8, 0), (8, 184))
    for dtype, tol in ((torch.float64, 1e-15), (torch.float32, 2e-7)):
        total = blend_tiles(torch.ones(4, 1, 512, 512, dtype=dtype), grid)
        assert torch.allclose(total, torch.ones_like(total), atol=tol, rtol=0)
    weights = tile_weights(grid, dtype=torch.float64)
    assert weights[0, 0, 0] == 1 and weights[0, 8, 0] == 1 and weights[0, 511, 0] == 0  # down ramp over 504 rows
    # an identity "network" goes through the tiling unchanged
    image = torch.rand(1, 1, 520, 696, dtype=torch.float64)
    out = official_tiled_forward(lambda x: [x[..., ::4, ::4], x[..., ::2, ::2], x.clone()], image, 512)
    assert torch.allclose(out, image, atol=1e-12)


def test_official_tiler_single_tile_quirk():
    """One tile (256x256 with train_size 512): the original ramps the first 32 rows and columns from 0."""
    grid = tile_grid(256, 256, 512)
    assert grid.origins == ((0, 0),)
    out = blend_tiles(torch.ones(1, 1, 256, 256, dtype=torch.float64), grid)[0, 0]
    ramp = torch.linspace(0, 1, 32, dtype=torch.float64)
    assert torch.equal(out[:32, 100], ramp) and torch.equal(out[100, :32], ramp)
    assert torch.allclose(out[:32, :32], ramp[:, None] * ramp[None, :])
    assert torch.all(out[32:, 32:] == 1)
    with pytest.raises(ValueError, match="larger than 32"):
        tile_grid(30, 100, 512)
