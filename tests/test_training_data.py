"""Datasets on tiny folders written to disk: pairing, channel filtering, normalisation, clear errors,
augmentation and the resumable sampler."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from training.augment import augment_pair, dihedral, pad_to
from training.data import (
    BBBC006Pairs,
    DataError,
    FolderPairs,
    Histech3DPairs,
    SampleKey,
    SyntheticPairs,
    TrainPatches,
    build_source,
)
from training.sampling import ResumableBatchSampler
from training.schedule import ProgressiveSchedule

SITES = ("a01_s1", "a02_s1")


def _plane(seed: int, shape=(40, 48)) -> np.ndarray:
    """A 16-bit plane whose values identify it (offset 1000 * seed)."""
    rng = np.random.default_rng(seed)
    return (1000 * seed + rng.integers(0, 900, size=shape)).astype(np.uint16)


def make_bbbc(root: Path, split: str = "train") -> dict[str, np.ndarray]:
    """GT for w1 and w2 of two sites, three blurred planes each (the z index inside the channel token, so
    that sorted blurred files come in triplets per GT for w1w2 too)."""
    written = {}
    seed = 1
    for site in SITES:
        for ch in ("w1", "w2"):
            gt_name = f"mcf-z-stacks-03212011_{site}_{ch}A1B2.tif"
            written[f"GT/{gt_name}"] = _plane(seed)
            seed += 1
            for z in ("z00", "z16", "z32"):
                written[f"blur/mcf-z-stacks-03212011_{site}_{ch}{z}C3D4.tif"] = _plane(seed)
                seed += 1
    for rel, image in written.items():
        path = root / split / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, image)
    return written


def _minmax(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float32)
    image -= image.min()
    return image / image.max()


@pytest.mark.parametrize("channel, count", [("w1", 6), ("w2", 6), ("w1w2", 12)])
def test_bbbc006_channel_filter_and_triplet_pairing(tmp_path, channel, count):
    written = make_bbbc(tmp_path)
    source = BBBC006Pairs(tmp_path, "train", channel)
    assert len(source) == count
    for index in range(len(source)):
        blur, gt, name = source.load(index)
        assert blur.shape == gt.shape == (40, 48, 1) and blur.dtype == np.float32
        assert name.split("_")[-1].startswith(("w1", "w2") if channel == "w1w2" else channel)
        # GT[i // 3] belongs to the blurred plane: same site and channel, and per-image min-max
        gt_name = source.gt[index // 3].name
        site_channel = [(n.split("_")[1:3], n.split("_")[3][:2]) for n in (gt_name, name)]
        assert site_channel[0] == site_channel[1]
        np.testing.assert_allclose(gt[..., 0], _minmax(written[f"GT/{gt_name}"]), atol=1e-7)
        np.testing.assert_allclose(blur[..., 0], _minmax(written[f"blur/{name}"]), atol=1e-7)
        assert blur.min() == 0 and blur.max() == 1


def test_bbbc006_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="GT.*not found"):
        BBBC006Pairs(tmp_path, "train", "w1")
    make_bbbc(tmp_path)
    with pytest.raises(DataError, match="channel must be one of"):
        BBBC006Pairs(tmp_path, "train", "w3")
    (tmp_path / "train" / "blur" / "mcf-z-stacks-03212011_a02_s1_w1z16C3D4.tif").unlink()
    with pytest.raises(DataError, match=r"5 blurred files for 2 GT.*mcf-z-stacks-03212011_a02_s1_w1A1B2\.tif"):
        BBBC006Pairs(tmp_path, "train", "w1")
    for path in (tmp_path / "train").rglob("*_w2*.tif"):
        path.unlink()
    with pytest.raises(DataError, match="no file of channel 'w2'.*prefixes found: w1"):
        BBBC006Pairs(tmp_path, "train", "w2")


def _rgb(seed: int, shape=(36, 36)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*shape, 3), dtype=np.uint8)


def test_3dhistech_pairs_by_name_and_errors(tmp_path):
    base = tmp_path / "val"
    images = {}
    for i, name in enumerate(("img2", "img10", "img1")):
        for sub in ("blur", "sharp"):
            (base / sub).mkdir(parents=True, exist_ok=True)
            images[(sub, name)] = _rgb(10 * i + (sub == "sharp"))
            iio.imwrite(base / sub / f"{name}.png", images[(sub, name)])
    source = Histech3DPairs(tmp_path, "val")
    assert [source.load(i)[2] for i in range(3)] == ["img1.png", "img2.png", "img10.png"]  # natural order
    blur, sharp, _ = source.load(1)
    np.testing.assert_array_equal(blur, images[("blur", "img2")] / np.float32(255))
    np.testing.assert_array_equal(sharp, images[("sharp", "img2")] / np.float32(255))

    iio.imwrite(base / "blur" / "extra.png", _rgb(99))
    with pytest.raises(DataError, match="blurred without a sharp partner: extra"):
        Histech3DPairs(tmp_path, "val")
    (base / "blur" / "extra.png").unlink()
    iio.imwrite(base / "blur" / "img1.png", np.zeros((36, 36), np.uint8))  # grayscale where RGB is expected
    with pytest.raises(DataError, match="RGB"):
        Histech3DPairs(tmp_path, "val").load(0)


def test_user_pairs_folder_tiff_and_png(tmp_path):
    for sub in ("blur", "sharp"):
        (tmp_path / sub).mkdir()
    tifffile.imwrite(tmp_path / "blur" / "cell1.tif", _plane(1))
    tifffile.imwrite(tmp_path / "sharp" / "cell1.tif", _plane(2))
    iio.imwrite(tmp_path / "blur" / "cell2.png", (_plane(3) // 16).astype(np.uint8))
    iio.imwrite(tmp_path / "sharp" / "cell2.png", (_plane(4) // 16).astype(np.uint8))
    source = FolderPairs(tmp_path, "minmax", channels=1)
    assert len(source) == 2 and source.channels == 1
    blur, sharp, name = source.load(0)
    assert name == "cell1.tif"
    np.testing.assert_allclose(blur[..., 0], _minmax(_plane(1)), atol=1e-7)
    blur, sharp, _ = source.load(1)
    assert blur.min() == 0 and blur.max() == 1 and sharp.shape == (40, 48, 1)

    with pytest.raises(DataError, match="takes 3"):
        FolderPairs(tmp_path, "minmax", channels=3)
    with pytest.raises(DataError, match="8-bit"):
        FolderPairs(tmp_path, "rgb255", channels=1).load(0)  # 16-bit TIFF divided by 255 would be wrong
    tifffile.imwrite(tmp_path / "sharp" / "lonely.tif", _plane(5))
    with pytest.raises(DataError, match="sharp without a blurred partner: lonely"):
        FolderPairs(tmp_path)
    with pytest.raises(DataError, match="not found"):
        FolderPairs(tmp_path / "nowhere")


def test_build_source_checks_settings_and_channels(tmp_path):
    make_bbbc(tmp_path)
    with pytest.raises(DataError, match="dataroot is not set"):
        build_source({"type": "bbbc006"}, "train")
    with pytest.raises(DataError, match="unknown setting.*chanel"):
        build_source({"type": "bbbc006", "dataroot": str(tmp_path), "chanel": "w1"}, "train")
    with pytest.raises(DataError, match="network_g takes 3"):
        build_source({"type": "bbbc006", "dataroot": str(tmp_path)}, "train", channels=3)
    with pytest.raises(DataError, match="type must be one of"):
        build_source({"type": "imagenet"}, "train")


def test_synthetic_source_is_reproducible_and_normalised():
    source = SyntheticPairs(64, "mixed", num_pairs=3, seed=7)
    blur, sharp, _ = source.load(2)
    again = SyntheticPairs(64, "mixed", num_pairs=3, seed=7).load(2)
    np.testing.assert_array_equal(blur, again[0])
    np.testing.assert_array_equal(sharp, again[1])
    assert blur.shape == (64, 64, 1) and blur.min() == 0 and blur.max() == 1 and sharp.max() == 1
    assert not np.array_equal(blur, source.load(1)[0])
    tissue = SyntheticPairs(32, "tissue", seed=1)
    assert tissue.unbounded and tissue.channels == 3 and tissue.load(5)[0].shape == (32, 32, 3)


def test_dihedral_group_and_reflect_padding():
    image = np.arange(12.0).reshape(3, 4, 1)
    outs = [dihedral(image, m) for m in range(8)]
    assert len({o.tobytes() + bytes(o.shape) for o in outs}) == 8  # eight distinct transforms
    np.testing.assert_array_equal(outs[1], image[::-1])  # flipud
    np.testing.assert_array_equal(outs[2][..., 0], np.rot90(image[..., 0]))
    row = np.array([[1.0, 2.0, 3.0]])[..., None]
    padded, _ = pad_to(row, row, 5)  # cv2 BORDER_REFLECT: 1 2 3 | 3 2
    np.testing.assert_array_equal(padded[0, :, 0], [1, 2, 3, 3, 2])
    assert padded.shape == (5, 5, 1)


def test_augmentation_keeps_pairs_aligned():
    rng = np.random.default_rng(0)
    image = rng.random((50, 70, 1)).astype(np.float32)
    for seed in range(10):
        lq, gt = augment_pair(image, image.copy(), 48, 32, np.random.default_rng(seed))
        assert lq.shape == (32, 32, 1)
        np.testing.assert_array_equal(lq, gt)


def test_train_patches_and_sampler_resume_positions():
    source = SyntheticPairs(48, "nuclei", num_pairs=5, seed=3)
    dataset = TrainPatches(source, 48)
    item = dataset[SampleKey(2, (1, 0, 0), 32)]
    assert item["lq"].shape == item["gt"].shape == (1, 32, 32)
    schedule = ProgressiveSchedule([3, 2], [32, 48], [2, 10])
    ranks = [ResumableBatchSampler(len(source), schedule, rank=r, world_size=2, seed=5) for r in range(2)]
    streams = [iter(s) for s in ranks]
    batches = [[next(stream) for _ in range(6)] for stream in streams]
    assert [len(b) for b in batches[0]] == [3, 3, 2, 2, 2, 2]
    assert {k.patch for k in batches[0][0]} == {32} and {k.patch for k in batches[0][3]} == {48}
    # one epoch = 3 samples per rank (5 items padded to 6): the two ranks' first epochs cover every item
    first_epoch = [k.index for k in batches[0][0]] + [k.index for k in batches[1][0]]
    assert sorted(first_epoch)[:5] == [0, 1, 2, 3, 4] and len(set(first_epoch)) == 5
    # augmentation seeds are unique per rank and sample
    seeds = [k.entropy for r in range(2) for b in batches[r] for k in b]
    assert len(set(seeds)) == len(seeds)
    # a sampler restarted at iteration 4 yields what the uninterrupted one yields from iteration 5 on
    resumed = iter(ResumableBatchSampler(len(source), schedule, rank=1, world_size=2, seed=5, start_iter=4))
    assert [next(resumed), next(resumed)] == batches[1][4:6]
