"""How sharp is each plane? Focus measures, focus curves, best-focus planes and reference scores.

Focus measures need no ground truth: higher means more fine detail, so along a z-stack they peak at the
in-focus plane. Reference scores (PSNR, SSIM) compare every plane with one plane taken as the truth,
usually the best-focused plane of the input. Everything works plane by plane on numpy arrays, on dask
arrays (a few planes in memory at a time, so lazy DGNO results are computed once, as they are measured)
and on other array-likes that index (zarr arrays, memory maps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .engine.distributed import parallel_tasks
from .engine.hooks import CancelToken, check_cancel_token, raise_if_cancelled

__all__ = ["MEASURES", "TABLE_COLUMNS", "best_focus_plane", "brenner", "focus_curve", "focus_measure", "focus_table",
           "normalized_variance", "reference_scores", "spectral_ratio", "tenengrad"]

#: Float64 working memory allowed per batch of planes (bytes) when measuring in-memory stacks.
_BATCH_BYTES = 64 * 2**20

Progress = Callable[[int, int], Any]


# --- measures: each takes float64 (..., H, W) and returns (...) -------------------------------------------

def normalized_variance(planes: np.ndarray) -> np.ndarray:
    """Variance / mean (Groen et al. 1985): contrast that does not grow with exposure. 0 for a flat plane.

    Units are those of the intensities. A plane whose mean is 0 but which is not flat gives ``inf``.
    """
    mean = planes.mean(axis=(-2, -1))
    var = planes.var(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = var / np.abs(mean)
    return np.where(var == 0, 0.0, out)


def brenner(planes: np.ndarray) -> np.ndarray:
    """Brenner gradient: mean squared difference between pixels two apart, along x and along y."""
    dx = planes[..., :, 2:] - planes[..., :, :-2]
    dy = planes[..., 2:, :] - planes[..., :-2, :]
    return (dx**2).mean(axis=(-2, -1)) + (dy**2).mean(axis=(-2, -1))


def tenengrad(planes: np.ndarray) -> np.ndarray:
    """Tenengrad: mean squared Sobel gradient magnitude over the interior (no border assumptions)."""
    sx = planes[..., :, 2:] - planes[..., :, :-2]
    gx = sx[..., :-2, :] + 2.0 * sx[..., 1:-1, :] + sx[..., 2:, :]
    sy = planes[..., 2:, :] - planes[..., :-2, :]
    gy = sy[..., :, :-2] + 2.0 * sy[..., :, 1:-1] + sy[..., :, 2:]
    return (gx**2 + gy**2).mean(axis=(-2, -1))


def _periodic_spectrum(planes: np.ndarray) -> np.ndarray:
    """rfft2 of the periodic component of each plane (Moisan's periodic + smooth decomposition).

    A plain FFT sees the jump between opposite borders as a sharp edge, the same in every plane; a window
    would hide structure near the borders. Removing the smooth component that carries the jump does neither.
    """
    h, w = planes.shape[-2:]
    jumps = np.zeros_like(planes)
    jumps[..., 0, :] += planes[..., -1, :] - planes[..., 0, :]
    jumps[..., -1, :] += planes[..., 0, :] - planes[..., -1, :]
    jumps[..., :, 0] += planes[..., :, -1] - planes[..., :, 0]
    jumps[..., :, -1] += planes[..., :, 0] - planes[..., :, -1]
    laplacian = 2 * np.cos(2 * np.pi * np.fft.fftfreq(h))[:, None] + 2 * np.cos(2 * np.pi * np.fft.rfftfreq(w)) - 4
    laplacian[0, 0] = 1.0
    smooth = np.fft.rfft2(jumps) / laplacian
    smooth[..., 0, 0] = 0.0
    return np.fft.rfft2(planes) - smooth


def spectral_ratio(planes: np.ndarray, low: float = 1 / 32, high: float = 1 / 4) -> np.ndarray:
    """Share of a plane's spectral energy (mean included) at spatial frequencies in (``low``, ``high``].

    Frequencies in cycles per pixel. Defocus removes the higher frequencies first, so the share falls as a
    plane goes out of focus. The total includes the mean intensity, which blur preserves: a plane that lost
    all its detail then scores low rather than looking "sharp" because only camera noise is left in it.
    The band stops at 0.25 cycles/pixel, above which noise outweighs the signal of all but the sharpest
    planes. In [0, 1]; 0 for a flat plane.
    """
    h, w = planes.shape[-2:]
    power = np.abs(_periodic_spectrum(planes)) ** 2
    radius = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2)
    weight = np.full(radius.shape, 2.0)  # rfft2 holds one of each mirrored pair of columns
    weight[:, 0] = 1.0
    if w % 2 == 0:
        weight[:, -1] = 1.0
    total = (power * weight).sum(axis=(-2, -1))
    band = (power * (weight * ((radius > low) & (radius <= high)))).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, band / total, 0.0)


#: Focus measures by name: each maps float64 planes (..., H, W) to one score per plane; higher is sharper.
MEASURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "normalized_variance": normalized_variance,
    "brenner": brenner,
    "tenengrad": tenengrad,
    "spectral_ratio": spectral_ratio,
}


def _measure_fn(measure: str | Callable) -> Callable[[np.ndarray], np.ndarray]:
    if callable(measure):
        return measure
    try:
        return MEASURES[measure]
    except KeyError:
        raise ValueError(f"unknown focus measure {measure!r}; choose one of {', '.join(MEASURES)}") from None


# --- input checking and plane iteration ----------------------------------------------------------------

def _as_float_planes(block: Any, first: int = 0, what: str = "image") -> np.ndarray:
    """float64 copy of a block of planes (or one plane), with NaN/Inf and dtype errors that name the plane."""
    arr = np.asarray(block)
    if np.iscomplexobj(arr) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{what} must hold real numbers, got dtype {arr.dtype}")
    out = arr.astype(np.float64)
    finite = np.isfinite(out)
    if not finite.all():
        if out.ndim == 3:
            bad = int(np.argmin(finite.all(axis=(1, 2))))
            count = int((~finite[bad]).sum())
            where = f"plane {first + bad} of the {what}"
        else:
            count, where = int((~finite).sum()), f"the {what}"
        raise ValueError(f"{where} has {count} NaN or Inf pixels; focus and scores are undefined there. Replace "
                         "them first (e.g. numpy.nan_to_num, or fill with the background level)")
    return out


def _check_plane_shape(shape: Sequence[int], what: str) -> None:
    if len(shape) != 2 or min(shape) < 3:
        raise ValueError(f"{what} must be a 2-D plane of at least 3 x 3 pixels, got shape {tuple(shape)}")


def _is_dask(array: Any) -> bool:
    return type(array).__module__.split(".")[0] == "dask"


def _stack_shape(stack: Any, axis: int) -> tuple[int, tuple[int, int], int]:
    """(number of planes, plane shape, normalised axis) of a 3-D stack, with a clear error otherwise."""
    shape = tuple(getattr(stack, "shape", ()))
    if len(shape) != 3:
        hint = (" For a single image use focus_measure()." if len(shape) == 2 else
                " Select one channel/time point first (e.g. stack[:, 0] for ZCYX)." if len(shape) > 3 else "")
        raise ValueError(f"expected a 3-D stack (planes, Y, X), got shape {shape or type(stack).__name__}.{hint}")
    if not -3 <= axis < 3:
        raise ValueError(f"axis must be 0, 1 or 2 for a 3-D stack, got {axis}")
    axis %= 3
    plane = tuple(s for i, s in enumerate(shape) if i != axis)
    _check_plane_shape(plane, "each plane of the stack")
    if shape[axis] < 1:
        raise ValueError("the stack has no planes")
    return shape[axis], plane, axis


def _batch_size(plane: tuple[int, int], is_lazy: bool) -> int:
    if is_lazy:  # one plane at a time, or one per cluster worker thread, as napari_dgno.io writes them
        return parallel_tasks()
    return max(1, _BATCH_BYTES // (8 * plane[0] * plane[1]))


def _iter_batches(stack: Any, axis: int, batch: int, what: str,
                  cancel: CancelToken = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first plane index, float64 (b, Y, X)), reading ``batch`` planes at a time.

    ``cancel`` is checked before each read, so a lazy plane is never computed after a cancel.
    """
    n = stack.shape[axis]
    lazy = _is_dask(stack)
    for start in range(0, n, batch):
        raise_if_cancelled(cancel, "measuring focus")
        index = [slice(None)] * 3
        index[axis] = slice(start, min(n, start + batch))
        block = stack[tuple(index)]
        if lazy:
            block = block.compute()
        yield start, _as_float_planes(np.moveaxis(np.asarray(block), axis, 0), start, what)


def _run(stack: Any, axis: int, per_batch: Callable[[int, np.ndarray], None], what: str,
         progress: Progress | None, cancel: CancelToken) -> None:
    n, plane, axis = _stack_shape(stack, axis)
    check_cancel_token(cancel)
    done = 0
    for start, planes in _iter_batches(stack, axis, _batch_size(plane, _is_dask(stack)), what, cancel):
        per_batch(start, planes)
        done += len(planes)
        if progress is not None:
            progress(done, n)


# --- public API --------------------------------------------------------------------------------------------

def focus_measure(image2d: Any, measure: str | Callable = "normalized_variance") -> float:
    """Focus score of one 2-D plane (any real dtype; higher is sharper; 0 for a flat image).

    ``measure``: a name in :data:`MEASURES` or a callable with the same contract. NaN/Inf pixels raise.
    """
    fn = _measure_fn(measure)
    shape = getattr(image2d, "shape", np.shape(image2d))
    _check_plane_shape(shape, "image2d")
    plane = image2d.compute() if _is_dask(image2d) else image2d
    return float(fn(_as_float_planes(plane)))


def focus_curve(stack: Any, measure: str | Callable = "normalized_variance", axis: int = 0, *,
                progress: Progress | None = None, cancel: CancelToken = None) -> np.ndarray:
    """Focus score of every plane along ``axis`` of a 3-D stack (float64, one value per plane).

    numpy stacks are measured in vectorised batches; dask stacks a few planes at a time, so memory stays
    bounded and a lazy result is computed once. ``progress(done, total)`` is called after each batch;
    ``cancel`` (a ``threading.Event`` or a callable returning True) stops between batches with
    :class:`napari_dgno.engine.Cancelled`.
    """
    fn = _measure_fn(measure)
    n, _, axis = _stack_shape(stack, axis)
    curve = np.empty(n, np.float64)

    def measure_batch(start: int, planes: np.ndarray) -> None:
        curve[start:start + len(planes)] = fn(planes)

    _run(stack, axis, measure_batch, "stack", progress, cancel)
    return curve


def best_focus_plane(stack: Any, measure: str | Callable = "normalized_variance", axis: int = 0) -> int:
    """Index of the plane with the highest focus score (the first one on ties, e.g. a flat stack)."""
    return int(np.argmax(focus_curve(stack, measure, axis)))


def _data_range(reference: np.ndarray, dtype: np.dtype, data_range: float | None) -> float:
    """Range of intensities PSNR/SSIM are relative to: given, else the reference's, else the dtype's."""
    if data_range is not None:
        if not np.isfinite(data_range) or data_range <= 0:
            raise ValueError(f"data_range must be a positive number, got {data_range!r}")
        return float(data_range)
    spread = float(reference.max() - reference.min())
    if spread > 0:
        return spread
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(info.max) - float(info.min)
    raise ValueError("the reference plane is flat (all pixels equal), so it defines no intensity range; "
                     "pass data_range= (e.g. 1.0 for images scaled to [0, 1]) or choose another reference")


def _resolve_reference(stack: Any, reference: Any, axis: int, measure: str | Callable,
                       curve: np.ndarray | None = None) -> np.ndarray:
    """The reference as a float64 plane: a plane of the stack ("auto" uses ``curve`` when given) or an image."""
    n, plane_shape, axis = _stack_shape(stack, axis)
    if isinstance(reference, str):
        if reference != "auto":
            raise ValueError(f"reference must be 'auto', a plane index or a 2-D image, got {reference!r}")
        index = int(np.argmax(curve)) if curve is not None else best_focus_plane(stack, measure, axis)
    elif isinstance(reference, (int, np.integer)) and not isinstance(reference, bool):
        index = int(reference)
        if not 0 <= index < n:
            raise ValueError(f"reference plane {index} is out of range: the stack has planes 0 to {n - 1}")
    else:
        ref = reference.compute() if _is_dask(reference) else reference
        ref_shape = tuple(np.shape(ref))
        if ref_shape != plane_shape:
            raise ValueError(f"reference image has shape {ref_shape} but the stack's planes are {plane_shape}")
        return _as_float_planes(ref, what="reference image")
    selector = [slice(None)] * 3
    selector[axis] = index
    plane = stack[tuple(selector)]
    plane = plane.compute() if _is_dask(plane) else plane
    return _as_float_planes(plane, what=f"reference plane {index}")


def _scores(planes: np.ndarray, reference: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    from skimage.metrics import structural_similarity

    mse = ((planes - reference) ** 2).mean(axis=(-2, -1))
    with np.errstate(divide="ignore"):
        psnr = 10.0 * np.log10(data_range**2 / mse)  # inf where identical
    win = min(7, *(s - 1 + s % 2 for s in reference.shape))  # skimage's default 7, or the largest odd that fits
    ssim = np.array([structural_similarity(reference, p, data_range=data_range, win_size=win) for p in planes])
    return psnr, ssim


def reference_scores(stack: Any, reference: Any, *, data_range: float | None = None, axis: int = 0,
                     measure: str | Callable = "normalized_variance", progress: Progress | None = None,
                     cancel: CancelToken = None) -> dict[str, np.ndarray]:
    """PSNR (dB) and SSIM of every plane against a reference: ``{"psnr": (Z,), "ssim": (Z,)}``.

    ``reference``: a plane index, ``"auto"`` (the best-focused plane by ``measure``) or a 2-D image of the
    planes' shape. ``data_range``: the intensity range the scores are relative to; default the reference's
    max - min (the BBBC006 protocol's normalisation), or the dtype's range for a flat integer reference.
    SSIM is scikit-image's (7x7 uniform window), as in the DGNO evaluation. A plane equal to the reference
    has PSNR ``inf`` and SSIM 1.
    """
    ref = _resolve_reference(stack, reference, axis, measure)
    rng = _data_range(ref, np.dtype(getattr(stack, "dtype", np.float64)), data_range)
    n, _, axis = _stack_shape(stack, axis)
    psnr, ssim = np.empty(n), np.empty(n)

    def score_batch(start: int, planes: np.ndarray) -> None:
        psnr[start:start + len(planes)], ssim[start:start + len(planes)] = _scores(planes, ref, rng)

    _run(stack, axis, score_batch, "stack", progress, cancel)
    return {"psnr": psnr, "ssim": ssim}


#: Keys of every row of :func:`focus_table`, in display order (values None where not applicable).
TABLE_COLUMNS = ("plane", "focus_input", "focus_result", "psnr_input", "ssim_input", "psnr_result", "ssim_result")


def focus_table(stack: Any, result: Any = None, *, reference: str | int | None = "auto",
                measure: str | Callable = "normalized_variance", axis: int = 0, data_range: float | None = None,
                progress: Progress | None = None, cancel: CancelToken = None) -> list[dict]:
    """One row per plane: its focus in the input and in the result, and PSNR/SSIM of both vs a reference.

    ``result``: the restored stack (same shape), or None. ``reference``: ``"auto"`` (the input's
    best-focused plane), a plane index of the input, or None for no reference scores. Rows have the keys
    :data:`TABLE_COLUMNS`; missing quantities are None. The input is read twice when the reference is
    ``"auto"`` (once to find it); the result, possibly an expensive lazy array, is read once.
    ``progress(done, total)`` counts planes over all passes.
    """
    fn = _measure_fn(measure)
    n, _, axis = _stack_shape(stack, axis)
    if result is not None:
        r_shape = tuple(getattr(result, "shape", ()))
        if r_shape != tuple(stack.shape):
            raise ValueError(f"result has shape {r_shape} but the input stack has shape {tuple(stack.shape)}; "
                             "compare a result with the stack it was computed from")
    passes = (1 if reference != "auto" else 2) + (result is not None)
    state = {"offset": 0}

    def sub_progress(done: int, total: int) -> None:
        if progress is not None:
            progress(state["offset"] + done, passes * n)

    cols: dict[str, np.ndarray | None] = {c: None for c in TABLE_COLUMNS[1:]}
    ref = rng = None
    if reference == "auto":
        cols["focus_input"] = focus_curve(stack, fn, axis, progress=sub_progress, cancel=cancel)
        state["offset"] += n
    if reference is not None:
        ref = _resolve_reference(stack, reference, axis, fn, cols["focus_input"])
        rng = _data_range(ref, np.dtype(getattr(stack, "dtype", np.float64)), data_range)

    def run_pass(array: Any, name: str) -> None:
        focus, psnr, ssim = np.empty(n), np.empty(n), np.empty(n)

        def batch(start: int, planes: np.ndarray) -> None:
            stop = start + len(planes)
            focus[start:stop] = fn(planes)
            if ref is not None:
                psnr[start:stop], ssim[start:stop] = _scores(planes, ref, rng)

        _run(array, axis, batch, name, sub_progress, cancel)
        state["offset"] += n
        cols[f"focus_{name}"] = focus
        if ref is not None:
            cols[f"psnr_{name}"], cols[f"ssim_{name}"] = psnr, ssim

    if cols["focus_input"] is None or ref is not None:
        run_pass(stack, "input")
    if result is not None:
        run_pass(result, "result")
    return [{"plane": i, **{k: (None if v is None else float(v[i])) for k, v in cols.items()}} for i in range(n)]
