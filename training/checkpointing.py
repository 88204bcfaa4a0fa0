"""Checkpoints in the official format, resumable training states, RNG capture, and fine-tuning weights.

* ``models/net_g_<iter>.pth`` and ``models/net_g_latest.pth``: ``{"params": ..., "params_ema": ...}``
  (CPU tensors, no ``module.`` prefixes) plus ``network_g``/``normalization``: what the official test
  scripts and ``napari_dgno.load_model`` read.
* ``training_states/<iter>.state``: everything a resumed run needs (both weight sets, optimiser,
  scheduler, iteration, sampler position, the RNG states of every rank, the config).

Every file is written to a temporary name in the same folder and moved into place with ``os.replace``,
so a run killed while saving never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

STATE_SUFFIX = ".state"


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DDP (or compiled) wrapper."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU copy of a state dict without ``module.`` / ``_orig_mod.`` prefixes."""
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value.detach().to("cpu", copy=True)
    return out


def official_checkpoint(net: nn.Module, ema_net: nn.Module, network_g: dict | None = None,
                        normalization: str | None = None) -> dict[str, Any]:
    """``{"params", "params_ema"}`` like BasicSR, plus ``network_g`` and ``normalization`` when given: extra
    top-level keys the official test scripts ignore and ``napari_dgno.load_model`` reads (the state dict
    alone cannot tell e.g. ``avg_jump`` from ``jump`` flux)."""
    ckpt: dict[str, Any] = {"params": clean_state_dict(unwrap(net).state_dict()),
                            "params_ema": clean_state_dict(unwrap(ema_net).state_dict())}
    if network_g is not None:
        ckpt["network_g"] = dict(network_g)
    if normalization is not None:
        ckpt["normalization"] = normalization
    return ckpt


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file next to ``path``, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# ---------------------------------------------------------------------------------------------- RNG
def capture_rng(device: torch.device) -> dict[str, Any]:
    """This process's python, numpy, torch CPU and (when used) CUDA generator states, as plain python
    values (bytes, ints, tuples) so they can be gathered across ranks and stored in a weights-only file."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].astype(np.uint32).tobytes(), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        "torch_cpu": torch.get_rng_state().numpy().tobytes(),
    }
    if device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(device).numpy().tobytes()
    return state


def _byte_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    """Undo :func:`capture_rng`."""
    random.setstate(_as_tuple(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.frombuffer(keys, dtype=np.uint32).copy(), pos, has_gauss, cached))
    torch.set_rng_state(_byte_tensor(state["torch_cpu"]))
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(_byte_tensor(state["torch_cuda"]), device)


def _as_tuple(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value


def seed_everything(seed: int) -> None:
    """The official ``set_random_seed(seed + rank)``: python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------- files
def _iter_of(path: Path) -> int | None:
    match = re.fullmatch(r"(?:net_g_)?(\d+)", path.stem)
    return int(match.group(1)) if match else None


def latest_state(folder: str | Path) -> Path | None:
    """The training state with the highest iteration in ``folder`` (None when there is none)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    states = [(_iter_of(p), p) for p in folder.glob(f"*{STATE_SUFFIX}")]
    states = [(i, p) for i, p in states if i is not None]
    return max(states)[1] if states else None


def load_training_state(path: str | Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def prune(folder: Path, pattern: str, keep: int | None) -> None:
    """Delete all but the newest ``keep`` numbered files matching ``pattern`` (latest files are kept)."""
    if not keep:
        return
    numbered = sorted((i, p) for p in folder.glob(pattern) if (i := _iter_of(p)) is not None)
    for _, path in numbered[: max(0, len(numbered) - int(keep))]:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- weights
def init_weights(source: str | Path, key: str = "params") -> dict[str, torch.Tensor]:
    """The ``key`` weights of a registry model (downloaded when needed) or of a checkpoint file
    (official ``.pth``, bare state dict or ``.safetensors``), read by ``napari_dgno.checkpoints.load_model``
    (which never unpickles arbitrary objects). Used to fine-tune from a model and to evaluate weights."""
    from napari_dgno.checkpoints import load_model

    model = load_model(str(source), device="cpu", weights=key)
    return clean_state_dict(model.state_dict())
