"""The paper's test metrics and training loss against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.ema import ModelEMA
from training.losses import dgno_loss, multiscale_targets
from training.metrics import (
    Lpips,
    mae_rgb,
    psnr_float,
    psnr_gray_uint8,
    rgb_to_gray_uint8,
    ssim,
    to_uint8_truncated,
)


def test_psnr_float():
    target = np.full((8, 8, 1), 0.5, np.float32)
    assert psnr_float(target + 0.1, target) == pytest.approx(20.0, abs=1e-5)  # MSE 0.01
    half = target.copy()
    half[:4] += 0.2  # MSE = 0.5 * 0.04 = 0.02
    assert psnr_float(half, target) == pytest.approx(10 * math.log10(1 / 0.02), abs=1e-5)
    assert psnr_float(target, target) == 100.0  # the official rule for identical images


def test_ssim_of_constant_images():
    # constant images: SSIM = (2 a b + C1) / (a^2 + b^2 + C1), C1 = (0.01 * data_range)^2; the contrast term is 1
    a, b = np.full((16, 16), 0.5), np.full((16, 16), 0.6)
    assert ssim(a, b) == pytest.approx((2 * 0.5 * 0.6 + 1e-4) / (0.25 + 0.36 + 1e-4), abs=1e-9)
    rgb = np.random.default_rng(0).random((16, 16, 3))
    assert ssim(rgb, rgb) == pytest.approx(1.0)


def test_truncation_and_opencv_gray():
    assert to_uint8_truncated(np.array([0.5, 0.999, 1.0, 0.00392])).tolist() == [127, 254, 255, 0]
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 1, 201], [100, 100, 100]]], np.uint8)
    # OpenCV 8-bit RGB2GRAY: (9798 R + 19235 G + 3735 B + 16384) >> 15, e.g.
    #   (255, 0, 0): (2498490 + 16384) >> 15 = 76;  (0, 255, 0): (4904925 + 16384) >> 15 = 150
    #   (0, 0, 255): (952425 + 16384) >> 15 = 29;   (0, 1, 201): (19235 + 750735 + 16384) >> 15 = 23
    #   (the float formula 0.299 R + 0.587 G + 0.114 B = 23.501 would round to 24: OpenCV gives 23)
    # checked against opencv-python 5.0.0 on all 2**24 colours
    assert rgb_to_gray_uint8(pixels).tolist() == [[76, 150, 29, 23, 100]]
    with pytest.raises(ValueError, match="uint8"):
        rgb_to_gray_uint8(pixels.astype(np.float32))


def test_psnr_on_truncated_gray():
    target = np.full((4, 4, 3), 0.5, np.float32)  # -> 127 everywhere
    pred = np.full((4, 4, 3), 0.504, np.float32)  # 128.52 -> 128: gray differs by exactly 1
    assert psnr_gray_uint8(pred, target) == pytest.approx(20 * math.log10(255), abs=1e-9)
    assert psnr_gray_uint8(np.full((4, 4, 3), 0.501, np.float32), target) == math.inf  # 127.755 -> 127 too


def test_mae_rgb():
    target = np.zeros((2, 2, 3))
    pred = np.zeros((2, 2, 3))
    pred[..., 0] = 0.3  # channel MAEs 0.3, 0, 0.06 -> mean 0.12
    pred[0, 0, 2] = 0.24
    assert mae_rgb(pred, target) == pytest.approx(0.12)


def test_lpips_is_optional():
    metric = Lpips()
    if metric.available:
        image = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
        assert metric(image, image) == pytest.approx(0.0, abs=1e-6)
    else:
        with pytest.raises(RuntimeError, match="pip install lpips"):
            metric(np.zeros((8, 8, 1)), np.zeros((8, 8, 1)))


def test_multiscale_targets_are_bilinear_block_means():
    gt = torch.arange(16.0).reshape(1, 1, 4, 4)
    gt4, gt2, full = multiscale_targets(gt)
    # scale 0.5, align_corners False, no antialias: sample at the centre of each 2x2 block = its mean
    assert torch.equal(gt2[0, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))
    assert torch.equal(gt4[0, 0], torch.tensor([[7.5]]))
    assert full is gt


def test_loss_of_a_constant_offset():
    """pred = target + c at every scale: content = 3c; the spectra differ only at DC by c*H*W, so each
    frequency term is c*H*W / (2*H*W) = c/2 (mean over real and imaginary parts)."""
    gt = torch.rand(2, 1, 32, 32)
    c = 0.05
    outputs = [t + c for t in multiscale_targets(gt)]
    terms = dgno_loss(outputs, gt)
    assert terms.content.item() == pytest.approx(3 * c, rel=1e-5)
    assert terms.frequency.item() == pytest.approx(3 * c / 2, rel=1e-4)
    assert terms.total.item() == pytest.approx(3 * c + 0.1 * 1.5 * c, rel=1e-4)
    assert dgno_loss(multiscale_targets(gt), gt).total.item() == 0.0
    with pytest.raises(ValueError, match="three outputs"):
        dgno_loss(outputs[:2], gt)


def test_ema_update():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = ModelEMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema.update(model)  # 0.9 * 1 + 0.1 * 2
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 1.1))
    ema.update(model)  # 0.9 * 1.1 + 0.1 * 2
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 1.19))
    assert not ema.module.weight.requires_grad and not ema.module.training
