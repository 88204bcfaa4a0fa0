"""The paper's test metrics (test/test_bbbc.py, test/test_3dhistech.py), without OpenCV or scikit-learn.

* Fluorescence (BBBC006): PSNR on float images in [0, 1] (100 when identical), SSIM with data range 1.
* RGB (3DHistech): PSNR on the grayscale of truncated 8-bit images (OpenCV's fixed-point RGB→gray),
  SSIM on float RGB with data range 1, MAE averaged over the three channels.
* LPIPS (AlexNet, ``normalize=True``) only when the ``lpips`` package is importable.

Images are numpy arrays (H, W, C) in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

#: OpenCV's 15-bit fixed-point BT.601 luma coefficients for 8-bit RGB→gray (R, G, B; they sum to 2**15).
GRAY_COEFFS_15 = (9798, 19235, 3735)


def psnr_float(pred: np.ndarray, target: np.ndarray) -> float:
    """``10 log10(1 / MSE)`` on float images in [0, 1]; 100 when they are identical (official rule)."""
    mse = float(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2))
    return 100.0 if mse == 0 else 10.0 * math.log10(1.0 / mse)


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """scikit-image SSIM with ``data_range=1`` over the channel axis (last), as the official tests."""
    pred, target = _hwc(pred), _hwc(target)
    return float(structural_similarity(target, pred, data_range=1, channel_axis=-1))


def to_uint8_truncated(image: np.ndarray) -> np.ndarray:
    """``(x * 255).astype(uint8)``: truncation, not rounding, exactly like the official ``psnr_m``."""
    return (np.asarray(image) * 255).astype(np.uint8)


def rgb_to_gray_uint8(rgb: np.ndarray) -> np.ndarray:
    """OpenCV ``cvtColor(RGB2GRAY)`` for 8-bit images: ``(9798 R + 19235 G + 3735 B + 2**14) >> 15``."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    r, g, b = (rgb[..., c].astype(np.int64) for c in range(3))
    cr, cg, cb = GRAY_COEFFS_15
    return ((r * cr + g * cg + b * cb + (1 << 14)) >> 15).astype(np.uint8)


def psnr_gray_uint8(pred: np.ndarray, target: np.ndarray) -> float:
    """3DHistech PSNR: truncate both to uint8, convert to gray like OpenCV, PSNR with data range 255
    (infinite when the gray images are identical, like scikit-image)."""
    gray_p = rgb_to_gray_uint8(to_uint8_truncated(pred))
    gray_t = rgb_to_gray_uint8(to_uint8_truncated(target))
    if np.array_equal(gray_p, gray_t):
        return math.inf
    return float(peak_signal_noise_ratio(gray_t, gray_p, data_range=255))


def mae_rgb(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean over channels of each channel's mean absolute error (sklearn ``mean_absolute_error``)."""
    pred, target = _hwc(pred).astype(np.float64), _hwc(target).astype(np.float64)
    return float(np.mean([np.mean(np.abs(target[..., c] - pred[..., c])) for c in range(pred.shape[-1])]))


def _hwc(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    return image[..., None] if image.ndim == 2 else image


class Lpips:
    """LPIPS (AlexNet) on (H, W, C) images in [0, 1]; ``available`` is False without the lpips package."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        try:
            import lpips
        except ImportError:
            self.model = None
        else:
            self.model = lpips.LPIPS(net="alex", verbose=False).to(device).eval()

    @property
    def available(self) -> bool:
        return self.model is not None

    def __call__(self, pred: np.ndarray, target: np.ndarray) -> float:
        import torch

        if self.model is None:
            raise RuntimeError("LPIPS needs the lpips package: pip install lpips")

        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(_hwc(x).transpose(2, 0, 1)))[None].float().to(self.device)

        with torch.no_grad():
            return float(self.model(tensor(pred), tensor(target), normalize=True).item())


def fluorescence_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """BBBC006 protocol: float PSNR and SSIM."""
    return {"psnr": psnr_float(pred, target), "ssim": ssim(pred, target)}


def rgb_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """3DHistech protocol: gray-uint8 PSNR, RGB SSIM, MAE."""
    return {"psnr": psnr_gray_uint8(pred, target), "ssim": ssim(pred, target), "mae": mae_rgb(pred, target)}


def protocol_metrics(pred: np.ndarray, target: np.ndarray, protocol: str) -> dict[str, float]:
    if protocol == "fluorescence":
        return fluorescence_metrics(pred, target)
    if protocol == "rgb":
        return rgb_metrics(pred, target)
    raise ValueError(f"protocol must be 'fluorescence' or 'rgb', got {protocol!r}")
