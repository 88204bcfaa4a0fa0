"""Camera noise and digitisation: photon shot noise, read noise, and counts as a real camera writes them."""

from __future__ import annotations

import numpy as np

from .specimens import RngLike, as_generator

__all__ = ["add_noise", "to_counts"]


#: Above this many expected photons a pixel's Poisson count is drawn from its normal limit N(λ, λ) (skew
#: 1/√λ ≤ 0.1, invisible in images) because numpy's exact Poisson sampler costs ~100 ns a pixel.
_NORMAL_LIMIT = 100.0


def _photon_counts(gen: np.random.Generator, expected: np.ndarray) -> np.ndarray:
    """Poisson photon counts for the expected values ``expected`` (float64, same shape)."""
    counts = np.empty_like(expected)
    bright = expected >= _NORMAL_LIMIT
    dim = ~bright
    counts[dim] = gen.poisson(expected[dim])
    lam = expected[bright]
    counts[bright] = np.rint(lam + np.sqrt(lam) * gen.standard_normal(lam.shape))
    return counts


def add_noise(image: np.ndarray, *, photons: float = 200.0, read_noise: float = 2.0, background: float = 5.0,
              rng: RngLike = None) -> np.ndarray:
    """Record ``image`` (intensities on a [0, 1] scale) with a photon-counting camera.

    ``photons``: mean photo-electrons collected where the intensity is 1 (exposure × brightness; 50 is a
    dim live-cell image, 1000+ a bright fixed sample). ``read_noise``: camera read noise in electrons RMS
    (about 1.5 for sCMOS, 5-10 for older CCDs). ``background``: mean photo-electrons per pixel from
    out-of-focus light, autofluorescence and dark current; it adds shot noise and is subtracted again, as a
    background-corrected image would be. Pixels are Poisson(photons·I + background) + N(0, read_noise²).

    Returns float32 on the input's [0, 1] scale, clipped at 0 (not at 1); the input is not modified.
    """
    for name, value in (("photons", photons), ("read_noise", read_noise), ("background", background)):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if photons == 0:
        raise ValueError("photons must be positive: it is the signal that noise is relative to")
    arr = np.asarray(image, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("image contains NaN or Inf; replace them before adding noise")
    if arr.size and arr.min() < -1e-3:
        raise ValueError(f"image must hold non-negative intensities (min is {arr.min():.3g}); "
                         "shift or clip it before simulating photon counts")
    gen = as_generator(rng)
    expected = np.clip(arr, 0.0, None) * photons + background
    electrons = _photon_counts(gen, expected)
    if read_noise > 0:
        electrons += gen.normal(0.0, read_noise, arr.shape)
    return np.clip((electrons - background) / photons, 0.0, None).astype(np.float32)


def to_counts(image: np.ndarray, *, full_scale: float, offset: float = 100.0, dtype=np.uint16) -> np.ndarray:
    """Digitise a [0, 1]-scale image as camera counts: ``offset + image·full_scale``, rounded, saturating."""
    info = np.iinfo(dtype)
    counts = np.rint(offset + np.asarray(image, dtype=np.float64) * full_scale)
    return np.clip(counts, info.min, info.max).astype(dtype)
