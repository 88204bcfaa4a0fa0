"""Read checkpoint files without ever running code stored in them, and hash them.

``.pth``/``.pt`` files go through ``torch.load(..., weights_only=True)``, whose unpickler only builds
tensors and plain containers: a file that needs any other global (a class, a function such as
``os.system``) is refused *before* that global is called, so its payload never runs.
``.safetensors`` files hold no code by design.

A file may hold one state dict ("bare"), or BasicSR's ``{"params": ..., "params_ema": ...}``; it may also
carry the network configuration (``network_g``) and the intensity ``normalization``: in a ``.pth`` as
top-level keys, in a ``.safetensors`` in its ``__metadata__`` (``network_g`` as JSON text).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, UnsafeCheckpointError

#: The weight sets a BasicSR checkpoint holds: raw weights (used by the official tests) and their EMA.
WEIGHT_SETS = ("params", "params_ema")
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
SAFETENSORS_SUFFIXES = (".safetensors",)

StateDict = dict[str, torch.Tensor]


@dataclass
class Checkpoint:
    """The weight sets and metadata found in one file."""

    path: Path
    weight_sets: dict[str, StateDict]
    bare: bool = False  # a single state dict, stored without a "params" wrapper
    metadata: dict[str, Any] = field(default_factory=dict)

    def select(self, weights: str) -> StateDict:
        """The state dict for ``weights`` ("params" or "params_ema"); the error lists what the file has."""
        if weights not in WEIGHT_SETS:
            raise ValueError(f"weights must be one of {', '.join(map(repr, WEIGHT_SETS))}, got {weights!r}")
        if weights in self.weight_sets:
            return self.weight_sets[weights]
        if self.bare:
            has = "a single state dict (no 'params'/'params_ema' wrapper)"
        else:
            has = "only " + ", ".join(repr(k) for k in self.weight_sets)
        raise CheckpointError(
            f"{self.path} has no {weights!r} weights: it holds {has}. "
            f"Load it with weights={next(iter(self.weight_sets))!r}."
        )


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (symlinks followed, as in the Hugging Face cache)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read ``path`` (.pth/.pt/.ckpt/.bin or .safetensors) into a :class:`Checkpoint`, safely."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a directory, not a checkpoint file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"checkpoint {path} {what}")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _read_safetensors(path)
    if suffix in TORCH_SUFFIXES:
        return _read_torch(path)
    raise CheckpointError(
        f"{path}: unknown checkpoint type {suffix or '(no extension)'!r}; napari-dgno reads PyTorch files "
        f"({', '.join(TORCH_SUFFIXES)}) and {SAFETENSORS_SUFFIXES[0]}"
    )


def _refusal(path: Path, err: Exception) -> CheckpointError:
    """The error for a file torch's safe unpickler stopped (before anything in it ran)."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    resave = (
        "If you trust where the file came from, re-save just its state dict, e.g. "
        "torch.save({'params': model.state_dict()}, 'clean.pth'), or save it as .safetensors."
    )
    if found:
        return UnsafeCheckpointError(
            f"refused to load {path}: it contains executable pickle data (it references {found.group(1)}), "
            "which could run code on this machine, so napari-dgno stopped before unpickling it and nothing in "
            f"it was executed. Checkpoints must hold only tensors and plain containers. {resave}"
        )
    return UnsafeCheckpointError(
        f"refused to load {path}: it is not a plain tensor checkpoint (its pickle stream uses instructions the "
        "safe loader does not accept: it may be corrupt, or a pickle not written by torch.save); nothing in it "
        f"was executed. {resave}"
    )


def _read_torch(path: Path) -> Checkpoint:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise _refusal(path, err) from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (empty, truncated or corrupt: {type(err).__name__}: "
            f"{str(err)[:200] or 'unexpected end of file'}); download or copy it again"
        ) from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict or a dict of state dicts")
    metadata = {k: obj[k] for k in ("network_g", "normalization") if k in obj}
    sets = {k: obj[k] for k in WEIGHT_SETS if k in obj}
    if sets:
        for key, value in sets.items():
            _check_state_dict(path, value, key)
        stripped = {k: _strip_module_prefix(v) for k, v in sets.items()}
        return Checkpoint(path, stripped, metadata=_parse_metadata(path, metadata))
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return Checkpoint(path, {"params": _strip_module_prefix(obj)}, bare=True)
    keys = ", ".join(map(str, list(obj)[:8]))
    raise CheckpointError(
        f"{path} is neither a DGNO checkpoint ({' / '.join(WEIGHT_SETS)} state dicts) nor a bare state dict; "
        f"its top-level keys are: {keys}"
    )


def _read_safetensors(path: Path) -> Checkpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            raw_meta = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a valid .safetensors file ({err}); download or copy it again") from err
    metadata = _parse_metadata(path, {k: raw_meta[k] for k in ("network_g", "normalization") if k in raw_meta})
    # Both weight sets in one file are stored with "params." / "params_ema." key prefixes.
    prefixed = {w: {k[len(w) + 1:]: t for k, t in tensors.items() if k.startswith(w + ".")} for w in WEIGHT_SETS}
    if tensors and sum(len(v) for v in prefixed.values()) == len(tensors):
        return Checkpoint(path, {k: v for k, v in prefixed.items() if v}, metadata=metadata)
    return Checkpoint(path, {"params": _strip_module_prefix(tensors)}, bare=True, metadata=metadata)


def _parse_metadata(path: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "network_g" in metadata:
        cfg = metadata["network_g"]
        if isinstance(cfg, str):
            try:
                cfg = json.loads(cfg)
            except json.JSONDecodeError as err:
                raise CheckpointError(f"{path}: its 'network_g' metadata is not valid JSON ({err})") from err
        if not isinstance(cfg, dict):
            raise CheckpointError(f"{path}: its 'network_g' metadata is a {type(cfg).__name__}, not a dict")
        out["network_g"] = cfg
    if "normalization" in metadata:
        out["normalization"] = str(metadata["normalization"])
    return out


def _check_state_dict(path: Path, value: Any, key: str) -> None:
    if not isinstance(value, dict) or not all(isinstance(t, torch.Tensor) for t in value.values()):
        raise CheckpointError(f"{path}: its {key!r} entry is not a state dict (name -> tensor)")


def _strip_module_prefix(state: StateDict) -> StateDict:
    """Drop DistributedDataParallel's ``module.`` prefix when every key has it."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)
