"""Which fast path a job's model runs through: plain eager, CUDA graphs, compiled blocks, or both.

The paths themselves live in :mod:`napari_dgno.model.fast`; this module picks one per job and keeps
the wrapped model, so a graph captured for the first batch of tiles is replayed for all the others
(and for the next job with the same model, tile and batch). ``auto`` takes CUDA graphs on a GPU when
the model allows them (a DGNO in eval mode with deterministic routing and a CUDA scan backend):
capture costs about a second and removes the launch overhead. ``compile`` is opt-in: it compiles
once per tile shape (the whole network on a GPU, each block shape on CPU; tens of seconds to
minutes on first use) and pays off on long jobs.
"""

from __future__ import annotations

import copy
import threading
import weakref
from typing import Any

import torch

ACCELERATIONS = ("auto", "none", "graphs", "compile", "compile+graphs")

_lock = threading.Lock()
_wrapped: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], Any]] = weakref.WeakKeyDictionary()


def check_acceleration(mode: str, device: torch.device) -> None:
    """Refuse an unknown mode, or CUDA graphs on a device without CUDA, before any work."""
    if mode not in ACCELERATIONS:
        raise ValueError(f"accelerate must be one of {', '.join(ACCELERATIONS)}, got {mode!r}")
    if "graphs" in mode and device.type != "cuda":
        raise ValueError(
            f"accelerate={mode!r} uses CUDA graphs, which need a CUDA GPU (the device is {device.type}); "
            "use accelerate='auto' or 'none' (or 'compile')"
        )


def _is_dgno(model: Any) -> bool:
    from ..model import DGNO

    return isinstance(model, DGNO)


def graphs_possible(model: Any, device: torch.device) -> bool:
    """True when ``model`` can be replayed from CUDA graphs on ``device`` (what ``auto`` checks)."""
    if device.type != "cuda" or not _is_dgno(model) or model.training or model.routing != "argmax":
        return False
    from ..model.fast import GRAPH_SAFE_SCANS
    from ..model.scan import resolve_backend

    return resolve_backend(None, device) in GRAPH_SAFE_SCANS


def resolve_acceleration(mode: str, model: Any, device: torch.device) -> str:
    """The concrete mode for ``model`` on ``device`` (``auto`` resolved; others checked)."""
    check_acceleration(mode, device)
    if mode == "auto":
        return "graphs" if graphs_possible(model, device) else "none"
    if mode != "none" and not _is_dgno(model):
        raise ValueError(
            f"accelerate={mode!r} works on napari_dgno DGNO networks, not on {type(model).__name__}; "
            "use accelerate='none' for your own model"
        )
    return mode


def accelerated(model: Any, device: torch.device, mode: str) -> Any:
    """``model`` wrapped for ``mode`` (resolved), built once per (model, mode, device) and reused."""
    mode = resolve_acceleration(mode, model, device)
    if mode == "none":
        return model
    key = (mode, str(device))
    with _lock:
        per_model = _wrapped.setdefault(model, {})
        if key not in per_model:
            from ..model.fast import accelerate

            # Compiling changes modules in place: a copy keeps the user's model (and later runs with
            # accelerate="none" on it) uncompiled. The copy costs the weights once more (51 MB full size).
            target = copy.deepcopy(model) if "compile" in mode else model
            per_model[key] = accelerate(target, device, mode)
        return per_model[key]


def release(model: Any) -> None:
    """Drop the CUDA graphs kept for ``model`` (after an out-of-memory error, or to free the GPU)."""
    with _lock:
        for wrapper in (_wrapped.pop(model, None) or {}).values():
            if hasattr(wrapper, "release"):
                wrapper.release()
