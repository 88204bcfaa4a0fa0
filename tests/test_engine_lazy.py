"""deblur_lazy(): returns at once, one chunk per plane, computing a plane runs the model on it alone."""

from __future__ import annotations

import threading

import dask
import dask.array as da
import numpy as np
import pytest
import torch

from napari_dgno.engine import Cancelled, deblur, deblur_lazy


class CallCounter:
    """Identity model counting its calls (thread-safe: dask may run planes in parallel)."""

    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with self.lock:
            self.calls += 1
        return x


def tagged_stack(planes: int, shape=(40, 50)) -> np.ndarray:
    """Planes whose values encode their index, so the model's input tells which plane it saw."""
    rng = np.random.default_rng(0)
    stack = rng.random((planes, *shape)).astype(np.float32)
    return stack * (np.arange(planes, dtype=np.float32)[:, None, None] + 1)


def test_lazy_returns_immediately_with_one_chunk_per_plane():
    model = CallCounter()
    image = tagged_stack(6)
    result = deblur_lazy(image, model, tile=32, overlap=8, device="cpu")
    assert isinstance(result, da.Array)
    assert model.calls == 0
    assert result.shape == image.shape and result.dtype == np.float32
    assert result.chunks == ((1,) * 6, (40,), (50,))


def test_computing_one_plane_runs_the_model_on_that_plane_only():
    image = tagged_stack(8)
    seen = []

    def model(x):
        seen.append(x.clone())
        return x

    result = deblur_lazy(image, model, tile=32, overlap=8, batch_size=1, device="cpu")
    plane = result[5].compute()
    np.testing.assert_allclose(plane, image[5], rtol=0, atol=float(np.ptp(image[5])) * 2e-7)
    tiles = 2 * 2  # 40x50 in 32-pixel tiles
    assert len(seen) == tiles
    # every tile the model saw belongs to plane 5 (normalised with plane 5's own min and max)
    lo, hi = image[5].min(), image[5].max()
    normalised = (image[5] - lo) / (hi - lo)
    for tile in seen:
        h, w = tile.shape[-2:]
        assert any(
            np.allclose(tile[0, 0].numpy(), normalised[y : y + h, x : x + w], atol=1e-6)
            for y in (0, 40 - h) for x in (0, 50 - w)
        )


def test_lazy_equals_eager_for_stacks_rgb_and_dask_input():
    rng = np.random.default_rng(1)
    stack = (rng.random((2, 3, 45, 70)) * 1000).astype(np.uint16)

    def model(x):
        return x**2

    eager = deblur(stack, model, axes="TZYX", tile=32, overlap=8, device="cpu")
    lazy = deblur_lazy(da.from_array(stack, chunks=(1, 3, 45, 35)), model, axes="TZYX", tile=32, overlap=8,
                       device="cpu")
    np.testing.assert_array_equal(lazy.compute(), eager)
    rgba = rng.integers(0, 255, size=(2, 40, 50, 4), dtype=np.uint8)
    lazy_rgba = deblur_lazy(rgba, model, tile=32, overlap=8, device="cpu")
    assert lazy_rgba.chunks[-1] == (1, 1, 1, 1)  # channels of a 1-channel model are separate chunks
    np.testing.assert_array_equal(lazy_rgba.compute(), deblur(rgba, model, tile=32, overlap=8, device="cpu"))
    np.testing.assert_array_equal(lazy_rgba[..., 3].compute(), rgba[..., 3])


def test_lazy_input_is_not_read_beyond_the_requested_plane():
    reads = []

    def load(block, block_info=None):
        reads.append(block_info[0]["array-location"][0][0])
        return block

    source = da.from_array(tagged_stack(5), chunks=(1, 40, 50)).map_blocks(load, dtype=np.float32)
    result = deblur_lazy(source, lambda x: x, device="cpu")
    assert reads == []
    result[3].compute()
    assert reads == [3]


def test_lazy_progress_and_cancel():
    calls = []
    event = threading.Event()
    image = tagged_stack(3, shape=(64, 64))
    result = deblur_lazy(image, lambda x: x, tile=32, overlap=8, batch_size=1, device="cpu",
                         progress=lambda d, t: calls.append((d, t)), cancel=event)
    result[0].compute(scheduler="sync")
    assert calls[-1] == (9, 27)  # 3x3 tiles of the first plane, out of 27 for the stack
    event.set()
    with pytest.raises(Cancelled):
        result.compute()


def test_lazy_graph_can_be_computed_in_parallel_threads():
    image = tagged_stack(6)
    result = deblur_lazy(image, lambda x: 2 * x, tile=32, overlap=8, device="cpu")
    with dask.config.set(scheduler="threads", num_workers=3):
        out = result.compute()
    np.testing.assert_array_equal(out, deblur(image, lambda x: 2 * x, tile=32, overlap=8, device="cpu"))


def test_lazy_checks_arguments_up_front():
    with pytest.raises(ValueError, match="multiple of 32"):
        deblur_lazy(np.ones((3, 40, 40), np.float32), lambda x: x, tile=50, device="cpu")
    with pytest.raises(ValueError, match="axes"):
        deblur_lazy(np.ones((3, 40, 40), np.float32), lambda x: x, axes="YX", device="cpu")


def test_lazy_reports_nan_when_the_plane_is_computed():
    image = tagged_stack(3)
    image[2, 0, 0] = np.nan
    result = deblur_lazy(image, lambda x: x, device="cpu")
    result[0].compute()  # other planes are fine
    with pytest.raises(ValueError, match="plane Z=2 contains NaN"):
        result[2].compute()
