"""Paired augmentation of the official pipeline: reflect padding, random crop, the 8 dihedral transforms.

Images are (H, W, C) float32 arrays; every function applies the same geometry to the blurred and the
sharp image so the pair stays aligned.
"""

from __future__ import annotations

import numpy as np

#: The 8 elements of the dihedral group, numbered like Restormer's ``data_augmentation(img, mode)``.
DIHEDRAL_MODES = tuple(range(8))


def pad_to(lq: np.ndarray, gt: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom/right to at least ``size`` with cv2's BORDER_REFLECT (edge pixel repeated)."""
    h, w = gt.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph == 0 and pw == 0:
        return lq, gt
    while ph or pw:  # numpy's symmetric mode cannot pad more than the image size in one go
        step_h, step_w = min(ph, lq.shape[0]), min(pw, lq.shape[1])
        widths = ((0, step_h), (0, step_w), (0, 0))
        lq, gt = np.pad(lq, widths, mode="symmetric"), np.pad(gt, widths, mode="symmetric")
        ph, pw = ph - step_h, pw - step_w
    return lq, gt


def random_crop(lq: np.ndarray, gt: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same random ``size``×``size`` window of both images (they must be at least that large)."""
    h, w = gt.shape[:2]
    if lq.shape[:2] != (h, w):
        raise ValueError(f"blurred and sharp images differ in size: {lq.shape[:2]} vs {(h, w)}")
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    return lq[top : top + size, left : left + size], gt[top : top + size, left : left + size]


def center_crop(image: np.ndarray, size: int | None) -> np.ndarray:
    """Central ``size``×``size`` window (the whole image when it is smaller or ``size`` is None)."""
    if size is None:
        return image
    h, w = image.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return image[top : top + size, left : left + size]


def dihedral(image: np.ndarray, mode: int) -> np.ndarray:
    """Restormer's ``data_augmentation``: 0 identity, 1 flipud, 2 rot90, 3 rot90+flipud, 4 rot180,
    5 rot180+flipud, 6 rot270, 7 rot270+flipud (``np.rot90`` counter-clockwise)."""
    if mode not in DIHEDRAL_MODES:
        raise ValueError(f"dihedral mode must be 0..7, got {mode}")
    out = np.rot90(image, k=mode // 2)
    if mode % 2:
        out = np.flipud(out)
    return out


def augment_pair(lq: np.ndarray, gt: np.ndarray, gt_size: int, patch: int, rng: np.random.Generator,
                 geometric: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Official training geometry: pad to ``gt_size``, random ``gt_size`` crop, random dihedral transform,
    then (progressive training) a random ``patch`` window of that crop."""
    lq, gt = pad_to(lq, gt, gt_size)
    lq, gt = random_crop(lq, gt, gt_size, rng)
    if geometric:
        mode = int(rng.integers(0, 8))
        lq, gt = dihedral(lq, mode), dihedral(gt, mode)
    if patch < gt_size:
        lq, gt = random_crop(lq, gt, patch, rng)
    return np.ascontiguousarray(lq), np.ascontiguousarray(gt)
