"""Training pairs, focus series and ready-made samples, built from specimens, optics and camera."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .camera import add_noise, to_counts
from .optics import BRIGHTFIELD_RGB, FLUORESCENCE, Optics, blur
from .specimens import KINDS, RngLike, as_generator, random_specimen

__all__ = ["DEFOCUS_RANGE_UM", "FocusStack", "default_optics", "make_focus_stack", "make_pair", "random_defocus_map",
           "sample_pair", "sample_rgb", "sample_stack"]

#: Range (µm) of the defocus drawn by :func:`make_pair`: from just outside the depth of field of a
#: 20x/0.75 objective (about 1.3 µm) to where nuclei are still recognisable.
DEFOCUS_RANGE_UM = (1.0, 6.0)


def default_optics(kind: str) -> Optics:
    """The microscope each specimen kind is imaged with (Hoechst emits blue, phalloidin-488 green)."""
    if kind == "tissue":
        return BRIGHTFIELD_RGB
    if kind == "nuclei":
        return replace(FLUORESCENCE, wavelength_um=0.46)
    if kind in KINDS:
        return FLUORESCENCE
    raise ValueError(f"unknown specimen kind {kind!r}; choose one of {sorted(KINDS)}")


def _field_coords_um(shape: tuple[int, int], pixel_um: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    y = (np.arange(h, dtype=np.float32) - (h - 1) / 2) * pixel_um
    x = (np.arange(w, dtype=np.float32) - (w - 1) / 2) * pixel_um
    return y[:, None], x[None, :]


def random_defocus_map(shape: tuple[int, int], centre_um: float, *, pixel_um: float,
                       rng: RngLike = None, max_tilt: float = 0.02,
                       max_curvature_um: float = 0.5) -> np.ndarray:
    """Defocus over the field of a tilted, slightly curved specimen: ``centre_um`` at the field centre.

    ``max_tilt``: largest slope (µm of defocus per µm across the field; 0.02 = 2 µm per 100 µm, a slide
    that is not quite flat). ``max_curvature_um``: largest bow (µm) 100 µm from the centre (field curvature,
    a warped coverslip). Both are drawn uniformly, in a random direction.
    """
    gen = as_generator(rng)
    y, x = _field_coords_um(shape, pixel_um)
    slope, angle = gen.uniform(0.0, max_tilt), gen.uniform(0.0, 2.0 * np.pi)
    bow = gen.uniform(-max_curvature_um, max_curvature_um)
    tilt = slope * (x * np.cos(angle) + y * np.sin(angle))
    return (centre_um + tilt + bow * (x**2 + y**2) / 100.0**2).astype(np.float32)


def _random_photons(gen: np.random.Generator, kind: str) -> dict:
    """Camera settings for a pair: exposure varies over a realistic range (log-uniform)."""
    if kind == "tissue":  # brightfield: bright, no background light
        return {"photons": float(np.exp(gen.uniform(np.log(1000), np.log(10000)))), "read_noise": 2.0,
                "background": 0.0}
    return {"photons": float(np.exp(gen.uniform(np.log(50), np.log(2000)))), "read_noise": gen.uniform(1.0, 3.0),
            "background": gen.uniform(0.0, 10.0)}


def make_pair(shape: tuple[int, int] = (256, 256), *, kind: str = "mixed", defocus_um: float | np.ndarray | None = None,
              noise: bool = True, rng: RngLike = None,
              optics: Optics | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A (blurred, sharp) training pair, float32 in [0, 1]: (H, W), or (H, W, 3) for ``kind="tissue"``.

    ``defocus_um``: a number (uniform blur), an (H, W) map, or None for a random focus error of 1-6 µm at
    the field centre on a randomly tilted and bowed specimen, so blur varies across the field.
    ``noise``: record the blurred image with a camera at a random exposure (50-2000 photons at full scale
    for fluorescence); ``sharp`` is always the noise-free ground truth. ``optics`` defaults to
    :func:`default_optics` of the kind. Same ``rng`` seed, same pair.
    """
    gen = as_generator(rng)
    optics = optics or default_optics(kind)
    sharp = random_specimen(shape, kind, rng=gen, pixel_um=optics.pixel_um)
    if defocus_um is None:
        defocus_um = random_defocus_map(sharp.shape[:2], gen.uniform(*DEFOCUS_RANGE_UM), pixel_um=optics.pixel_um,
                                        rng=gen)
    blurred = blur(sharp, defocus_um, **optics.as_kwargs())
    if noise:
        blurred = add_noise(blurred, rng=gen, **_random_photons(gen, kind))
    return np.clip(blurred, 0.0, 1.0), sharp


@dataclass
class FocusStack:
    """A simulated focus series of one specimen.

    stack: (Z, H, W) float32 in [0, 1] ((Z, H, W, 3) for tissue); sharp: the noise-free in-focus truth;
    in_focus: index of the plane whose focal plane passes through the specimen (at the field centre);
    defocus_um: (Z,) defocus of each plane in µm (negative below focus, positive above).
    """

    stack: np.ndarray
    sharp: np.ndarray
    in_focus: int
    defocus_um: np.ndarray
    optics: Optics = field(default=FLUORESCENCE)
    kind: str = "nuclei"


def make_focus_stack(shape: tuple[int, int, int] = (9, 256, 256), *, kind: str = "nuclei", in_focus: int | None = None,
                     z_step_um: float = 1.0, noise: bool = True, rng: RngLike = None,
                     photons: float = 200.0, tilt: float = 0.0, optics: Optics | None = None) -> FocusStack:
    """A z-stack through one specimen, as a microscope stepping its focus by ``z_step_um`` records it.

    ``in_focus``: the plane that is in focus (default: random, away from the ends of the stack).
    ``noise``: each plane is recorded independently with ``photons`` at full scale (see :func:`add_noise`).
    ``tilt``: specimen slope in µm of defocus per µm across the field (0 = flat; 0.01 = 1 µm per 100 µm).
    """
    try:
        z, h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (planes, height, width), got {shape!r}") from None
    if z < 1:
        raise ValueError(f"a focus stack needs at least one plane, got shape {shape!r}")
    if not np.isfinite(z_step_um) or z_step_um <= 0:
        raise ValueError(f"z_step_um must be a positive number, got {z_step_um!r}")
    gen = as_generator(rng)
    optics = optics or default_optics(kind)
    if in_focus is None:
        in_focus = int(gen.integers(z // 4, z - z // 4)) if z > 1 else 0
    if not 0 <= int(in_focus) < z:
        raise ValueError(f"in_focus must be a plane index in [0, {z - 1}], got {in_focus}")
    in_focus = int(in_focus)
    sharp = random_specimen((h, w), kind, rng=gen, pixel_um=optics.pixel_um)
    defocus = (np.arange(z) - in_focus) * float(z_step_um)
    slope = None
    if tilt:
        y, x = _field_coords_um((h, w), optics.pixel_um)
        angle = gen.uniform(0.0, 2.0 * np.pi)
        slope = (tilt * (x * np.cos(angle) + y * np.sin(angle))).astype(np.float32)
    planes = []
    for d in defocus:
        plane = blur(sharp, d if slope is None else d + slope, **optics.as_kwargs())
        if noise:
            plane = add_noise(plane, photons=photons, rng=gen)
        planes.append(np.clip(plane, 0.0, 1.0))
    return FocusStack(np.stack(planes), sharp, in_focus, defocus.astype(np.float32), optics, kind)


def _contrast(image: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(image, (0.5, 99.8))
    return float(lo), float(max(hi, lo + 1))


def _camera_meta(photons: float, offset: float, read_noise: float) -> dict:
    return {"photons_full_scale": photons, "offset_counts": offset, "read_noise_e": read_noise,
            "gain_e_per_count": 1.0}


_SAMPLE_STACK_PHOTONS, _SAMPLE_STACK_OFFSET = 1000.0, 100.0


def _sample_stack_series(rng: RngLike) -> FocusStack:
    return make_focus_stack((21, 256, 320), kind="nuclei", in_focus=10, z_step_um=1.0, rng=rng,
                            photons=_SAMPLE_STACK_PHOTONS, tilt=0.01)


def sample_stack_truth(rng: RngLike = 0) -> np.ndarray:
    """The noise-free in-focus specimen behind :func:`sample_stack` (same ``rng``), float32 in [0, 1].

    Lets the demo score a result against the truth rather than against a noisy in-focus plane.
    """
    return _sample_stack_series(rng).sharp


def sample_stack(rng: RngLike = 0) -> tuple[np.ndarray, dict]:
    """A (21, 256, 320) uint16 defocus z-stack of nuclei, 1 µm steps, in focus at plane 10, like a camera writes.

    Metadata: ``name``, ``axes`` ("ZYX"), ``scale`` (µm per pixel per axis), ``units``, ``in_focus``,
    ``defocus_um`` per plane, ``contrast_limits``, ``kind``, ``optics``, ``camera``, ``description``.
    """
    photons, offset = _SAMPLE_STACK_PHOTONS, _SAMPLE_STACK_OFFSET
    series = _sample_stack_series(rng)
    data = to_counts(series.stack, full_scale=photons, offset=offset)
    px = series.optics.pixel_um
    meta = {
        "name": "synthetic defocus z-stack (nuclei)",
        "axes": "ZYX",
        "scale": (1.0, px, px),
        "units": ("µm", "µm", "µm"),
        "in_focus": series.in_focus,
        "defocus_um": series.defocus_um.tolist(),
        "contrast_limits": _contrast(data[series.in_focus]),
        "kind": series.kind,
        "optics": asdict(series.optics),
        "camera": _camera_meta(photons, offset, 2.0),
        "description": "Simulated widefield z-stack (napari_dgno.synthetic): Hoechst-like nuclei, 20x/0.75, "
                       "specimen tilted 1 µm per 100 µm, Poisson + read noise, 16-bit counts.",
    }
    return data, meta


def sample_pair(rng: RngLike = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """A defocused (256, 320) uint16 image and the in-focus acquisition of the same field.

    The in-focus image carries camera noise too, as a real ground-truth plane (BBBC006's) does. Metadata:
    ``names`` (blurred, sharp), ``axes`` ("YX"), ``scale``, ``units``, ``defocus_um`` (min, max over the
    field), ``contrast_limits``, ``kind``, ``optics``, ``camera``, ``description``.
    """
    gen = as_generator(rng)
    photons, offset, kind = 800.0, 100.0, "mixed"
    optics = default_optics(kind)
    sharp = random_specimen((256, 320), kind, rng=gen, pixel_um=optics.pixel_um)
    depth = random_defocus_map(sharp.shape, 3.5, pixel_um=optics.pixel_um, rng=gen, max_tilt=0.02)
    blurred = blur(sharp, depth, **optics.as_kwargs())
    images = [to_counts(np.clip(add_noise(im, photons=photons, rng=gen), 0, 1), full_scale=photons, offset=offset)
              for im in (blurred, sharp)]
    meta = {
        "names": ("synthetic pair: defocused", "synthetic pair: in focus"),
        "axes": "YX",
        "scale": (optics.pixel_um, optics.pixel_um),
        "units": ("µm", "µm"),
        "defocus_um": (float(np.abs(depth).min()), float(np.abs(depth).max())),
        "contrast_limits": _contrast(images[1]),
        "kind": kind,
        "optics": asdict(optics),
        "camera": _camera_meta(photons, offset, 2.0),
        "description": "Simulated widefield image (napari_dgno.synthetic): nuclei, actin and puncta, defocused "
                       "3.5 µm at the centre on a tilted, bowed specimen, and the same field in focus.",
    }
    return images[0], images[1], meta


def sample_rgb(rng: RngLike = 0) -> tuple[np.ndarray, dict]:
    """A defocused (256, 256, 3) uint8 H&E-like brightfield patch, like a slide scanner's out-of-focus tile.

    Metadata: ``name``, ``axes`` ("YXC"), ``rgb`` (True), ``scale``, ``units``, ``defocus_um`` (min, max),
    ``kind``, ``optics``, ``description``.
    """
    gen = as_generator(rng)
    optics = default_optics("tissue")
    sharp = random_specimen((256, 256), "tissue", rng=gen, pixel_um=optics.pixel_um)
    depth = random_defocus_map(sharp.shape[:2], 2.5, pixel_um=optics.pixel_um, rng=gen)
    blurred = add_noise(blur(sharp, depth, **optics.as_kwargs()), photons=5000.0, background=0.0, rng=gen)
    data = np.clip(np.rint(np.clip(blurred, 0, 1) * 255.0), 0, 255).astype(np.uint8)
    meta = {
        "name": "synthetic H&E patch (defocused)",
        "axes": "YXC",
        "rgb": True,
        "scale": (optics.pixel_um, optics.pixel_um),
        "units": ("µm", "µm"),
        "defocus_um": (float(np.abs(depth).min()), float(np.abs(depth).max())),
        "kind": "tissue",
        "optics": asdict(optics),
        "description": "Simulated brightfield scan (napari_dgno.synthetic): haematoxylin and eosin by "
                       "Beer-Lambert, 20x/0.8, defocused 2.5 µm at the centre, 8-bit RGB.",
    }
    return data, meta
