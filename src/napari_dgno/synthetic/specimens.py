"""Random ground-truth specimens: what a perfectly focused, noise-free microscope would record.

Sizes are drawn in micrometres and converted with the pixel size, so structures keep realistic
proportions to the PSF at any sampling. All randomness comes from one ``numpy.random.Generator``.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import fft as sfft

from .optics import BRIGHTFIELD_RGB, FLUORESCENCE

__all__ = ["KINDS", "RngLike", "as_generator", "random_specimen"]

#: A seed, a Generator (used and advanced as is) or None (fresh entropy).
RngLike = int | np.random.Generator | None

#: Specimen kinds and what they imitate.
KINDS = {
    "nuclei": "Hoechst/DAPI-stained nuclei: textured ellipsoidal blobs (BBBC006 w1-like)",
    "actin": "phalloidin-stained actin: stress fibres, cortical rings and diffuse cytoplasm (BBBC006 w2-like)",
    "mixed": "nuclei, actin and diffraction-limited puncta in one channel (varied structure for training)",
    "tissue": "H&E-stained tissue section, RGB transmitted light (3DHistech-like)",
}

# Ruifrok & Johnston optical-density vectors (R, G, B) of haematoxylin and eosin.
_HEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29])
_EOSIN_OD = np.array([0.07, 0.99, 0.11])
_LAMP_RGB = np.array([0.95, 0.94, 0.96])


def as_generator(rng: RngLike) -> np.random.Generator:
    """``None`` (fresh entropy), a seed, or an existing Generator (used, and advanced, as is)."""
    if rng is None or isinstance(rng, (int, np.integer, np.random.Generator, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}")


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (height, width), got {shape!r}") from None
    if h < 8 or w < 8:
        raise ValueError(f"shape must be at least (8, 8) pixels, got {(h, w)}")
    return h, w


def _transfer(shape: tuple[int, int], sigma_px: float, anisotropy: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """Gaussian filter in rfft2 layout; ``anisotropy`` < 1 stretches the correlation along ``angle``."""
    fy = np.fft.fftfreq(shape[0]).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    a = np.float32(2.0 * np.pi**2 * sigma_px**2)
    if anisotropy == 1.0:  # separable: two 1-D exponentials
        return np.exp(-a * fy**2) * np.exp(-a * fx**2)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u, v = fx * c + fy * s, fy * c - fx * s
    return np.exp(-a * ((u * np.float32(anisotropy)) ** 2 + v**2))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float,
                  anisotropy: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian-correlated noise (periodic; filtered in Fourier space)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    spectrum = sfft.rfft2(white) * _transfer(shape, sigma_px, anisotropy, angle)
    spectrum[0, 0] = 0.0
    field = sfft.irfft2(spectrum, s=shape)
    std = field.std()
    return field / std if std > 0 else field


def _splat(shape: tuple[int, int], ys: np.ndarray, xs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Bilinearly deposit point weights on a grid (sub-pixel positions, points outside are dropped)."""
    h, w = shape
    out = np.zeros(h * w, np.float64)
    y0, x0 = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    fy, fx = ys - y0, xs - x0
    for dy, dx, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        out += np.bincount(yy[ok] * w + xx[ok], weights=(weights * wt)[ok], minlength=h * w)
    return out.reshape(h, w).astype(np.float32)


def _gaussian_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Periodic Gaussian smoothing through the FFT (cheap for any sigma)."""
    return sfft.irfft2(sfft.rfft2(image) * _transfer(image.shape, sigma_px), s=image.shape).astype(np.float32)


def _blobs(rng: np.random.Generator, shape: tuple[int, int], px: float, *, diameter_um: tuple[float, float],
           coverage: float, edge_um: float = 0.4) -> np.ndarray:
    """Sum of soft-edged, irregular, domed ellipses (nuclei), brightness varying like DNA content."""
    h, w = shape
    mean_d = rng.uniform(*diameter_um)
    area_px = np.pi / 4 * (mean_d / px) ** 2
    count = max(1, rng.poisson(coverage * h * w / area_px))
    out = np.zeros(shape, np.float32)
    margin = 0.3 * mean_d / px
    for _ in range(count):
        cy, cx = rng.uniform(-margin, h + margin), rng.uniform(-margin, w + margin)
        condensed = rng.random() < 0.06                      # mitotic / apoptotic: small and bright
        d = mean_d * rng.uniform(0.8, 1.2) * (0.55 if condensed else 1.0)
        elong = rng.uniform(1.0, 1.6)
        a, b = d / 2 * np.sqrt(elong) / px, d / 2 / np.sqrt(elong) / px
        theta = rng.uniform(0, np.pi)
        brightness = rng.lognormal(0.0, 0.25) * (1.8 if condensed else 1.0)
        harmonics = rng.normal(0, 0.04, 3)
        phases = rng.uniform(0, 2 * np.pi, 3)
        r = int(np.ceil(a * 1.25 + 3))
        y0, y1, x0, x1 = max(0, int(cy) - r), min(h, int(cy) + r + 1), max(0, int(cx) - r), min(w, int(cx) + r + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        wobble = _outline(v * a, u * b, radius=1.0, harmonics=harmonics, phases=phases)
        rho = np.sqrt((u / a) ** 2 + (v / b) ** 2) / wobble
        inside = 1.0 / (1.0 + np.exp(np.clip((rho - 1.0) * b * px / edge_um * 4.0, -30, 30)))
        dome = 0.7 + 0.3 * np.sqrt(np.clip(1.0 - rho**2, 0.0, 1.0))
        out[y0:y1, x0:x1] += brightness * inside * dome
    return out


def _chromatin(rng: np.random.Generator, shape: tuple[int, int], px: float) -> np.ndarray:
    """Multiplicative texture: fine and coarse chromatin, bright chromocentres, dim nucleoli."""
    fine = _smooth_noise(rng, shape, 0.35 / px)
    coarse = _smooth_noise(rng, shape, 1.2 / px)
    spots = _smooth_noise(rng, shape, 0.25 / px)
    texture = 1.0 + 0.18 * fine + 0.15 * coarse + 0.6 * np.clip(spots - 2.2, 0, None)
    nucleoli = np.clip(_smooth_noise(rng, shape, 0.8 / px) - 1.8, 0, None)
    return np.clip(texture - 0.8 * nucleoli, 0.2, None)


def _normalise(image: np.ndarray, rng: np.random.Generator, peak: tuple[float, float] = (0.75, 0.95)) -> np.ndarray:
    """Scale so the brightest structures sit at a random level below 1, then clip into [0, 1]."""
    top = float(np.percentile(image, 99.9))
    if top <= 0:
        return np.zeros_like(image, dtype=np.float32)
    return np.clip(image * (rng.uniform(*peak) / top), 0.0, 1.0).astype(np.float32)


def _nuclei(rng: np.random.Generator, shape: tuple[int, int], px: float) -> np.ndarray:
    blobs = _blobs(rng, shape, px, diameter_um=(9.0, 15.0), coverage=rng.uniform(0.15, 0.45))
    haze = rng.uniform(0.005, 0.03) * (1.0 + 0.3 * _smooth_noise(rng, shape, 15.0 / px))
    return _normalise(blobs * _chromatin(rng, shape, px) + np.clip(haze, 0, None) * blobs.max(), rng)


def _fibres(rng: np.random.Generator, centre: np.ndarray, radius: float, main_angle: float, count: int,
            spread: float, strength: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points (ys, xs, weights) along ``count`` gently curved fibres starting inside a cell.

    Fibres lie within ``spread`` radians of ``main_angle`` (stress fibres run parallel); each is sampled
    at the same number of points, weighted so brightness per unit length is the fibre's ``strength``.
    """
    rr, tt = radius * np.sqrt(rng.random(count)), rng.uniform(0, 2 * np.pi, count)
    cy, cx = centre[0] + rr * np.sin(tt), centre[1] + rr * np.cos(tt)
    length = rng.uniform(0.3, 1.4, count) * radius
    angle = main_angle + rng.normal(0, spread, count)
    bend = rng.normal(0, 0.08, count)
    amp = rng.uniform(*strength, count)
    m = max(2, int(2 * length.max()))
    s = np.linspace(-0.5, 0.5, m)[None, :]
    along, across = s * length[:, None], (bend * length)[:, None] * (s**2 - 1.0 / 12.0)
    sin, cos = np.sin(angle)[:, None], np.cos(angle)[:, None]
    ys, xs = cy[:, None] + along * sin + across * cos, cx[:, None] + along * cos - across * sin
    weights = (amp * 2.0 * length / m)[:, None] * np.clip((0.5 - np.abs(s)) * 8.0, 0.0, 1.0)
    return ys.ravel(), xs.ravel(), weights.ravel()


def _outline(dy: np.ndarray, dx: np.ndarray, *, radius: float, harmonics: np.ndarray,
             phases: np.ndarray) -> np.ndarray:
    """Distance from a cell's centre to its edge towards offsets (dy, dx): a circle with smooth lobes.

    Lobes are cos(mφ + p) for m = 2, 3, ...; computed as powers of the unit direction e^{iφ} (no trig).
    """
    r = np.hypot(dy, dx)
    direction = (dx + 1j * dy) / np.where(r > 0, r, 1.0)
    power, total = direction, np.ones_like(r)
    for h, p in zip(harmonics, phases, strict=True):
        power = power * direction
        total += h * (power * np.exp(1j * p)).real
    return radius * total


def _actin(rng: np.random.Generator, shape: tuple[int, int], px: float) -> np.ndarray:
    h, w = shape
    cell_r_um = rng.uniform(14.0, 26.0)
    count = max(1, rng.poisson(0.8 * h * w * px**2 / (np.pi * cell_r_um**2)))
    thick: list[tuple[np.ndarray, ...]] = []   # (ys, xs, weights) of bundles and of single filaments
    thin: list[tuple[np.ndarray, ...]] = []
    body = np.zeros(shape, np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(count):
        centre = np.array([rng.uniform(0, h), rng.uniform(0, w)])
        radius = cell_r_um * rng.uniform(0.7, 1.3) / px
        harmonics, phases = rng.normal(0, 0.07, 4), rng.uniform(0, 2 * np.pi, 4)
        edge = functools.partial(_outline, radius=radius, harmonics=harmonics, phases=phases)
        reach = radius * (1.0 + np.abs(harmonics).sum())

        r_box = int(reach * 1.25) + 3   # room for the cortex ring outside the edge
        y0, y1 = max(0, int(centre[0]) - r_box), min(h, int(centre[0]) + r_box)
        x0, x1 = max(0, int(centre[1]) - r_box), min(w, int(centre[1]) + r_box)
        if y0 < y1 and x0 < x1:
            dy, dx = yy[y0:y1, x0:x1] - centre[0], xx[y0:y1, x0:x1] - centre[1]
            rel = np.hypot(dy, dx) / edge(dy, dx)
            soft = 1.0 / (1.0 + np.exp(np.clip((rel - 1.0) * radius * px / 0.5 * 4.0, -30, 30)))
            cortex = np.exp(-(((rel - 0.97) * radius * px / 0.6) ** 2))
            body[y0:y1, x0:x1] += rng.uniform(0.08, 0.2) * soft + rng.uniform(0.2, 0.5) * cortex * (rel < 1.2)
        main = rng.uniform(0, np.pi)
        for points, n_fibres, spread, strength in ((thick, rng.integers(8, 25), 0.15, (0.5, 1.0)),
                                                   (thin, rng.integers(20, 60), 0.5, (0.2, 0.6))):
            ys, xs, weights = _fibres(rng, centre, radius, main, int(n_fibres), spread, strength)
            dy, dx = ys - centre[0], xs - centre[1]
            keep = np.hypot(dy, dx) < edge(dy, dx)  # fibres end at the cell's edge
            points.append((ys[keep], xs[keep], weights[keep]))
    thick_img, thin_img = (_splat(shape, *(np.concatenate(c) for c in zip(*pts))) for pts in (thick, thin))
    fibres = _gaussian_blur(thick_img, 0.2 / px) * 1.5 + _gaussian_blur(thin_img, 0.08 / px + 0.35)
    texture = 1.0 + 0.25 * _smooth_noise(rng, shape, 0.5 / px)
    return _normalise(fibres + body * np.clip(texture, 0.3, None), rng)


def _puncta(rng: np.random.Generator, shape: tuple[int, int], px: float) -> np.ndarray:
    """Sub-resolution spots (vesicles, foci): the hardest structures to recover from defocus."""
    h, w = shape
    n = rng.poisson(h * w * px**2 / 25.0)
    points = _splat(shape, rng.uniform(0, h, n), rng.uniform(0, w, n), rng.lognormal(0, 0.5, n))
    return _gaussian_blur(points, 0.1 / px + 0.3)


def _mixed(rng: np.random.Generator, shape: tuple[int, int], px: float) -> np.ndarray:
    nuclei, actin = _nuclei(rng, shape, px), _actin(rng, shape, px)
    puncta = _puncta(rng, shape, px)
    mix = rng.dirichlet([2.0, 2.0, 1.0])
    top = float(puncta.max())
    return _normalise(mix[0] * nuclei + mix[1] * actin + mix[2] * (puncta / top if top > 0 else puncta), rng)


def _tissue(rng: np.random.Generator, shape: tuple[int, int], px: float) -> np.ndarray:
    """Beer-Lambert mix of haematoxylin (nuclei) and eosin (stroma, cytoplasm) over white glass."""
    nuclei = _blobs(rng, shape, px, diameter_um=(5.0, 9.0), coverage=rng.uniform(0.15, 0.4), edge_um=0.3)
    nuclei = np.clip(nuclei * _chromatin(rng, shape, px), 0, 2.0)
    tissue = 1.0 / (1.0 + np.exp(-3.0 * (_smooth_noise(rng, shape, 12.0 / px) + rng.uniform(0.3, 1.5))))
    angle = rng.uniform(0, np.pi)
    fibres = sum(_smooth_noise(rng, shape, 0.9 / px, anisotropy=0.25, angle=angle + da) for da in (0, 0.6))
    stroma = np.clip(0.5 + 0.12 * fibres + 0.12 * _smooth_noise(rng, shape, 4.0 / px), 0.05, None)
    cytoplasm = np.clip(_gaussian_blur(nuclei, 2.5 / px), 0, 1)
    eosin = tissue * (stroma + 0.5 * cytoplasm) * rng.uniform(0.35, 0.6)
    hema = tissue * (nuclei * rng.uniform(0.6, 0.9) + 0.04)
    optical_density = hema[..., None] * _HEMATOXYLIN_OD + eosin[..., None] * _EOSIN_OD
    rgb = _LAMP_RGB * np.power(10.0, -optical_density)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


_MAKERS = {"nuclei": _nuclei, "actin": _actin, "mixed": _mixed, "tissue": _tissue}


def random_specimen(shape: tuple[int, int], kind: str = "nuclei", *, rng: RngLike = None,
                    pixel_um: float | None = None) -> np.ndarray:
    """A random in-focus, noise-free specimen image, float32 in [0, 1].

    ``kind``: one of :data:`KINDS` ("nuclei", "actin", "mixed" give (H, W) fluorescence, "tissue" an
    (H, W, 3) H&E-like RGB transmission image). ``rng``: seed or Generator (same seed, same image).
    ``pixel_um``: sampling in the specimen, so nuclei and fibres get their physical size (default: that of
    :data:`FLUORESCENCE`, or of :data:`BRIGHTFIELD_RGB` for tissue).
    """
    if kind not in _MAKERS:
        raise ValueError(f"unknown specimen kind {kind!r}; choose one of {sorted(_MAKERS)}")
    h, w = _check_shape(shape)
    if pixel_um is None:
        pixel_um = BRIGHTFIELD_RGB.pixel_um if kind == "tissue" else FLUORESCENCE.pixel_um
    if not np.isfinite(pixel_um) or pixel_um <= 0:
        raise ValueError(f"pixel_um must be a positive number, got {pixel_um!r}")
    return _MAKERS[kind](as_generator(rng), (h, w), float(pixel_um))
