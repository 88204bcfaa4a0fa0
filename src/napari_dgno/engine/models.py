"""What the engine accepts as a model, what it needs to know about it, and one copy per process.

A model is given as one of:

* a loaded network (``napari_dgno.DGNO``) or any callable on (B, C, H, W) float tensors returning a
  tensor of the same shape or a list whose last element is (DGNO returns [quarter, half, full]);
* a registry name or checkpoint path, loaded with :func:`napari_dgno.checkpoints.load_model`;
* a picklable zero-argument factory returning a model.

Names, paths and factories are *recipes*: a dask task carries the recipe, and each process (the
local one, or each ``dask.distributed`` worker) builds the model once and keeps it in a small cache
keyed by recipe and device, so weights never travel with tasks.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

#: Models kept per process (per recipe and device); older ones are dropped first.
CACHE_SIZE = 4
_cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
_cache_lock = threading.Lock()
_stats = {"loads": 0, "hits": 0}


def cache_info() -> dict[str, Any]:
    """How often this process built a model and reused one, and which (recipe, device) it holds."""
    with _cache_lock:
        return {**_stats, "entries": list(_cache)}


@dataclass(frozen=True)
class ModelMeta:
    """What the engine and the provenance need: from ``model.info`` when present."""

    name: str
    sha256: str | None
    normalization: str
    in_channels: int | None
    source: str | None = None


def _field(info: Any, key: str) -> Any:
    if info is None:
        return None
    return info.get(key) if isinstance(info, dict) else getattr(info, key, None)


def describe(model: Any, source: str | None = None) -> ModelMeta:
    """Metadata of a loaded model; a callable without ``info`` is taken as min-max normalised."""
    info = getattr(model, "info", None)
    name = _field(info, "name") or source or getattr(model, "__name__", None) or type(model).__name__
    in_channels = getattr(model, "in_channels", None)
    return ModelMeta(
        name=str(name),
        sha256=_field(info, "sha256"),
        normalization=_field(info, "normalization") or "minmax",
        in_channels=int(in_channels) if in_channels is not None else None,
        source=source,
    )


def is_factory(obj: Any) -> bool:
    """A callable that takes no arguments (and is not a network) builds a model."""
    if isinstance(obj, torch.nn.Module) or not callable(obj):
        return False
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [
        p for p in params
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.KEYWORD_ONLY)
    ]
    return not required


def _factory_key(factory: Callable[[], Any]) -> str:
    try:
        import cloudpickle as pickler  # what dask uses to ship tasks
    except ImportError:
        import pickle as pickler
    try:
        return "factory:" + hashlib.sha256(pickler.dumps(factory)).hexdigest()
    except Exception as err:  # noqa: BLE001 - any pickling failure means the same thing here
        raise TypeError(
            f"a model factory must be picklable so dask workers can call it; {factory!r} is not ({err})"
        ) from err


def _canonical_source(source: str) -> str:
    """An absolute path for files (workers may run elsewhere in the tree), else the name."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source.strip()


@dataclass(frozen=True)
class ModelSpec:
    """Picklable recipe of a job's model. ``kind``: ``object``, ``source`` or ``factory``."""

    kind: str
    key: str
    payload: Any

    def get(self, device: torch.device) -> Any:
        """The model on ``device`` in this process, built at most once per process."""
        if self.kind == "object":
            return _to_device(self.payload, device)
        cache_key = (self.key, str(device))
        with _cache_lock:
            if cache_key in _cache:
                _cache.move_to_end(cache_key)
                _stats["hits"] += 1
                return _cache[cache_key]
            model = self._build(device)
            _stats["loads"] += 1
            _cache[cache_key] = model
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
            return model

    def _build(self, device: torch.device) -> Any:
        if self.kind == "source":
            from ..checkpoints import load_model

            return load_model(self.payload, device=device)
        model = self.payload()
        if not callable(model):
            raise TypeError(f"the model factory returned {type(model).__name__}, which is not callable")
        return _to_device(model, device)


def _to_device(model: Any, device: torch.device) -> Any:
    """``model.eval()`` on ``device`` (once: a no-op when already there)."""
    if isinstance(model, torch.nn.Module):
        if model.training:
            model.eval()
        tensor = next(model.parameters(), None)
        if tensor is None:
            tensor = next(model.buffers(), None)
        if tensor is not None and tensor.device != _canonical(device):
            model.to(device)
    return model


def _canonical(device: torch.device) -> torch.device:
    """``cuda`` -> ``cuda:<current>`` so it compares equal to a parameter's device."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def prepare_model(model: Any, device: torch.device) -> tuple[ModelSpec, ModelMeta, Any]:
    """(recipe for tasks, metadata, the model loaded in this process on ``device``)."""
    if isinstance(model, (str, os.PathLike)):
        source = os.fspath(model)
        if not source.strip():
            raise ValueError("model must be a registry name or a checkpoint path, got an empty string")
        source = _canonical_source(source)
        spec = ModelSpec("source", f"source:{source}", source)
        live = spec.get(device)
        return spec, describe(live, source), live
    if isinstance(model, torch.nn.Module):
        live = _to_device(model, device)
        return ModelSpec("object", f"object:{id(model)}", live), describe(live), live
    if is_factory(model):
        spec = ModelSpec("factory", _factory_key(model), model)
        live = spec.get(device)
        return spec, describe(live), live
    if callable(model):
        return ModelSpec("object", f"object:{id(model)}", model), describe(model), model
    raise TypeError(
        "model must be a napari_dgno.DGNO, a callable on (B, C, H, W) tensors, a registry name or checkpoint "
        f"path, or a zero-argument factory returning a model; got {type(model).__name__}"
    )


def forward(model: Any, batch: torch.Tensor) -> torch.Tensor:
    """Run ``model`` on a batch; the full-resolution output (last element of a list) as a tensor."""
    out = model(batch)
    if isinstance(out, (list, tuple)):
        if not out:
            raise ValueError("the model returned an empty list; it must return the deblurred batch")
        out = out[-1]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model returned {type(out).__name__}; it must return a tensor (or a list of them)")
    if tuple(out.shape) != tuple(batch.shape):
        raise ValueError(
            f"the model returned shape {tuple(out.shape)} for an input of shape {tuple(batch.shape)}; "
            "the engine needs an output of the same shape (or a list whose last element is)"
        )
    return out
