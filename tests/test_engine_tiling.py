"""Tiling and blending: a tiled run equals the whole-image run for local operators and the identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_dgno.engine import deblur
from napari_dgno.engine.tiling import TileGrid, check_tiling


class FixedConv:
    """A fixed (2r+1)x(2r+1) convolution with zero padding: a local operator of radius r."""

    def __init__(self, radius: int, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(1, 1, 2 * radius + 1, 2 * radius + 1, generator=gen)
        self.radius = radius
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        b, c, h, w = x.shape
        y = F.conv2d(x.reshape(b * c, 1, h, w), self.weight.to(x.device), padding=self.radius)
        return y.reshape(b, c, h, w)


def whole_image(op: FixedConv, image: np.ndarray) -> np.ndarray:
    """The operator on the whole plane, with the engine's documented min-max normalisation."""
    lo, hi = image.min(), image.max()
    normalised = torch.from_numpy(((image - lo) / (hi - lo)).astype(np.float32))[None, None]
    return op(normalised)[0, 0].numpy().astype(np.float64) * (hi - lo) + lo


@pytest.mark.parametrize("shape", [(97, 131), (64, 64), (200, 33), (31, 250)])
@pytest.mark.parametrize("tile", [32, 64, 96])
def test_grid_weights_are_a_partition_of_unity(shape, tile):
    grid = TileGrid(shape, tile, overlap=16)
    total = np.zeros(shape)
    for t in range(len(grid)):
        total[grid.window(t)] += grid.weight(t)
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)
    assert all(s % 1 == 0 for s in grid.tile_shape)
    assert grid.tile_shape == (min(tile, shape[0]), min(tile, shape[1]))


def test_neighbouring_tiles_share_at_least_the_overlap():
    grid = TileGrid((1000, 517), 128, overlap=32)
    for starts, size in zip(grid.starts, grid.tile_shape):
        assert starts[0] == 0
        assert starts[-1] + size in (1000, 517)
        assert all(b - a <= size - 32 for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("shape", [(97, 131), (150, 71)])
@pytest.mark.parametrize("tile,overlap", [(32, 8), (64, 16), (96, 32)])
@pytest.mark.parametrize("radius", [1, 2])
def test_local_operator_through_tiles_equals_whole_image(shape, tile, overlap, radius):
    rng = np.random.default_rng(1)
    image = rng.normal(100.0, 20.0, size=shape).astype(np.float32)
    op = FixedConv(radius)
    if overlap // 4 < radius:
        pytest.skip("halo smaller than the operator radius")
    out = deblur(image, op, tile=tile, overlap=overlap, batch_size=1, device="cpu")
    assert op.calls > 1  # really tiled
    np.testing.assert_allclose(out, whole_image(op, image), rtol=2e-6, atol=2e-4)


def test_local_operator_is_bitwise_exact_for_unit_range_images():
    """With min 0 and max 1 normalisation is the identity, so tiles must reproduce the conv bit for bit."""
    rng = np.random.default_rng(2)
    image = rng.random((133, 177)).astype(np.float32)
    image[0, 0], image[-1, -1] = 0.0, 1.0
    op = FixedConv(2, seed=3)
    expected = op(torch.from_numpy(image)[None, None])[0, 0].numpy()
    for tile in (32, 64, 128):
        np.testing.assert_array_equal(deblur(image, op, tile=tile, overlap=8, device="cpu"), expected)


def test_identity_reproduces_the_input_exactly():
    rng = np.random.default_rng(3)
    image = rng.random((301, 457)).astype(np.float32)
    image[5, 5], image[7, 9] = 0.0, 1.0
    for tile, overlap in [(64, 16), (96, 32), (128, 0), (64, 32)]:
        out = deblur(image, lambda x: x, tile=tile, overlap=overlap, batch_size=4, device="cpu")
        np.testing.assert_array_equal(out, image)


def test_single_tile_has_no_ramp_artefact():
    """The official tiler darkens the first 32 rows/columns when the image fits one tile; we must not."""
    image = np.full((256, 256), 0.5, dtype=np.float32)
    image[100, 100], image[200, 200] = 0.0, 1.0
    out = deblur(image, lambda x: x, tile=512, overlap=32, device="cpu")
    np.testing.assert_array_equal(out[:32], image[:32])
    np.testing.assert_array_equal(out[:, :32], image[:, :32])


def test_images_smaller_than_a_tile_and_thin_images():
    op = FixedConv(1)
    for shape in [(5, 7), (1, 40), (40, 1), (33, 200)]:
        image = np.random.default_rng(4).random(shape).astype(np.float32)
        out = deblur(image, op, tile=64, overlap=16, device="cpu")
        np.testing.assert_allclose(out, whole_image(op, image), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "tile,overlap,message",
    [(100, 32, "multiple of 32"), (0, 0, "multiple of 32"), (64.0, 16, "multiple of 32"),
     (64, -1, "overlap"), (64, 40, "more than half")],
)
def test_bad_tile_and_overlap_are_refused(tile, overlap, message):
    with pytest.raises(ValueError, match=message):
        check_tiling(tile, overlap)
    with pytest.raises(ValueError, match=message):
        deblur(np.ones((64, 64), np.float32), lambda x: x, tile=tile, overlap=overlap, device="cpu")
