"""Defocus optics: the incoherent point-spread function of a defocused objective, and blurring with it.

Scalar Fourier optics: a circular pupil of radius NA/λ whose field picks up the propagation phase
``exp(i·2π·z·sqrt((n/λ)² − |k|²))`` over a defocus ``z``; the camera records the squared modulus of the
pupil's Fourier transform, integrated over each square pixel. This is exact for a scalar wave in a
homogeneous medium (no polarisation, aberrations or refractive-index mismatch), so a defocus of +z and
−z give the same intensity PSF. Spatially varying defocus (a tilted or curved specimen) is approximated by
blending copies blurred at a few depths with smooth weights, the usual way to make a space-variant blur
cheap enough to generate training pairs on the fly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from scipy import fft as sfft

__all__ = ["BRIGHTFIELD_RGB", "FLUORESCENCE", "RGB_WAVELENGTHS_UM", "Optics", "blur", "defocus_psf", "psf_size"]

#: Centre wavelengths (µm) used for red, green and blue when blurring an RGB brightfield image.
RGB_WAVELENGTHS_UM: tuple[float, float, float] = (0.61, 0.54, 0.46)


@dataclass(frozen=True)
class Optics:
    """An objective and camera. Units are micrometres.

    wavelength_um: emission (fluorescence) or illumination (brightfield) wavelength; a tuple gives one per
        channel of an RGB image.
    na: numerical aperture of the objective (sets resolution and how fast blur grows with defocus).
    refractive_index: of the medium between objective and specimen (1.0 air, 1.33 water, 1.515 oil).
    pixel_um: camera pixel size divided by the total magnification (the sampling in the specimen).
    """

    wavelength_um: float | tuple[float, ...] = 0.52
    na: float = 0.75
    refractive_index: float = 1.0
    pixel_um: float = 0.325

    def as_kwargs(self) -> dict:
        """Keyword arguments for :func:`blur` / :func:`defocus_psf`."""
        return asdict(self)


#: Widefield fluorescence, BBBC006-like: a 20x/0.75 air objective on a 6.5 µm-pixel sCMOS camera
#: (0.325 µm per pixel, Nyquist-sampled for the in-focus PSF), green emission. BBBC006 itself was imaged
#: at 20x with 2x2 binning, roughly 0.65 µm per pixel: pass ``pixel_um=0.65`` to mimic that sampling.
FLUORESCENCE = Optics(wavelength_um=0.52, na=0.75, refractive_index=1.0, pixel_um=0.325)

#: Brightfield slide scanner, 3DHistech-like: 20x/0.8 air objective, 0.243 µm per pixel, RGB.
BRIGHTFIELD_RGB = Optics(wavelength_um=RGB_WAVELENGTHS_UM, na=0.8, refractive_index=1.0, pixel_um=0.243)


def _check_optics(wavelength_um: float, na: float, refractive_index: float, pixel_um: float) -> None:
    for name, value in (("wavelength_um", wavelength_um), ("na", na), ("refractive_index", refractive_index),
                        ("pixel_um", pixel_um)):
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if na >= refractive_index:
        raise ValueError(
            f"na ({na}) must be smaller than refractive_index ({refractive_index}): an objective cannot collect "
            "light beyond the medium's index; use refractive_index=1.515 for oil or 1.33 for water immersion"
        )


def _tan_theta(na: float, refractive_index: float) -> float:
    """Tangent of the marginal ray angle: the geometric blur radius grows as |z|·tan θ."""
    sin_t = na / refractive_index
    return sin_t / np.sqrt(1.0 - sin_t**2)


def psf_size(defocus_um: float, *, wavelength_um: float = 0.52, na: float = 0.75, refractive_index: float = 1.0,
             pixel_um: float = 0.325) -> int:
    """Odd PSF width in pixels that holds the geometric blur disc plus a few diffraction rings."""
    _check_optics(wavelength_um, na, refractive_index, pixel_um)
    r_geom = abs(float(defocus_um)) * _tan_theta(na, refractive_index) / pixel_um
    airy = 0.61 * wavelength_um / na / pixel_um
    radius = int(np.ceil(1.15 * r_geom + 3.0 * airy + 2.0))
    return 2 * radius + 1


def _oversampling(wavelength_um: float, na: float, pixel_um: float) -> int:
    """Odd sub-pixel factor that samples the intensity PSF (band limit 2·NA/λ) without aliasing.

    Odd, so that a camera pixel centred on the optical axis is made of whole sub-samples.
    """
    factor = max(1, int(np.ceil(4.0 * na * pixel_um / wavelength_um - 1e-9)))
    return factor if factor % 2 else factor + 1


@lru_cache(maxsize=512)
def _psf_cached(defocus_um: float, wavelength_um: float, na: float, refractive_index: float, pixel_um: float,
                size: int) -> np.ndarray:
    over = _oversampling(wavelength_um, na, pixel_um)
    r_geom = defocus_um * _tan_theta(na, refractive_index) / pixel_um
    # The computation window must exceed the blur disc (else the sampled defocus phase aliases) and leave
    # room for the tails that the crop to `size` discards (else they wrap back in).
    n = max(size + size // 2, int(np.ceil(2.2 * r_geom)) + 9)
    n += 1 - n % 2
    while sfft.next_fast_len(n * over) != n * over:  # odd n whose fine grid FFTs fast
        n += 2
    m = n * over
    # The pupil only fills |k| <= NA/λ: build it on that small box of frequencies, then place it (wrapped)
    # into the m x m grid whose inverse FFT samples the field every pixel_um / over.
    df = 1.0 / (n * pixel_um)                      # cycles per µm between frequency samples
    cutoff = na / wavelength_um
    b = int(np.floor(cutoff / df))
    f = np.arange(-b, b + 1) * df
    k2 = f[:, None] ** 2 + f[None, :] ** 2
    k_medium = refractive_index / wavelength_um
    kz = np.sqrt(np.maximum(k_medium**2 - k2, 0.0))
    box = np.where(k2 <= cutoff**2, np.exp(2j * np.pi * defocus_um * (kz - k_medium)), 0.0)
    pupil = np.zeros((m, m), np.complex64)
    idx = np.arange(-b, b + 1) % m
    pupil[np.ix_(idx, idx)] = box
    field = sfft.ifft2(pupil, overwrite_x=True)
    intensity = np.fft.fftshift(field.real**2 + field.imag**2)
    # Integrate over each camera pixel (box of `over` x `over` sub-samples, centre pixel on the axis).
    binned = intensity.reshape(n, over, n, over).sum(axis=(1, 3), dtype=np.float64)
    c, h = n // 2, size // 2
    psf = binned[c - h:c + h + 1, c - h:c + h + 1]
    out = (psf / psf.sum()).astype(np.float32)
    out.setflags(write=False)
    return out


def defocus_psf(defocus_um: float, *, wavelength_um: float = 0.52, na: float = 0.75, refractive_index: float = 1.0,
                pixel_um: float = 0.325, size: int | None = None) -> np.ndarray:
    """Incoherent 2-D PSF of an objective defocused by ``defocus_um``, as recorded by a pixelated camera.

    Parameters (micrometres): ``defocus_um`` distance between the specimen and the focal plane (sign does not
    matter in this aberration-free model); ``wavelength_um`` the light's vacuum wavelength; ``na`` numerical
    aperture; ``refractive_index`` of the immersion medium; ``pixel_um`` the sampling in the specimen;
    ``size`` the odd width in pixels (default: enough for the blur disc and a few diffraction rings).

    Returns a float32 ``(size, size)`` array, centred, summing to 1 (blurring conserves total intensity).
    """
    _check_optics(wavelength_um, na, refractive_index, pixel_um)
    z = float(defocus_um)
    if not np.isfinite(z):
        raise ValueError(f"defocus_um must be a finite number, got {defocus_um!r}")
    if size is None:
        size = psf_size(z, wavelength_um=wavelength_um, na=na, refractive_index=refractive_index, pixel_um=pixel_um)
    size = int(size)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd number of pixels (the PSF is centred), got {size}")
    # |z|: the intensity PSF is symmetric in z here, and rounding lets nearby requests share the cache.
    return _psf_cached(round(abs(z), 6), float(wavelength_um), float(na), float(refractive_index),
                       float(pixel_um), size).copy()


def _per_channel(wavelength_um: float | Sequence[float] | None, channels: int) -> list[float]:
    if wavelength_um is None:
        return list(RGB_WAVELENGTHS_UM) if channels == 3 else [FLUORESCENCE.wavelength_um] * channels
    values = np.atleast_1d(np.asarray(wavelength_um, dtype=float))
    if values.size == 1:
        return [float(values[0])] * channels
    if values.size != channels:
        raise ValueError(f"wavelength_um has {values.size} values but the image has {channels} channels; "
                         "give one wavelength, or one per channel")
    return [float(v) for v in values]


def _depth_nodes(depth: np.ndarray, step_um: float, max_depths: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Depths to blur at, and the (K, H, W) hat-function weights that interpolate between them."""
    lo, hi = float(depth.min()), float(depth.max())
    if hi - lo < 1e-6:
        return np.array([0.5 * (lo + hi)]), None
    count = int(np.clip(np.ceil((hi - lo) / step_um) + 1, 2, max(2, max_depths)))
    nodes = np.linspace(lo, hi, count)
    t = (depth - lo) / (hi - lo) * (count - 1)
    weights = np.clip(1.0 - np.abs(t[None] - np.arange(count)[:, None, None]), 0.0, 1.0).astype(np.float32)
    return nodes, weights


def _convolve_many(plane: np.ndarray, psfs: list[np.ndarray], weights: np.ndarray | None) -> np.ndarray:
    """Sum over k of weights[k] * (plane ⊛ psfs[k]); one forward FFT of the (mirror-padded) plane."""
    h, w = plane.shape
    r = max(p.shape[0] for p in psfs) // 2
    shape = (sfft.next_fast_len(h + 2 * r, real=True), sfft.next_fast_len(w + 2 * r, real=True))
    padded = np.pad(plane, ((r, shape[0] - h - r), (r, shape[1] - w - r)), mode="symmetric")
    spectrum = sfft.rfft2(padded)
    out = np.zeros((h, w), np.float32)
    for k, psf in enumerate(psfs):
        # The PSF sits in the corner of the zero-padded grid, which delays the result by its half-width s.
        s = psf.shape[0] // 2
        blurred = sfft.irfft2(spectrum * sfft.rfft2(psf, s=shape), s=shape)[r + s:r + s + h, r + s:r + s + w]
        out += blurred if weights is None else weights[k] * blurred
    return out


def blur(image: np.ndarray, defocus_um: float | np.ndarray, *, wavelength_um: float | Sequence[float] | None = None,
         na: float = FLUORESCENCE.na, refractive_index: float = FLUORESCENCE.refractive_index,
         pixel_um: float = FLUORESCENCE.pixel_um, depth_step_um: float | None = None,
         max_depths: int = 8) -> np.ndarray:
    """Image ``image`` (intensities, (H, W) or (H, W, C)) as seen with the objective defocused.

    ``defocus_um``: one defocus for the whole field, or an (H, W) map for a tilted or curved specimen;
    the map is approximated by blurring at up to ``max_depths`` depths ``depth_step_um`` apart (default:
    the step that grows the geometric blur radius by 3 pixels, 0.86 µm at 20x/0.75) and blending with hat
    weights that sum to one (two copies 1.2 µm apart blend to within 47 dB PSNR of the exact blur).
    ``wavelength_um``: one value, or one per channel (default 0.52 µm for grey images and R, G, B =
    0.61, 0.54, 0.46 µm for three-channel images, which are blurred channel by channel).
    The other optics parameters are those of :func:`defocus_psf`. Image borders are mirrored, not wrapped.

    Returns float32 of the input's shape; the input is not modified.
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ValueError(f"image must be (H, W) or (H, W, C) with H, W >= 2, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise TypeError(f"image must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError("image contains NaN or Inf; replace them (e.g. np.nan_to_num) before blurring")
    planes = arr[..., None] if arr.ndim == 2 else arr
    wavelengths = _per_channel(wavelength_um, planes.shape[-1])
    depth = np.abs(np.asarray(defocus_um, dtype=np.float64))
    if depth.ndim not in (0, 2) or (depth.ndim == 2 and depth.shape != arr.shape[:2]):
        raise ValueError(f"defocus_um must be a number or a map of shape {arr.shape[:2]}, got shape {depth.shape}")
    if not np.isfinite(depth).all():
        raise ValueError("defocus_um contains NaN or Inf")
    for lam in wavelengths:
        _check_optics(lam, na, refractive_index, pixel_um)
    if depth_step_um is None:
        depth_step_um = 3.0 * pixel_um / _tan_theta(na, refractive_index)
    if depth_step_um <= 0:
        raise ValueError(f"depth_step_um must be positive, got {depth_step_um}")
    nodes, weights = _depth_nodes(depth, depth_step_um, max_depths) if depth.ndim == 2 else (np.array([depth]), None)
    out = np.empty(planes.shape, np.float32)
    for c, lam in enumerate(wavelengths):
        psfs = [defocus_psf(z, wavelength_um=lam, na=na, refractive_index=refractive_index, pixel_um=pixel_um)
                for z in nodes]
        out[..., c] = _convolve_many(planes[..., c], psfs, weights)
    return out[..., 0] if arr.ndim == 2 else out
