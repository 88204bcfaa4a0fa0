"""napari_dgno.focus on simulated focus series with a known in-focus plane, and on awkward inputs."""

from __future__ import annotations

import threading

import dask.array as da
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from napari_dgno import focus
from napari_dgno.engine import Cancelled
from napari_dgno.synthetic import make_focus_stack

MEASURE_NAMES = list(focus.MEASURES)


def _grey(stack: np.ndarray) -> np.ndarray:
    return stack.mean(axis=-1) if stack.ndim == 4 else stack


@pytest.fixture(scope="module")
def series():
    """A noisy focus series with its in-focus plane away from the middle, so 'the middle' cannot pass."""
    return make_focus_stack((9, 128, 128), kind="mixed", in_focus=2, rng=21)


@pytest.mark.parametrize("measure", MEASURE_NAMES)
@pytest.mark.parametrize("kind,seed", [("nuclei", 0), ("nuclei", 1), ("actin", 2), ("mixed", 3), ("tissue", 4)])
def test_measures_rank_a_simulated_focus_series(measure, kind, seed):
    fs = make_focus_stack((11, 128, 128), kind=kind, rng=seed)
    curve = focus.focus_curve(_grey(fs.stack), measure)
    assert curve.shape == (11,) and np.isfinite(curve).all()
    assert int(np.argmax(curve)) == fs.in_focus
    assert focus.best_focus_plane(_grey(fs.stack), measure) == fs.in_focus
    # falls off (almost) monotonically on both sides: noise may wobble the far planes by a few % of the range
    tolerance = 0.1 * (curve.max() - curve.min())
    i = fs.in_focus
    for side in (curve[: i + 1][::-1], curve[i:]):
        assert (np.diff(side) <= tolerance).all()
    # and the planes within 2 µm of focus are strictly ordered by |defocus|
    near = np.abs(fs.defocus_um) <= 2.0
    for side in (np.arange(i, -1, -1), np.arange(i, 11)):
        steps = side[near[side]]
        assert (np.diff(curve[steps]) < 0).all()


@pytest.mark.parametrize("measure", MEASURE_NAMES)
def test_flat_and_empty_images_score_zero_not_nan(measure):
    for value in (0.0, 7.0):
        assert focus.focus_measure(np.full((32, 40), value), measure) == 0.0
    curve = focus.focus_curve(np.full((3, 16, 16), 5, np.uint16), measure)
    np.testing.assert_array_equal(curve, 0.0)
    assert focus.best_focus_plane(np.zeros((3, 16, 16)), measure) == 0


@pytest.mark.parametrize("measure", MEASURE_NAMES)
def test_integer_images_are_measured_without_wraparound(measure, series):
    scaled = np.rint(series.stack * 4000).astype(np.float64)
    as_uint16 = scaled.astype(np.uint16)
    np.testing.assert_allclose(focus.focus_curve(as_uint16, measure), focus.focus_curve(scaled, measure), rtol=1e-12)
    # uint8 differences would wrap (5 - 200 = 61) if computed in the input dtype
    edge = np.zeros((16, 16), np.uint8)
    edge[:, 8:] = 200
    assert focus.focus_measure(edge, measure) == pytest.approx(focus.focus_measure(edge.astype(float), measure))
    assert focus.focus_measure(edge.astype(bool), measure) > 0


def test_nan_and_bad_inputs_raise_clear_errors():
    stack = np.ones((4, 16, 16))
    stack[2, 3, 3] = np.nan
    with pytest.raises(ValueError, match="plane 2 .*NaN"):
        focus.focus_curve(stack)
    with pytest.raises(ValueError, match="NaN"):
        focus.focus_measure(stack[2])
    with pytest.raises(ValueError, match="3-D stack"):
        focus.focus_curve(np.ones((16, 16)))
    with pytest.raises(ValueError, match="[Ss]elect one channel"):
        focus.focus_curve(np.ones((2, 3, 16, 16)))
    with pytest.raises(ValueError, match="unknown focus measure 'sharpness'"):
        focus.focus_measure(np.ones((8, 8)), "sharpness")
    with pytest.raises(ValueError, match="at least 3 x 3"):
        focus.focus_measure(np.ones((2, 8)))
    with pytest.raises(TypeError, match="real numbers"):
        focus.focus_measure(np.ones((8, 8), complex))


def test_dask_stacks_give_the_same_curve_and_compute_each_plane_once(series):
    calls = []
    lock = threading.Lock()

    def record(block, block_info=None):
        with lock:
            calls.append(block_info[0]["chunk-location"][0])
        return block

    lazy = da.from_array(series.stack, chunks=(1, 64, 64)).map_blocks(record, dtype=series.stack.dtype)
    expected = focus.focus_curve(series.stack, "tenengrad")
    np.testing.assert_allclose(focus.focus_curve(lazy, "tenengrad"), expected, rtol=1e-12)
    assert sorted(calls) == sorted(list(range(9)) * 4)     # 9 planes x 4 tiles, each computed exactly once


def test_axis_selects_the_plane_axis(series):
    zyx = series.stack
    yxz = np.moveaxis(zyx, 0, -1)
    np.testing.assert_allclose(focus.focus_curve(yxz, "brenner", axis=2), focus.focus_curve(zyx, "brenner"))
    np.testing.assert_allclose(focus.focus_curve(yxz, "brenner", axis=-1), focus.focus_curve(zyx, "brenner"))
    with pytest.raises(ValueError, match="axis"):
        focus.focus_curve(zyx, axis=3)


def test_progress_and_cancel(series):
    seen = []
    focus.focus_curve(series.stack, progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (9, 9)
    lazy = da.from_array(series.stack, chunks=(1, 128, 128))
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled, match="cancelled"):
        focus.focus_curve(lazy, cancel=stop)
    with pytest.raises(Cancelled):
        focus.focus_table(lazy, lazy, cancel=lambda: True)
    with pytest.raises(TypeError, match="cancel"):
        focus.focus_curve(lazy, cancel="stop")


def test_reference_scores_against_the_in_focus_plane(series):
    scores = focus.reference_scores(series.stack, series.in_focus)
    psnr, ssim = scores["psnr"], scores["ssim"]
    assert psnr.shape == ssim.shape == (9,)
    assert np.isinf(psnr[series.in_focus]) and ssim[series.in_focus] == pytest.approx(1.0)
    others = np.delete(np.arange(9), series.in_focus)
    assert np.isfinite(psnr[others]).all() and (ssim[others] < 1).all()
    # away from focus the planes resemble the reference less and less
    after = np.arange(series.in_focus + 1, 9)
    assert (np.diff(psnr[after]) < 0).all() and (np.diff(ssim[after]) < 0).all()
    # data range is the reference's own range, as in an independent computation with scikit-image
    ref = series.stack[series.in_focus].astype(np.float64)
    rng = ref.max() - ref.min()
    plane = series.stack[5].astype(np.float64)
    assert psnr[5] == pytest.approx(peak_signal_noise_ratio(ref, plane, data_range=rng))
    assert ssim[5] == pytest.approx(structural_similarity(ref, plane, data_range=rng))


def test_reference_scores_do_not_depend_on_intensity_units(series):
    a = focus.reference_scores(series.stack, 2)
    counts = focus.reference_scores(np.rint(series.stack * 3000 + 100).astype(np.uint16), 2)
    np.testing.assert_allclose(a["psnr"], counts["psnr"], atol=0.05)     # PSNR ignores gain and offset
    scaled = focus.reference_scores(series.stack * 3000.0, 2)
    np.testing.assert_allclose(a["ssim"], scaled["ssim"], atol=1e-6)    # SSIM ignores gain (not offset)


def test_reference_auto_image_and_errors(series):
    auto = focus.reference_scores(series.stack, "auto")
    assert np.isinf(auto["psnr"][series.in_focus])
    truth = focus.reference_scores(series.stack, series.sharp)       # the noise-free specimen as reference
    assert int(np.argmax(truth["ssim"])) == series.in_focus
    with pytest.raises(ValueError, match="out of range.*0 to 8"):
        focus.reference_scores(series.stack, 9)
    with pytest.raises(ValueError, match="out of range"):
        focus.reference_scores(series.stack, -1)
    with pytest.raises(ValueError, match="shape"):
        focus.reference_scores(series.stack, np.zeros((64, 64)))
    with pytest.raises(ValueError, match="'auto'"):
        focus.reference_scores(series.stack, "best")
    with pytest.raises(ValueError, match="flat"):
        focus.reference_scores(np.ones((3, 16, 16)), 0)
    flat_int = np.ones((3, 16, 16), np.uint8)
    flat_int[1] = 5
    assert focus.reference_scores(flat_int, 0)["psnr"][1] == pytest.approx(10 * np.log10(255**2 / 16))
    assert focus.reference_scores(np.ones((3, 16, 16)), 0, data_range=1.0)["ssim"][2] == pytest.approx(1.0)


def test_focus_table_rows_agree_with_curves_and_scores(series):
    result = np.clip(series.stack * 0.8 + 0.1 * series.stack[series.in_focus], 0, 1)  # any second stack
    rows = focus.focus_table(series.stack, result, reference="auto", measure="tenengrad")
    assert len(rows) == 9 and [r["plane"] for r in rows] == list(range(9))
    assert set(rows[0]) == set(focus.TABLE_COLUMNS)
    np.testing.assert_allclose([r["focus_input"] for r in rows], focus.focus_curve(series.stack, "tenengrad"))
    np.testing.assert_allclose([r["focus_result"] for r in rows], focus.focus_curve(result, "tenengrad"))
    reference = series.stack[focus.best_focus_plane(series.stack, "tenengrad")]
    scores = focus.reference_scores(result, reference.astype(np.float64),
                                    data_range=float(reference.max() - reference.min()))
    np.testing.assert_allclose([r["psnr_result"] for r in rows], scores["psnr"])
    np.testing.assert_allclose([r["ssim_result"] for r in rows], scores["ssim"])


def test_focus_table_without_result_or_reference(series):
    rows = focus.focus_table(series.stack, reference=None)
    assert all(r["focus_result"] is None and r["psnr_input"] is None and r["ssim_result"] is None for r in rows)
    assert all(isinstance(r["focus_input"], float) for r in rows)
    rows = focus.focus_table(series.stack, reference=4)
    assert np.isinf(rows[4]["psnr_input"]) and rows[4]["psnr_result"] is None
    with pytest.raises(ValueError, match="result has shape"):
        focus.focus_table(series.stack, series.stack[:, :64])
    with pytest.raises(ValueError, match="out of range"):
        focus.focus_table(series.stack, reference=20)


def test_focus_table_reads_a_lazy_result_once(series):
    calls = []

    def record(block, block_info=None):
        calls.append(block_info[0]["chunk-location"][0])
        return block

    lazy_result = da.from_array(series.stack, chunks=(1, 128, 128)).map_blocks(record, dtype=series.stack.dtype)
    seen = []
    rows = focus.focus_table(series.stack, lazy_result, progress=lambda d, t: seen.append((d, t)))
    assert sorted(calls) == list(range(9))
    assert seen[-1] == (27, 27)     # input twice (find the reference, then score), result once
    assert [r["focus_result"] for r in rows] == pytest.approx([r["focus_input"] for r in rows])
