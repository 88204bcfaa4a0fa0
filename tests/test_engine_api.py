"""deblur(): axes, channels, normalisation, models, devices, progress, cancellation and bad input."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch

import napari_dgno
from napari_dgno import DGNO
from napari_dgno.engine import Cancelled, ConstantPlaneWarning, TileSizeReduced, deblur, guess_axes
from napari_dgno.model.configs import tiny_network_g


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


class Recorder:
    """Identity model that records the batches it sees (values in model units)."""

    def __init__(self, in_channels: int | None = None):
        if in_channels is not None:
            self.in_channels = in_channels
        self.batches: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.batches.append(x.clone())
        return [x[..., ::4, ::4], x]  # like DGNO: a list whose last element is full resolution


class Negate:
    """1 - x in model units: distinguishes processed channels from passed-through ones."""

    def __init__(self, in_channels: int = 1):
        self.in_channels = in_channels

    def __call__(self, x):
        return 1.0 - x


class Info:
    def __init__(self, normalization: str, name: str = "fake", sha256: str | None = "abc"):
        self.normalization, self.name, self.sha256 = normalization, name, sha256


def minmax(plane: np.ndarray) -> np.ndarray:
    plane = plane.astype(np.float64)
    return (plane - plane.min()) / (plane.max() - plane.min())


# ------------------------------------------------------------------------------ normalisation


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
def test_identity_round_trips_in_input_units(dtype):
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        image = rng.integers(max(info.min, -1000), min(info.max, 60000), size=(3, 45, 67), endpoint=True).astype(dtype)
    else:
        image = (rng.normal(1000.0, 300.0, size=(3, 45, 67))).astype(dtype)
    original = image.copy()
    out = deblur(image, identity, axes="ZYX", tile=32, overlap=8, device="cpu")
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_array_equal(image, original)  # input untouched
    span = float(image.max()) - float(image.min())
    np.testing.assert_allclose(out, image.astype(np.float64), rtol=0, atol=span * 2e-7)
    if np.dtype(dtype).kind in "ui":  # integers survive exactly after rounding
        np.testing.assert_array_equal(np.rint(out), image)


def test_minmax_is_computed_per_whole_plane_not_per_tile():
    rng = np.random.default_rng(1)
    image = np.stack([rng.random((70, 90)) * 10, rng.random((70, 90)) * 1000 + 50]).astype(np.float32)
    model = Recorder()
    deblur(image, model, axes="ZYX", tile=32, overlap=8, batch_size=1, device="cpu")
    seen = torch.cat(model.batches)
    assert len(model.batches) > 2
    assert seen.min() >= 0 and seen.max() <= 1
    # one tile holds the plane minimum, another its maximum: both normalised with the plane's range
    assert any(b.min() == 0 for b in model.batches) and any(b.max() == 1 for b in model.batches)
    out = deblur(image, Negate(), axes="ZYX", tile=32, overlap=8, device="cpu")
    for z in range(2):
        span = image[z].max() - image[z].min()
        expected = (1 - minmax(image[z])) * span + image[z].min()
        np.testing.assert_allclose(out[z], expected, rtol=0, atol=span * 1e-6)


def test_rgb255_divides_by_the_dtype_range():
    rng = np.random.default_rng(2)
    model = Recorder(in_channels=3)
    model.info = Info("rgb255")
    image = rng.integers(10, 200, size=(40, 50, 3), dtype=np.uint8)
    out = deblur(image, model, tile=32, overlap=8, device="cpu")
    np.testing.assert_allclose(out, image, atol=1e-4)
    full = model.batches[0]
    assert full.shape[1] == 3
    assert float(full.max()) <= 200 / 255 + 1e-6 and float(full.min()) >= 10 / 255 - 1e-6
    image16 = rng.integers(0, 65535, size=(40, 50, 3), dtype=np.uint16)
    model.batches.clear()
    np.testing.assert_allclose(deblur(image16, model, device="cpu"), image16, atol=0.02)
    assert float(torch.cat(model.batches).max()) <= 1.0


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_rgb255_float_images_in_0_1_or_0_255(scale):
    model = Negate(in_channels=3)
    model.info = Info("rgb255")
    image = (np.random.default_rng(3).random((32, 40, 3)) * scale).astype(np.float32)
    out = deblur(image, model, device="cpu")
    np.testing.assert_allclose(out, scale - image, rtol=1e-5, atol=1e-5 * scale)


def test_rgb255_float_out_of_range_is_refused():
    model = Negate(in_channels=3)
    model.info = Info("rgb255")
    with pytest.raises(ValueError, match="neither 0..1 nor 0..255"):
        deblur(np.full((32, 40, 3), 300.0, np.float32), model, device="cpu")


# ------------------------------------------------------------------------------ axes and channels


def test_rgb_with_one_channel_model_processes_each_channel_alone():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 255, size=(40, 50, 3), dtype=np.uint8)
    out = deblur(image, Negate(), device="cpu")  # guessed YXC
    for c in range(3):
        plane = image[..., c].astype(np.float64)
        np.testing.assert_allclose(out[..., c], plane.max() + plane.min() - plane, atol=1e-4)


def test_rgba_alpha_is_passed_through_unchanged():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, size=(40, 50, 4), dtype=np.uint8)
    for model in (Negate(), Negate(in_channels=3)):
        out = deblur(image, model, device="cpu")
        np.testing.assert_array_equal(out[..., 3], image[..., 3].astype(np.float32))
        assert not np.allclose(out[..., 0], image[..., 0])


def test_three_channel_model_sees_rgb_together():
    image = np.random.default_rng(6).integers(0, 255, size=(2, 40, 50, 3), dtype=np.uint8)
    model = Recorder(in_channels=3)
    out = deblur(image, model, device="cpu")  # guessed ZYXC
    assert all(b.shape[1] == 3 for b in model.batches)
    np.testing.assert_allclose(out, image, atol=1e-4)


def test_three_channel_model_on_single_channel_data_is_refused():
    with pytest.raises(ValueError, match="expects 3 input channels"):
        deblur(np.ones((40, 50), np.float32), Negate(in_channels=3), device="cpu")
    with pytest.raises(ValueError, match="expects 3 input channels"):
        deblur(np.ones((2, 40, 50), np.float32), Negate(in_channels=3), axes="CYX", device="cpu")


@pytest.mark.parametrize("axes,shape", [
    ("ZYX", (3, 33, 40)), ("TYX", (2, 33, 40)), ("TZYX", (2, 3, 33, 40)), ("CYX", (2, 33, 40)),
    ("CZYX", (2, 3, 33, 40)), ("ZYXC", (2, 33, 40, 3)), ("TZCYX", (2, 2, 2, 33, 40)), ("YXZ", (33, 40, 3)),
])
def test_stacks_and_time_series_process_every_plane_alone(axes, shape):
    rng = np.random.default_rng(7)
    image = rng.random(shape).astype(np.float32) * 100
    out = deblur(image, Negate(), axes=axes, tile=32, overlap=8, device="cpu")
    assert out.shape == image.shape
    y, x = axes.index("Y"), axes.index("X")
    planes_in = np.moveaxis(image, (y, x), (-2, -1)).reshape(-1, shape[y], shape[x])
    planes_out = np.moveaxis(out, (y, x), (-2, -1)).reshape(-1, shape[y], shape[x])
    for p_in, p_out in zip(planes_in, planes_out):
        span = p_in.max() - p_in.min()
        np.testing.assert_allclose(p_out, p_in.max() + p_in.min() - p_in.astype(np.float64), rtol=0, atol=span * 1e-6)


def test_axes_guessing():
    assert guess_axes((64, 64), np.uint16) == "YX"
    assert guess_axes((64, 64, 3), np.uint8) == "YXC"
    assert guess_axes((64, 64, 4), np.uint8) == "YXC"
    assert guess_axes((5, 64, 64), np.uint16) == "ZYX"
    assert guess_axes((5, 64, 64, 3), np.uint8) == "ZYXC"
    assert guess_axes((2, 5, 64, 64), np.uint16) == "TZYX"
    assert guess_axes((2, 5, 3, 64, 64), np.uint16) == "TZCYX"
    assert guess_axes((3, 64, 64), np.uint8, in_channels=3) == "CYX"
    assert guess_axes((5, 3, 64, 64), np.uint8, in_channels=3) == "ZCYX"


@pytest.mark.parametrize("shape,dtype,kwargs,message", [
    ((64, 64, 4), np.float32, {}, "RGBA"),
    ((3, 3, 64, 64), np.uint8, {"in_channels": 3}, "cannot tell which dimension"),
    ((2, 2, 2, 2, 64, 64), np.uint16, {}, "pass axes="),
])
def test_ambiguous_axes_name_the_problem_and_the_fix(shape, dtype, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        guess_axes(shape, dtype, **kwargs)
    assert "axes" in str(info.value)


def test_one_dimensional_data_is_refused():
    with pytest.raises(ValueError, match="at least two dimensions"):
        deblur(np.ones(64, np.float32), identity, device="cpu")


@pytest.mark.parametrize("axes,message", [
    ("ZYX", "has 3 letters but the image has 2"), ("YY", "repeats"), ("ZX", "must contain Y and X"),
    ("Y1", "letters"),
])
def test_bad_axes_strings(axes, message):
    with pytest.raises(ValueError, match=message):
        deblur(np.ones((8, 8), np.float32), identity, axes=axes, device="cpu")


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("image,message", [
    (np.zeros((0, 10), np.float32), "empty"),
    (np.zeros((10, 10), bool), "boolean"),
    (np.zeros((10, 10), np.complex64), "complex"),
    (np.array([["a", "b"], ["c", "d"]]), "unsupported image dtype"),
    (np.zeros((4, 4), object), "unsupported image dtype"),
])
def test_unusable_images_are_refused_with_the_fix(image, message):
    with pytest.raises(ValueError, match=message):
        deblur(image, identity, device="cpu")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused_before_any_work(bad):
    image = np.random.default_rng(8).random((4, 40, 40)).astype(np.float32)
    image[3, 5, 5] = bad
    model = Recorder()
    with pytest.raises(ValueError, match=r"plane Z=3 contains NaN or infinite.*nan_to_num"):
        deblur(image, model, device="cpu")
    assert model.batches == []


def test_constant_plane_passes_through_with_a_warning():
    image = np.random.default_rng(9).random((3, 40, 40)).astype(np.float32)
    image[1] = 7.0
    with pytest.warns(ConstantPlaneWarning, match="plane Z=1 is constant"):
        out = deblur(image, Negate(), device="cpu")
    np.testing.assert_array_equal(out[1], 7.0)
    assert not np.allclose(out[0], image[0])


@pytest.mark.parametrize("kwargs,error,message", [
    ({"device": "gpu"}, ValueError, "unknown device"),
    ({"device": "cuda"}, RuntimeError, "CUDA is not available"),
    ({"device": "mps"}, RuntimeError, "MPS"),
    ({"precision": "fp8"}, ValueError, "precision must be one of"),
    ({"precision": "fp16", "device": "cpu"}, ValueError, "not supported on CPU"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"cancel": 3}, TypeError, "cancel must be"),
    ({"progress": "bar"}, TypeError, "progress must be"),
])
def test_bad_settings_are_refused(kwargs, error, message):
    if kwargs.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if kwargs.get("device") == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(error, match=message):
        deblur(np.ones((16, 16), np.float32), identity, **{"device": "cpu", **kwargs})


def test_bad_models_are_refused():
    with pytest.raises(TypeError, match="model must be"):
        deblur(np.ones((16, 16), np.float32), 42, device="cpu")
    with pytest.raises(ValueError, match="same shape"):
        deblur(np.arange(256, dtype=np.float32).reshape(16, 16), lambda x: x[..., :8], device="cpu")
    with pytest.raises(TypeError, match="must return a tensor"):
        deblur(np.arange(256, dtype=np.float32).reshape(16, 16), lambda x: x.numpy(), device="cpu")


# ------------------------------------------------------------------------------ progress, cancel, memory


def test_progress_counts_tiles_of_the_whole_job():
    calls = []
    image = np.random.default_rng(10).random((3, 70, 70)).astype(np.float32)
    deblur(image, identity, tile=32, overlap=8, batch_size=2, device="cpu", progress=lambda d, t: calls.append((d, t)))
    tiles = 3 * 9  # 3 planes of 3x3 tiles
    assert calls[0] == (0, tiles) and calls[-1] == (tiles, tiles)
    assert all(t == tiles for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) == 1 + 3 * 5  # the start, then one call per batch: 9 tiles per plane in batches of 2


@pytest.mark.parametrize("token", ["event", "callable"])
def test_cancel_between_batches_raises_and_returns_nothing(token):
    event = threading.Event()
    seen = []

    def model(x):
        seen.append(1)
        if len(seen) == 3:
            event.set()
        return x

    cancel = event if token == "event" else event.is_set
    result = None
    with pytest.raises(Cancelled):
        result = deblur(np.random.rand(4, 64, 64).astype(np.float32), model, tile=32, overlap=8, device="cpu",
                        cancel=cancel)
    assert result is None and len(seen) == 3  # stopped at the next batch


class MemoryLimited:
    """A model on a device that cannot hold tiles larger than ``limit`` pixels per side."""

    def __init__(self, limit: int):
        self.limit = limit
        self.sizes = []

    def __call__(self, x):
        self.sizes.append(x.shape[-1])
        if max(x.shape[-2:]) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x


def test_out_of_memory_halves_the_tile_retries_and_warns():
    image = np.random.default_rng(11).random((2, 300, 300)).astype(np.float32)
    image[:, 0, 0], image[:, 1, 1] = 0.0, 1.0
    model = MemoryLimited(128)
    with pytest.warns(TileSizeReduced, match="retrying with 128-pixel tiles"):
        out = deblur(image, model, tile=512, overlap=32, device="cpu")
    np.testing.assert_array_equal(out, image)
    assert 256 in model.sizes and set(model.sizes[-5:]) == {128}
    assert model.sizes.count(256) == 1  # the smaller tile is kept for the next plane
    with pytest.raises(RuntimeError, match="even with 64-pixel tiles"), pytest.warns(TileSizeReduced):
        deblur(image, MemoryLimited(32), tile=128, overlap=16, device="cpu")


# ------------------------------------------------------------------------------ real networks and model forms


@pytest.fixture(scope="module")
def tiny_dgno():
    torch.manual_seed(0)
    return DGNO(**tiny_network_g())


def test_tiny_dgno_runs_through_the_engine(tiny_dgno):
    rng = np.random.default_rng(12)
    image = (rng.random((72, 90)) * 4000 + 100).astype(np.uint16)
    out = napari_dgno.deblur(image, tiny_dgno, tile=64, overlap=16, device="cpu")
    assert out.shape == image.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert not tiny_dgno.training
    # whole-image run through the network directly, with the same normalisation: tiling must stay close
    lo, hi = float(image.min()), float(image.max())
    with torch.inference_mode():
        full = tiny_dgno(torch.from_numpy(((image - lo) / (hi - lo)).astype(np.float32))[None, None])[-1]
    reference = full[0, 0].numpy() * (hi - lo) + lo
    assert np.abs(out - reference).mean() < 0.05 * (hi - lo)


def test_bf16_on_cpu_runs(tiny_dgno):
    image = np.random.default_rng(13).random((64, 64)).astype(np.float32)
    fp32 = deblur(image, tiny_dgno, device="cpu")
    bf16 = deblur(image, tiny_dgno, device="cpu", precision="bf16")
    assert bf16.dtype == np.float32 and np.isfinite(bf16).all()
    assert np.abs(bf16 - fp32).mean() < 0.05


def _tiny_factory():
    torch.manual_seed(0)
    return DGNO(**tiny_network_g())


def test_checkpoint_path_and_factory_give_the_same_result(tiny_dgno, tmp_path):
    pytest.importorskip("napari_dgno.checkpoints")
    path = tmp_path / "tiny.pth"
    # network_g travels with the weights: flux and boundary settings cannot be read off a state dict
    torch.save({"params": tiny_dgno.state_dict(), "network_g": tiny_network_g()}, path)
    image = np.random.default_rng(14).random((64, 64)).astype(np.float32)
    direct = deblur(image, tiny_dgno, tile=64, overlap=16, device="cpu")
    from_file = deblur(image, str(path), tile=64, overlap=16, device="cpu")
    from_factory = deblur(image, _tiny_factory, tile=64, overlap=16, device="cpu")
    np.testing.assert_allclose(from_file, direct, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(from_factory, direct, rtol=1e-6, atol=1e-6)


def test_missing_checkpoint_is_reported():
    with pytest.raises(FileNotFoundError):
        deblur(np.ones((16, 16), np.float32), "/nonexistent/weights.pth", device="cpu")


@pytest.mark.gpu
def test_cuda_precisions_agree(tiny_dgno):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    image = np.random.default_rng(15).random((300, 300)).astype(np.float32)
    fp32 = deblur(image, tiny_dgno, device="cuda")
    for precision in ("bf16", "fp16"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", TileSizeReduced)
            out = deblur(image, tiny_dgno, device="cuda", precision=precision)
        assert np.abs(out - fp32).mean() < 0.05
