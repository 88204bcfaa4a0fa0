"""Intensity normalisation following each checkpoint's training protocol, and the way back.

* ``minmax`` (BBBC006 models, and any callable without ``info``): ``(x - min) / (max - min)`` with the
  min and max of the whole plane (over the channels the model sees together), never of a tile.
* ``rgb255`` (3DHistech models): ``x / 255`` for uint8, i.e. divided by the dtype's maximum for any
  integer RGB (65535 for uint16). Float RGB is taken as already scaled to [0, 1] when the plane's
  maximum is <= 1, as 0..255 when it is <= 255, and refused otherwise (the model would see values
  it was never trained on).

The model's output is mapped back with the same numbers, so results are in the input's units.
A constant plane has nothing to deblur: it is returned unchanged, with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NORMALIZATIONS = ("minmax", "rgb255")


class ConstantPlaneWarning(UserWarning):
    """A plane had a single value everywhere; it was passed through unchanged."""


def check_dtype(dtype: np.dtype) -> None:
    """Refuse dtypes that are not intensities, saying how to convert."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        raise ValueError(
            "the image is boolean (a mask?); deblurring needs intensities: convert it with "
            "image.astype(numpy.float32) if that is really what you want"
        )
    if dtype.kind == "c":
        raise ValueError(
            f"the image is complex ({dtype}); deblur its magnitude or real part instead "
            "(numpy.abs(image) or image.real)"
        )
    if dtype.kind not in "uif":
        raise ValueError(
            f"unsupported image dtype {dtype}; give integer or floating-point intensities "
            "(e.g. uint8, uint16, float32)"
        )


def check_shape(shape: tuple[int, ...]) -> None:
    if any(int(n) == 0 for n in shape):
        raise ValueError(f"the image is empty (shape {tuple(shape)}); nothing to deblur")


def work_dtype(dtype: np.dtype) -> type:
    """float64 where float32 would lose the plane's detail before the offset is removed."""
    dtype = np.dtype(dtype)
    return np.float64 if dtype.itemsize >= 4 and dtype != np.float32 else np.float32


@dataclass(frozen=True)
class Scaling:
    """``model_input = (x - offset) / scale``; ``output = model_output * scale + offset``."""

    offset: float
    scale: float

    def to_model(self, x: np.ndarray) -> np.ndarray:
        work = x.astype(work_dtype(x.dtype), copy=True)  # never modify the caller's data
        work -= work.dtype.type(self.offset)
        work /= work.dtype.type(self.scale)
        return work.astype(np.float32, copy=False)

    def from_model(self, y: np.ndarray) -> np.ndarray:
        """In place on a float64 array (the blending accumulator)."""
        y *= self.scale
        y += self.offset
        return y


def plane_scaling(normalization: str, dtype: np.dtype, lo: float, hi: float, where: str) -> Scaling | None:
    """The scaling of one plane from its min/max, or None for a constant (min-max) plane.

    ``where`` names the plane in error messages. NaN/Inf anywhere in the plane make min or max
    non-finite, so this is also the NaN/Inf check.
    """
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(
            f"{where} contains NaN or infinite values; replace them before deblurring, e.g. with "
            "numpy.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0) or by filling masked pixels"
        )
    dtype = np.dtype(dtype)
    if normalization == "minmax":
        if hi == lo:
            return None
        return Scaling(float(lo), float(hi) - float(lo))
    if normalization == "rgb255":
        if dtype.kind in "ui":
            return Scaling(0.0, float(np.iinfo(dtype).max))
        if hi <= 1.0:
            return Scaling(0.0, 1.0)
        if hi <= 255.0:
            return Scaling(0.0, 255.0)
        raise ValueError(
            f"{where} is floating-point RGB with values up to {hi:g}: neither 0..1 nor 0..255, the ranges "
            "an RGB model (trained on 8-bit RGB / 255) understands; rescale it to 0..1 first"
        )
    raise ValueError(f"unknown normalization {normalization!r}; known: {', '.join(NORMALIZATIONS)}")
