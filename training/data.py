"""Paired blurred/sharp image sources and the training/validation datasets built on them.

Sources follow the official data pipeline (section 11 of the architecture notes):

* ``bbbc006``: ``<root>/<split>/{GT,blur}/*.tif``; the channel (w1, w2 or w1w2) is read from the prefix of
  the file name's last ``_`` token; GT and blur lists are sorted and the three blur planes
  ``blur[3i..3i+2]`` belong to ``GT[i]``; every image is min-max normalised on its own.
* ``3dhistech``: ``<root>/<split>/{blur,sharp}/*.png``, RGB / 255, paired by file name.
* ``pairs``: a user's ``<root>/{blur,sharp}/`` with matching file names (TIFF or PNG, any bit depth),
  normalised per image (``minmax``) or by 255 (``rgb255``).
* ``synthetic``: pairs simulated on the fly by ``napari_dgno.synthetic.make_pair``; ``num_pairs`` fixes a
  finite set, ``None`` draws a fresh pair for every sample.

Randomness never comes from worker or global RNGs: each training sample carries its own seed
(:class:`SampleKey`), so a run is reproducible for any number of DataLoader workers and resumes exactly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import augment_pair, center_crop

TIFF_SUFFIXES = (".tif", ".tiff")
PNG_SUFFIXES = (".png",)
BBBC_CHANNELS = ("w1", "w2", "w1w2")
NORMALIZATIONS = ("minmax", "rgb255")


class DataError(ValueError):
    """A dataset folder or file that cannot be used as given; the message says what to fix."""


class SampleKey(NamedTuple):
    """What the sampler hands the dataset: which pair, the seed of its augmentation, the patch size."""

    index: int
    entropy: tuple[int, ...]
    patch: int


def natural_key(text: str) -> list:
    """Sort key that orders ``img2`` before ``img10`` (natsort's default behaviour)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


# ---------------------------------------------------------------------------------------------- reading
def read_image(path: Path) -> np.ndarray:
    """Pixels of one TIFF or PNG file as stored (no conversion), channels last."""
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        import tifffile

        image = tifffile.imread(path)
    elif suffix in PNG_SUFFIXES:
        import imageio.v3 as iio

        image = iio.imread(path)
    else:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use TIFF or PNG")
    image = np.asarray(image)
    while image.ndim > 2 and image.shape[0] == 1:  # (1, H, W) pages
        image = image[0]
    if image.ndim == 3 and image.shape[-1] == 4:  # RGBA: drop alpha
        image = image[..., :3]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (1, 3)):
        raise DataError(
            f"{path}: image of shape {image.shape} is neither a 2-D plane nor (H, W, 1|3); "
            "split stacks into one file per plane"
        )
    return image


def minmax(image: np.ndarray) -> np.ndarray:
    """Official BBBC006 normalisation: ``img -= min; img /= max`` over the whole image (all channels, like
    the inference engine's per-plane normalisation); a constant image gives zeros."""
    out = np.asarray(image, dtype=np.float32).copy()
    out -= out.min()
    out /= max(float(out.max()), 1e-8)
    return out


def by_255(image: np.ndarray, path: Path) -> np.ndarray:
    """Official 3DHistech normalisation: 8-bit values / 255."""
    if image.dtype != np.uint8:
        raise DataError(f"{path}: rgb255 normalisation needs 8-bit images, got {image.dtype}; use 'minmax'")
    return image.astype(np.float32) / 255.0


def with_channels(image: np.ndarray) -> np.ndarray:
    """(H, W) → (H, W, 1); (H, W, C) unchanged."""
    return image[..., None] if image.ndim == 2 else image


def _list_files(folder: Path, suffixes: tuple[str, ...], what: str, recursive: bool = False) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{what}: folder {folder} not found")
    pattern = "**/*" if recursive else "*"
    files = [p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in suffixes]
    if not files:
        raise DataError(f"{what}: no {'/'.join(suffixes)} files in {folder}")
    return files


def _pair_by_stem(blur: list[Path], sharp: list[Path], what: str) -> list[tuple[Path, Path]]:
    """Match files by name stem; name every file without a partner."""
    blur_by = {p.stem: p for p in blur}
    sharp_by = {p.stem: p for p in sharp}
    only_blur = sorted(set(blur_by) - set(sharp_by), key=natural_key)
    only_sharp = sorted(set(sharp_by) - set(blur_by), key=natural_key)
    if only_blur or only_sharp:
        lines = []
        if only_blur:
            lines.append(f"blurred without a sharp partner: {', '.join(only_blur[:10])}"
                         + (f" (+{len(only_blur) - 10} more)" if len(only_blur) > 10 else ""))
        if only_sharp:
            lines.append(f"sharp without a blurred partner: {', '.join(only_sharp[:10])}"
                         + (f" (+{len(only_sharp) - 10} more)" if len(only_sharp) > 10 else ""))
        raise DataError(f"{what}: unpaired files ({'; '.join(lines)}); blurred and sharp files must have the "
                        "same names")
    return [(blur_by[s], sharp_by[s]) for s in sorted(blur_by, key=natural_key)]


# ---------------------------------------------------------------------------------------------- sources
class PairSource:
    """A finite (or, for synthetic data, unbounded) collection of aligned (blurred, sharp) images."""

    channels: int = 1
    unbounded: bool = False

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        """(blurred, sharp, name): float32 (H, W, C) arrays in [0, 1]."""
        raise NotImplementedError


def bbbc_channel_of(path: Path) -> str:
    """The channel token of a BBBC006 file name: the last '_'-separated part (e.g. ``w1a5c...``)."""
    return path.stem.split("_")[-1]


def bbbc_keep(path: Path, channel: str) -> bool:
    token = bbbc_channel_of(path)
    wanted = ("w1", "w2") if channel == "w1w2" else (channel,)
    return token.startswith(wanted)


class BBBC006Pairs(PairSource):
    """BBBC006 as prepared by the authors: three blurred planes per in-focus GT, sorted-order pairing."""

    channels = 1

    def __init__(self, root: str | Path, split: str = "train", channel: str = "w1"):
        if channel not in BBBC_CHANNELS:
            raise DataError(f"BBBC006 channel must be one of {', '.join(BBBC_CHANNELS)}, got {channel!r}")
        base = Path(root) / split
        what = f"BBBC006 {split} set (expected {base}/GT/*.tif and {base}/blur/*.tif)"
        gt_all = sorted(_list_files(base / "GT", TIFF_SUFFIXES, what, recursive=True))
        blur_all = sorted(_list_files(base / "blur", TIFF_SUFFIXES, what, recursive=True))
        self.gt = [p for p in gt_all if bbbc_keep(p, channel)]
        self.blur = [p for p in blur_all if bbbc_keep(p, channel)]
        if not self.gt or not self.blur:
            tokens = sorted({bbbc_channel_of(p)[:2] for p in gt_all + blur_all})
            raise DataError(f"{what}: no file of channel {channel!r} (channel = prefix of the last '_' token of "
                            f"the name; prefixes found: {', '.join(tokens)})")
        if len(self.blur) != 3 * len(self.gt):
            raise DataError(f"{what}: {len(self.blur)} blurred files for {len(self.gt)} GT files of channel "
                            f"{channel}; the protocol pairs three blurred planes with each GT image"
                            + _bbbc_unpaired_hint(self.gt, self.blur))
        self.channel = channel

    def __len__(self) -> int:
        return len(self.blur)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        blur_path, gt_path = self.blur[index], self.gt[index // 3]
        blur, gt = read_image(blur_path), read_image(gt_path)
        for path, image in ((blur_path, blur), (gt_path, gt)):
            if image.ndim != 2:
                raise DataError(f"{path}: BBBC006 images are single-channel planes, got shape {image.shape}")
        if blur.shape != gt.shape:
            raise DataError(f"{blur_path} and {gt_path} differ in size: {blur.shape} vs {gt.shape}")
        return with_channels(minmax(blur)), with_channels(minmax(gt)), blur_path.name


def _bbbc_unpaired_hint(gt: list[Path], blur: list[Path]) -> str:
    """Name the GT images that do not have exactly three blurred planes whose names start with the GT's
    site (its name without the channel token)."""
    odd = []
    for path in gt:
        site = "_".join(path.stem.split("_")[:-1])
        if sum(p.stem.startswith(site + "_") for p in blur) != 3:
            odd.append(path.name)
    return f" (GT files without exactly three blurred planes of their site: {', '.join(odd[:10])})" if odd else ""


class Histech3DPairs(PairSource):
    """3DHistech patches: ``<root>/<split>/{blur,sharp}/*.png`` paired by name, RGB / 255."""

    channels = 3

    def __init__(self, root: str | Path, split: str = "train"):
        base = Path(root) / split
        what = f"3DHistech {split} set (expected {base}/blur/*.png and {base}/sharp/*.png)"
        self.pairs = _pair_by_stem(_list_files(base / "blur", PNG_SUFFIXES, what),
                                   _list_files(base / "sharp", PNG_SUFFIXES, what), what)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        blur_path, sharp_path = self.pairs[index]
        images = []
        for path in (blur_path, sharp_path):
            image = read_image(path)
            if image.ndim != 3 or image.shape[-1] != 3:
                raise DataError(f"{path}: 3DHistech images are RGB, got shape {image.shape}")
            images.append(by_255(image, path))
        if images[0].shape != images[1].shape:
            raise DataError(f"{blur_path} and {sharp_path} differ in size: {images[0].shape} vs {images[1].shape}")
        return images[0], images[1], blur_path.name


class FolderPairs(PairSource):
    """A user's pairs: ``<root>/blur/NAME`` and ``<root>/sharp/NAME`` (TIFF or PNG, same stem)."""

    def __init__(self, root: str | Path, normalization: str = "minmax", channels: int | None = None):
        if normalization not in NORMALIZATIONS:
            raise DataError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
        base = Path(root)
        what = f"paired folder {base} (expected {base}/blur/ and {base}/sharp/ with matching file names)"
        suffixes = TIFF_SUFFIXES + PNG_SUFFIXES
        self.pairs = _pair_by_stem(_list_files(base / "blur", suffixes, what),
                                   _list_files(base / "sharp", suffixes, what), what)
        self.normalization = normalization
        first = with_channels(read_image(self.pairs[0][1]))
        self.channels = int(first.shape[-1])
        if channels is not None and channels != self.channels:
            raise DataError(f"{self.pairs[0][1]} has {self.channels} channel(s) but the network takes {channels}; "
                            f"set network_g.inp_channels/out_channels to {self.channels} or convert the images")

    def __len__(self) -> int:
        return len(self.pairs)

    def _normalise(self, image: np.ndarray, path: Path) -> np.ndarray:
        if self.normalization == "rgb255":
            return with_channels(by_255(image, path))
        return with_channels(minmax(image))

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        blur_path, sharp_path = self.pairs[index]
        blur = self._normalise(read_image(blur_path), blur_path)
        sharp = self._normalise(read_image(sharp_path), sharp_path)
        for path, image in ((blur_path, blur), (sharp_path, sharp)):
            if image.shape[-1] != self.channels:
                raise DataError(f"{path} has {image.shape[-1]} channel(s), other files have {self.channels}")
        if blur.shape != sharp.shape:
            raise DataError(f"{blur_path} and {sharp_path} differ in size: {blur.shape[:2]} vs {sharp.shape[:2]}")
        return blur, sharp, blur_path.name


class SyntheticPairs(PairSource):
    """Simulated defocus pairs from :func:`napari_dgno.synthetic.make_pair`, reproducible from a seed.

    ``num_pairs=None``: unbounded, pair ``i`` is drawn from seed ``(seed, i)`` (the sampler gives every
    sample a new ``i``). ``num_pairs=N``: a fixed set of N pairs, generated once and cached.
    ``normalization="minmax"`` (default for fluorescence kinds) rescales blurred and sharp images each to
    [0, 1] on their own, the BBBC006 protocol that inference with a ``minmax`` model applies to user data;
    ``"none"`` (default for ``tissue``, already RGB/255-like) keeps make_pair's values.
    """

    def __init__(self, size: int, kind: str = "mixed", num_pairs: int | None = None, seed: int = 0,
                 options: dict[str, Any] | None = None, normalization: str | None = None):
        from napari_dgno.synthetic import make_pair  # noqa: F401  (fail early with a clear import error)

        if normalization is None:
            normalization = "none" if kind == "tissue" else "minmax"
        if normalization not in ("minmax", "none"):
            raise DataError(f"synthetic normalization must be 'minmax' or 'none', got {normalization!r}")
        self.normalization = normalization
        self.size, self.kind, self.seed = int(size), kind, int(seed)
        self.num_pairs = None if num_pairs is None else int(num_pairs)
        self.unbounded = self.num_pairs is None
        self.options = dict(options or {})
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.channels = 3 if kind == "tissue" else 1

    def __len__(self) -> int:
        if self.num_pairs is None:
            raise TypeError("an unbounded synthetic source has no length")
        return self.num_pairs

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        from napari_dgno.synthetic import make_pair

        cached = self._cache.get(index)
        if cached is None:
            rng = np.random.default_rng([self.seed, int(index)])
            blurred, sharp = make_pair(shape=(self.size, self.size), kind=self.kind, rng=rng, **self.options)
            if self.normalization == "minmax":
                blurred, sharp = minmax(blurred), minmax(sharp)
            cached = (with_channels(np.asarray(blurred, np.float32)), with_channels(np.asarray(sharp, np.float32)))
            if self.num_pairs is not None:
                self._cache[index] = cached
        return cached[0], cached[1], f"synthetic_{self.kind}_{self.seed}_{index}"


# ---------------------------------------------------------------------------------------------- datasets
class TrainPatches(Dataset):
    """Random training patches of a source, keyed by :class:`SampleKey` (official crop + dihedral)."""

    def __init__(self, source: PairSource, gt_size: int, geometric_augs: bool = True):
        self.source, self.gt_size, self.geometric_augs = source, int(gt_size), geometric_augs

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor]:
        lq, gt, _ = self.source.load(key.index)
        rng = np.random.default_rng(list(key.entropy))
        lq, gt = augment_pair(lq, gt, self.gt_size, key.patch, rng, self.geometric_augs)
        return {"lq": torch.from_numpy(lq.transpose(2, 0, 1).copy()),
                "gt": torch.from_numpy(gt.transpose(2, 0, 1).copy())}


class ValImages(Dataset):
    """Whole (centre-cropped) validation pairs, in a fixed order."""

    def __init__(self, source: PairSource, crop: int | None = 256, max_images: int | None = None):
        self.source, self.crop = source, crop
        self.count = len(source) if max_images is None else min(len(source), int(max_images))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, Any]:
        lq, gt, name = self.source.load(index)
        lq, gt = center_crop(lq, self.crop), center_crop(gt, self.crop)
        return {"lq": torch.from_numpy(np.ascontiguousarray(lq.transpose(2, 0, 1))),
                "gt": torch.from_numpy(np.ascontiguousarray(gt.transpose(2, 0, 1))), "name": name}


# ---------------------------------------------------------------------------------------------- builders
_COMMON_KEYS = {"type", "name", "phase", "dataroot", "split", "gt_size", "batch_size_per_gpu", "mini_batch_sizes",
                "gt_sizes", "iters", "num_worker_per_gpu", "use_shuffle", "geometric_augs", "prefetch_factor",
                "center_crop", "max_images"}
_TYPE_KEYS = {
    "bbbc006": {"channel"},
    "3dhistech": set(),
    "pairs": {"normalization"},
    "synthetic": {"kind", "num_pairs", "seed", "size", "options", "normalization"},
}


def build_source(dopt: dict, phase: str, channels: int | None = None) -> PairSource:
    """The :class:`PairSource` described by a ``datasets.<phase>`` section."""
    kind = str(dopt.get("type", "")).lower()
    if kind not in _TYPE_KEYS:
        raise DataError(f"datasets.{phase}.type must be one of {', '.join(_TYPE_KEYS)}, got {dopt.get('type')!r}")
    unknown = sorted(set(dopt) - _COMMON_KEYS - _TYPE_KEYS[kind])
    if unknown:
        raise DataError(f"datasets.{phase}: unknown setting(s) {', '.join(unknown)} for type {kind}")
    if kind != "synthetic" and not dopt.get("dataroot"):
        raise DataError(f"datasets.{phase}.dataroot is not set (the folder holding the {kind} data); "
                        f"pass --set datasets.{phase}.dataroot=/path")
    default_split = "train" if phase == "train" else "test"
    if kind == "bbbc006":
        source: PairSource = BBBC006Pairs(dopt["dataroot"], dopt.get("split", default_split), dopt.get("channel", "w1"))
    elif kind == "3dhistech":
        source = Histech3DPairs(dopt["dataroot"], dopt.get("split", default_split))
    elif kind == "pairs":
        source = FolderPairs(dopt["dataroot"], dopt.get("normalization", "minmax"), channels)
    else:
        size = dopt.get("size") or dopt.get("gt_size") or dopt.get("center_crop") or 256
        source = SyntheticPairs(size, dopt.get("kind", "mixed"), dopt.get("num_pairs"), dopt.get("seed", 0),
                                dopt.get("options"), dopt.get("normalization"))
    if channels is not None and source.channels != channels:
        raise DataError(f"datasets.{phase} ({kind}) has {source.channels}-channel images but network_g takes "
                        f"{channels} channel(s); use a matching config (1 for fluorescence, 3 for RGB)")
    return source


def inference_normalization(dopt: dict, channels: int) -> str:
    """How the plugin must normalise inputs for a model trained on this dataset: ``minmax`` or ``rgb255``."""
    kind = str(dopt.get("type", "")).lower()
    if kind == "bbbc006":
        return "minmax"
    if kind == "3dhistech":
        return "rgb255"
    if kind == "pairs":
        return str(dopt.get("normalization") or "minmax")
    return "rgb255" if channels == 3 else "minmax"  # synthetic: tissue is RGB in [0, 1], the rest min-max


def build_train_dataset(opt: dict) -> TrainPatches:
    dopt = opt["datasets"]["train"]
    source = build_source(dopt, "train", int(opt["network_g"].get("inp_channels", 1)))
    return TrainPatches(source, int(dopt.get("gt_size", 256)), bool(dopt.get("geometric_augs", True)))


def build_val_dataset(opt: dict) -> ValImages | None:
    dopt = opt["datasets"].get("val")
    if not dopt:
        return None
    source = build_source(dopt, "val", int(opt["network_g"].get("inp_channels", 1)))
    crop = dopt.get("center_crop", opt["val"]["center_crop"])
    return ValImages(source, None if crop in (None, 0) else int(crop), dopt.get("max_images", opt["val"]["max_images"]))
