"""``deblur`` and ``deblur_lazy``: check every argument, resolve defaults, build the job, run it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._checkpoints.device import DeviceUnavailableError, resolve_device
from .acceleration import check_acceleration, resolve_acceleration
from .axes import guess_axes, parse_axes
from .devices import DEFAULT_OVERLAP, check_precision, resolve_sizes
from .distributed import active_client
from .eager import run_eager
from .hooks import CancelToken, Hooks, ProgressCallback
from .job import Job
from .models import prepare_model
from .normalize import check_dtype, check_shape
from .runner import TileState
from .tiling import check_tiling

if TYPE_CHECKING:
    import dask.array


def _as_array(image: Any):
    if isinstance(image, np.ndarray) or type(image).__module__.startswith("dask."):
        return image
    if hasattr(image, "shape") and hasattr(image, "dtype") and hasattr(image, "__getitem__"):
        import dask.array as da

        return da.from_array(image, chunks=image.shape)  # e.g. a zarr array or h5py dataset: stay lazy
    return np.asarray(image)


def _device_for(device: str, lazy: bool):
    """The device to load the model on in this process.

    Tasks resolve the user's string themselves, so on a cluster "auto" means each worker's own GPU;
    a device this client lacks is accepted when a distributed client will run the graph.
    """
    try:
        return resolve_device(device)
    except DeviceUnavailableError:
        if lazy and active_client() is not None:
            return resolve_device("cpu")
        raise


def prepare_job(
    image: Any,
    model: Any,
    *,
    axes: str | None,
    tile: int | None,
    overlap: int,
    batch_size: int | None,
    device: str,
    precision: str,
    accelerate: str,
    progress: ProgressCallback | None,
    cancel: CancelToken,
    lazy: bool,
) -> tuple[Job, Hooks, Any]:
    """Validate everything a user can get wrong, with the fix in the message, before any work.

    Cheap checks come first, so a typo is reported before a model is loaded or downloaded.
    """
    array = _as_array(image)
    check_dtype(array.dtype)
    check_shape(array.shape)
    if axes is not None:
        parse_axes(axes, array.shape)
    local = _device_for(device, lazy)
    check_precision(precision, local)
    check_acceleration(accelerate, local)
    tile, batch_size = resolve_sizes(local, tile, batch_size)
    check_tiling(tile, overlap)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    Hooks(progress, cancel)  # type checks of the callbacks
    spec, meta, live = prepare_model(model, local)
    resolve_acceleration(accelerate, live, local)  # e.g. 'compile' asked for a model that is not a DGNO
    in_channels = meta.in_channels or 1
    layout = parse_axes(axes if axes is not None else guess_axes(array.shape, array.dtype, in_channels), array.shape)
    colour = layout.channels - layout.rgba
    if in_channels > 1 and colour != in_channels:
        raise ValueError(
            f"model {meta.name!r} expects {in_channels} input channels (e.g. RGB) but the image has "
            f"{colour if layout.has_channel else 'no'} channel{'s' if colour != 1 else ''} (axes {layout.axes!r}, "
            f"shape {tuple(array.shape)}); use a 1-channel model for single-channel data, or pass axes= "
            "naming the channel axis"
        )
    job = Job(
        layout=layout, dtype=np.dtype(array.dtype), spec=spec, meta=meta, device=str(device),
        precision=precision, overlap=int(overlap), batch_size=int(batch_size), state=TileState(int(tile)),
        accelerate=accelerate,
    )
    hooks = Hooks(progress, cancel, images=job.planes * job.images_per_plane, tiles_per_image=job.tiles_per_image())
    return job, hooks, array


def deblur(
    image: Any,
    model: Any,
    *,
    axes: str | None = None,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    progress: ProgressCallback | None = None,
    cancel: CancelToken = None,
    accelerate: str = "auto",
) -> np.ndarray:
    """Deblur ``image`` (numpy or dask, never modified) with ``model``; float32, same shape, input units.

    ``model``: a DGNO, a callable on (B, C, H, W) tensors, a registry name or checkpoint path, or a
    zero-argument factory. ``axes``: e.g. "YX", "YXC", "ZYX", "TZCYX" (guessed when None).
    ``tile``: tile edge, a multiple of 32 (default 256 on CPU, 512 on GPU); ``overlap``: pixels
    shared by neighbouring tiles (the outer quarter is discarded, the rest blended linearly).
    ``batch_size``: tiles per forward pass (default 1 on CPU, 1024^2 pixels' worth on GPU).
    ``device``: "auto" (cuda > mps > cpu), "cpu", "cuda", "cuda:N" or "mps".
    ``precision``: "fp32", "bf16" (CUDA, CPU) or "fp16" (CUDA).
    ``accelerate``: "auto" (CUDA graphs on a GPU when the model allows, else plain), "none",
    "graphs", "compile" or "compile+graphs" (compiles each block shape once: minutes on first use,
    faster afterwards); see :mod:`napari_dgno.model.fast`.
    ``progress(done, total)`` is called between tile batches (units: tiles of the whole job; the
    total can grow after an out-of-memory retry); ``cancel`` (a threading.Event or a callable
    returning True) is checked between batches and raises :class:`Cancelled`.
    """
    job, hooks, array = prepare_job(
        image, model, axes=axes, tile=tile, overlap=overlap, batch_size=batch_size, device=device,
        precision=precision, accelerate=accelerate, progress=progress, cancel=cancel, lazy=False,
    )
    return run_eager(job, array, hooks)


def deblur_lazy(
    image: Any,
    model: Any,
    *,
    axes: str | None = None,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    progress: ProgressCallback | None = None,
    cancel: CancelToken = None,
    accelerate: str = "auto",
) -> dask.array.Array:
    """Like :func:`deblur`, but returns at once a dask array with one chunk per plane.

    Computing a plane runs the model on that plane only, so host memory stays at a few planes for
    any stack. The graph runs on a ``dask.distributed`` cluster too: pass the model as a registry
    name, checkpoint path or factory so each worker loads it once; ``progress`` and ``cancel`` act
    only in the process that created the array (they are dropped on the way to other processes).
    """
    job, hooks, array = prepare_job(
        image, model, axes=axes, tile=tile, overlap=overlap, batch_size=batch_size, device=device,
        precision=precision, accelerate=accelerate, progress=progress, cancel=cancel, lazy=True,
    )
    from .lazy import build_lazy

    return build_lazy(job, array, hooks)
