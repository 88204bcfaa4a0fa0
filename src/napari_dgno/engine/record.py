"""What was run, recorded next to every result (CLI output files, napari layer metadata)."""

from __future__ import annotations

import datetime as _dt
import platform
from typing import Any

from .. import __version__


def versions() -> dict[str, str]:
    """Versions of the packages that determine the numbers."""
    import importlib.metadata as md

    import numpy
    import torch

    out = {"napari_dgno": __version__, "torch": torch.__version__, "numpy": numpy.__version__}
    for name in ("dask", "tifffile"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    out["python"] = platform.python_version()
    if torch.version.cuda:
        out["cuda"] = torch.version.cuda
    return out


def provenance(
    model: Any,
    *,
    parameters: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """A JSON-serialisable record of a run: the model (name, sha256, source, normalisation), the
    parameters with defaults filled in (``tile``/``batch_size`` None -> the device's defaults), the
    device, versions and the UTC date; ``extra`` items are added as they are.

    ``model`` is what was given to :func:`napari_dgno.deblur` (a loaded model, a registry name or a
    path; names and paths come from the same per-process cache, so this does not load them again).
    ``parameters`` are deblur's keyword arguments (``axes``, ``tile``, ``overlap``, ``batch_size``,
    ``device``, ``precision``).
    """
    from .._checkpoints.device import DeviceUnavailableError, resolve_device
    from .devices import DEFAULT_OVERLAP, device_name, resolve_sizes
    from .distributed import active_client
    from .models import prepare_model
    from .tiling import check_tiling

    params = dict(parameters)
    requested = str(params.get("device", "auto"))
    try:
        resolved = resolve_device(requested)
        label = device_name(resolved)
    except DeviceUnavailableError:
        if active_client() is None:
            raise
        resolved, label = resolve_device("cpu"), requested  # the cluster's workers resolve it
    params["tile"], params["batch_size"] = resolve_sizes(resolved, params.get("tile"), params.get("batch_size"))
    check_tiling(params["tile"], params.get("overlap", DEFAULT_OVERLAP))
    _, meta, _ = prepare_model(model, resolved)
    record = {
        "model": meta.name,
        "sha256": meta.sha256,
        "source": meta.source,
        "normalization": meta.normalization,
        "parameters": params,
        "device": label,
        "versions": versions(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    record.update(extra)
    return record
