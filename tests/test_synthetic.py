"""napari_dgno.synthetic: optics checked against textbook physics, camera statistics, determinism, contracts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_dgno import synthetic as syn
from napari_dgno.focus import tenengrad


def _encircled(psf: np.ndarray, radius_px: float) -> float:
    c = psf.shape[0] // 2
    yy, xx = np.mgrid[: psf.shape[0], : psf.shape[1]]
    return float(psf[np.hypot(yy - c, xx - c) <= radius_px].sum())


# --- PSF ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("defocus", [0.0, 1.0, 4.0, -4.0])
def test_psf_is_normalised_centred_and_symmetric(defocus):
    psf = syn.defocus_psf(defocus)
    assert psf.dtype == np.float32 and psf.ndim == 2 and psf.shape[0] == psf.shape[1] and psf.shape[0] % 2 == 1
    assert psf.sum() == pytest.approx(1.0, abs=1e-5)
    assert (psf >= 0).all()
    np.testing.assert_allclose(psf, psf[::-1, ::-1], atol=1e-6)
    np.testing.assert_allclose(psf, psf.T, atol=1e-6)


def test_in_focus_psf_width_matches_diffraction_limit():
    # Intensity FWHM of an Airy pattern is 0.514 λ / NA; sample finely so pixels barely widen it.
    lam, na, px = 0.52, 0.75, 0.02
    psf = syn.defocus_psf(0.0, wavelength_um=lam, na=na, pixel_um=px)
    c = psf.shape[0] // 2
    profile = psf[c] / psf[c, c]
    above = np.nonzero(profile >= 0.5)[0]
    # interpolate the half-maximum crossings on both sides
    left = above[0] - (profile[above[0]] - 0.5) / (profile[above[0]] - profile[above[0] - 1])
    right = above[-1] + (profile[above[-1]] - 0.5) / (profile[above[-1]] - profile[above[-1] + 1])
    assert (right - left) * px == pytest.approx(0.514 * lam / na, rel=0.05)
    assert psf[c, c] == psf.max()


@pytest.mark.parametrize("defocus", [0.0, 2.0, 6.0])
def test_psf_matches_the_radial_diffraction_integral(defocus):
    # Independent evaluation of the same scalar model: E(r) = ∫ exp(2πiz(kz - n/λ)) J0(2πkr) k dk over the pupil.
    from scipy.special import j0

    lam, na, px = 0.52, 0.75, 0.1
    psf = syn.defocus_psf(defocus, wavelength_um=lam, na=na, pixel_um=px).astype(np.float64)
    c = psf.shape[0] // 2
    k = np.linspace(0.0, na / lam, 4001)[:, None]
    r = np.arange(c + 1)[None, :] * px
    phase = np.exp(2j * np.pi * defocus * (np.sqrt((1 / lam) ** 2 - k**2) - 1 / lam))
    field = (phase * j0(2 * np.pi * k * r) * k).sum(axis=0)
    expected = np.abs(field) ** 2
    profile = psf[c, c:]
    expected, profile = expected / expected.max(), profile / profile.max()
    assert np.corrcoef(expected, profile)[0, 1] > 0.995
    assert np.abs(expected - profile).max() < 0.1     # pixel integration accounts for the rest


def test_defocused_psf_approaches_geometric_optics():
    # Far from focus, rays through pupil radius k = n·sinθ/λ (uniformly filled) land at r = |z|·tanθ, so the
    # energy inside r is (sin(atan(r/|z|)) / (NA/n))², out to the blur disc edge at |z|·tan(asin(NA/n)).
    z, na, px = 10.0, 0.75, 0.325
    psf = syn.defocus_psf(z, na=na, pixel_um=px)
    edge = z * np.tan(np.arcsin(na)) / px
    for frac in (0.3, 0.5):
        expected = (np.sin(np.arctan(frac * edge * px / z)) / na) ** 2
        assert _encircled(psf, frac * edge) == pytest.approx(expected, abs=0.03)
    assert _encircled(psf, 1.1 * edge) > 0.95
    assert _encircled(psf, 0.1 * edge) < 0.05     # no bright core left: the light is spread over the disc


def test_psf_blur_grows_with_defocus_and_is_even_in_z():
    spreads = []
    for z in (0.0, 1.0, 2.0, 4.0):
        psf = syn.defocus_psf(z, size=61)
        c = 30
        yy, xx = np.mgrid[:61, :61]
        spreads.append(float((psf * ((yy - c) ** 2 + (xx - c) ** 2)).sum()))
    assert spreads == sorted(spreads) and spreads[-1] > 5 * spreads[0]
    np.testing.assert_array_equal(syn.defocus_psf(2.5), syn.defocus_psf(-2.5))


def test_psf_oil_immersion_and_bad_optics():
    psf = syn.defocus_psf(1.0, na=1.4, refractive_index=1.515, pixel_um=0.1)
    assert psf.sum() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="refractive_index"):
        syn.defocus_psf(1.0, na=1.2, refractive_index=1.0)
    with pytest.raises(ValueError, match="odd"):
        syn.defocus_psf(1.0, size=20)
    with pytest.raises(ValueError, match="pixel_um"):
        syn.defocus_psf(1.0, pixel_um=0)


def test_returned_psf_can_be_modified_without_affecting_later_calls():
    first = syn.defocus_psf(1.7)
    first[:] = 0
    assert syn.defocus_psf(1.7).sum() == pytest.approx(1.0, abs=1e-5)


# --- blur -----------------------------------------------------------------------------------------------------

def test_blur_keeps_a_flat_field_flat_and_conserves_intensity():
    flat = np.full((64, 80), 0.3, np.float32)
    np.testing.assert_allclose(syn.blur(flat, 5.0), 0.3, rtol=1e-4)
    spot = np.zeros((101, 101), np.float32)
    spot[50, 50] = 1.0
    out = syn.blur(spot, 3.0)
    assert out.sum() == pytest.approx(1.0, rel=1e-3)
    # a point source images as the PSF itself
    psf = syn.defocus_psf(3.0)
    h = psf.shape[0] // 2
    np.testing.assert_allclose(out[50 - h:50 + h + 1, 50 - h:50 + h + 1], psf, atol=1e-6)


def test_blur_removes_detail_monotonically_and_leaves_input_alone():
    sharp = syn.random_specimen((128, 128), "actin", rng=3)
    before = sharp.copy()
    scores = [float(tenengrad(syn.blur(sharp, z).astype(np.float64))) for z in (0.0, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in itertools.pairwise(scores))
    np.testing.assert_array_equal(sharp, before)


def test_spatially_varying_blur_matches_uniform_blur_where_the_map_is_at_its_ends():
    sharp = syn.random_specimen((96, 128), "nuclei", rng=5)
    ramp = np.broadcast_to(np.linspace(1.0, 4.0, 128, dtype=np.float32), (96, 128))
    varying = syn.blur(sharp, ramp)
    np.testing.assert_allclose(varying[:, 0], syn.blur(sharp, 1.0)[:, 0], atol=1e-5)
    np.testing.assert_allclose(varying[:, -1], syn.blur(sharp, 4.0)[:, -1], atol=1e-5)
    # and in between it is neither end: the blur really varies across the field
    mid = slice(56, 72)
    assert not np.allclose(varying[:, mid], syn.blur(sharp, 1.0)[:, mid], atol=1e-3)
    assert not np.allclose(varying[:, mid], syn.blur(sharp, 4.0)[:, mid], atol=1e-3)


def test_rgb_blur_is_per_channel_with_red_blurrier_than_blue():
    grey = syn.random_specimen((96, 96), "nuclei", rng=2)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    out = syn.blur(rgb, 0.0)
    assert out.shape == rgb.shape and out.dtype == np.float32
    detail = [float(tenengrad(out[..., c].astype(np.float64))) for c in range(3)]
    assert detail[0] < detail[1] < detail[2]   # diffraction scales with wavelength: R 0.61, G 0.54, B 0.46 µm
    np.testing.assert_allclose(syn.blur(rgb, 0.0, wavelength_um=0.5)[..., 0], syn.blur(grey, 0.0, wavelength_um=0.5),
                               atol=1e-6)


def test_blur_rejects_bad_inputs_clearly():
    img = np.zeros((32, 32), np.float32)
    with pytest.raises(ValueError, match="NaN"):
        syn.blur(np.full((32, 32), np.nan), 1.0)
    with pytest.raises(ValueError, match="map of shape"):
        syn.blur(img, np.ones((16, 16)))
    with pytest.raises(ValueError, match="wavelength"):
        syn.blur(np.zeros((32, 32, 3)), 1.0, wavelength_um=(0.5, 0.6))
    with pytest.raises(ValueError, match="shape"):
        syn.blur(np.zeros(32), 1.0)


# --- camera ---------------------------------------------------------------------------------------------------

def test_noise_has_poisson_plus_read_statistics():
    flat = np.full((256, 256), 0.5, np.float32)
    photons, read, bg = 100.0, 2.0, 5.0
    noisy = syn.add_noise(flat, photons=photons, read_noise=read, background=bg, rng=0)
    assert noisy.dtype == np.float32 and noisy.shape == flat.shape
    assert noisy.mean() == pytest.approx(0.5, abs=0.003)
    expected_var = (0.5 * photons + bg + read**2) / photons**2
    assert noisy.var() == pytest.approx(expected_var, rel=0.03)
    # bright pixels use the normal limit of the Poisson law; their statistics must be the same
    bright = syn.add_noise(flat, photons=1000.0, read_noise=0.0, background=0.0, rng=1)
    assert bright.var() == pytest.approx(0.5 * 1000.0 / 1000.0**2, rel=0.03)


def test_noise_is_deterministic_clipped_at_zero_and_leaves_input_alone():
    dark = np.full((64, 64), 0.001, np.float32)
    before = dark.copy()
    a = syn.add_noise(dark, photons=50.0, rng=7)
    np.testing.assert_array_equal(a, syn.add_noise(dark, photons=50.0, rng=7))
    assert not np.array_equal(a, syn.add_noise(dark, photons=50.0, rng=8))
    assert a.min() >= 0.0
    np.testing.assert_array_equal(dark, before)
    with pytest.raises(ValueError, match="non-negative"):
        syn.add_noise(np.full((8, 8), -1.0))
    with pytest.raises(ValueError, match="photons"):
        syn.add_noise(dark, photons=0.0)


# --- specimens, pairs, stacks, samples ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["nuclei", "actin", "mixed", "tissue"])
def test_specimens_are_deterministic_images_in_unit_range(kind):
    a = syn.random_specimen((96, 120), kind, rng=11)
    expected_shape = (96, 120, 3) if kind == "tissue" else (96, 120)
    assert a.shape == expected_shape and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0 and a.std() > 0.01
    np.testing.assert_array_equal(a, syn.random_specimen((96, 120), kind, rng=11))
    assert not np.array_equal(a, syn.random_specimen((96, 120), kind, rng=12))


def test_specimen_errors_and_generator_input():
    with pytest.raises(ValueError, match="kind"):
        syn.random_specimen((64, 64), "bacteria")
    with pytest.raises(ValueError, match="at least"):
        syn.random_specimen((4, 64))
    with pytest.raises(TypeError, match="rng"):
        syn.random_specimen((64, 64), rng="seed")
    gen = np.random.default_rng(0)
    first, second = syn.random_specimen((64, 64), rng=gen), syn.random_specimen((64, 64), rng=gen)
    assert not np.array_equal(first, second)   # a Generator is advanced, not restarted


@pytest.mark.parametrize("kind", ["nuclei", "mixed", "tissue"])
def test_make_pair_is_a_blurred_noisy_view_of_the_sharp_truth(kind):
    blurred, sharp = syn.make_pair((128, 128), kind=kind, rng=4)
    assert blurred.shape == sharp.shape == ((128, 128, 3) if kind == "tissue" else (128, 128))
    assert blurred.dtype == sharp.dtype == np.float32
    for im in (blurred, sharp):
        assert im.min() >= 0.0 and im.max() <= 1.0
    b1, s1 = syn.make_pair((128, 128), kind=kind, rng=4)
    np.testing.assert_array_equal(b1, blurred)
    np.testing.assert_array_equal(s1, sharp)
    clean, truth = syn.make_pair((128, 128), kind=kind, rng=4, noise=False)
    grey = (lambda x: x.mean(-1)) if kind == "tissue" else (lambda x: x)
    assert tenengrad(grey(clean).astype(np.float64)) < 0.5 * tenengrad(grey(truth).astype(np.float64))
    assert abs(float(clean.mean()) - float(truth.mean())) < 0.02   # defocus moves light, it does not remove it


def test_make_pair_with_given_defocus_is_exactly_the_blur_of_the_truth():
    blurred, sharp = syn.make_pair((64, 64), kind="actin", defocus_um=2.0, noise=False, rng=1)
    optics = syn.default_optics("actin")
    np.testing.assert_allclose(blurred, np.clip(syn.blur(sharp, 2.0, **optics.as_kwargs()), 0, 1), atol=1e-6)


def test_random_defocus_varies_across_the_field_within_the_realistic_range():
    lows, highs = [], []
    for seed in range(20):
        depth = syn.random_defocus_map((256, 256), np.random.default_rng(seed).uniform(*syn.DEFOCUS_RANGE_UM),
                                       pixel_um=0.325, rng=seed)
        lows.append(depth.min())
        highs.append(depth.max())
    spans = np.array(highs) - np.array(lows)
    assert (spans > 0).all() and spans.max() > 0.5
    assert min(lows) > 0.0 and max(highs) < 8.0


@pytest.mark.parametrize("in_focus", [0, 3, 6])
def test_focus_stack_planes_follow_the_stage(in_focus):
    fs = syn.make_focus_stack((7, 64, 64), kind="nuclei", in_focus=in_focus, z_step_um=0.5, noise=False, rng=2)
    assert fs.stack.shape == (7, 64, 64) and fs.stack.dtype == np.float32 and fs.in_focus == in_focus
    np.testing.assert_allclose(fs.defocus_um, (np.arange(7) - in_focus) * 0.5)
    optics = syn.default_optics("nuclei")
    np.testing.assert_allclose(fs.stack[in_focus], np.clip(syn.blur(fs.sharp, 0.0, **optics.as_kwargs()), 0, 1),
                               atol=1e-6)
    with pytest.raises(ValueError, match="in_focus"):
        syn.make_focus_stack((7, 64, 64), in_focus=7)


def test_focus_stack_default_in_focus_plane_is_inside_and_rgb_stacks_work():
    for seed in range(5):
        fs = syn.make_focus_stack((9, 32, 32), rng=seed)
        assert 2 <= fs.in_focus <= 6
    rgb = syn.make_focus_stack((3, 32, 32), kind="tissue", rng=0)
    assert rgb.stack.shape == (3, 32, 32, 3)


def test_samples_look_like_camera_data_with_metadata():
    stack, meta = syn.sample_stack()
    assert stack.dtype == np.uint16 and stack.ndim == 3 and meta["axes"] == "ZYX"
    assert len(meta["scale"]) == 3 and 0 <= meta["in_focus"] < stack.shape[0]
    assert len(meta["defocus_um"]) == stack.shape[0] and meta["name"]
    lo, hi = meta["contrast_limits"]
    assert stack.min() <= hi and lo < hi
    np.testing.assert_array_equal(stack, syn.sample_stack()[0])

    blurred, sharp, meta = syn.sample_pair()
    assert blurred.dtype == sharp.dtype == np.uint16 and blurred.shape == sharp.shape and blurred.ndim == 2
    assert len(meta["names"]) == 2 and meta["axes"] == "YX"
    assert tenengrad(blurred.astype(np.float64)) < tenengrad(sharp.astype(np.float64))

    rgb, meta = syn.sample_rgb()
    assert rgb.dtype == np.uint8 and rgb.shape[-1] == 3 and rgb.ndim == 3 and meta["rgb"] is True
    assert rgb.mean() > 60   # brightfield: mostly light
