"""Find, download, verify and load DGNO checkpoints.

``load_model("DGNO_BBBC006_w1_Face")`` downloads the official file once into the Hugging Face cache
(afterwards it works offline), checks its sha256 where one is published, reads it without ever
unpickling code, builds the network with the official configuration and returns it in eval mode on
the requested device. ``load_model("/path/to/weights.pth")`` does the same for a local file, with the
configuration inferred from the state dict. ``suggest_models(image)`` says which model fits an image.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from . import registry
from ._checkpoints.device import DeviceUnavailableError, resolve_device
from ._checkpoints.errors import (
    ArchitectureMismatchError,
    CheckpointError,
    ChecksumMismatchError,
    ModelUnavailableError,
    UnsafeCheckpointError,
)
from ._checkpoints.hub import ProgressCallback, fetch, hub_cache_dir, hub_offline
from ._checkpoints.hub import cached_path as _cached_path
from ._checkpoints.infer_config import infer_network_g
from ._checkpoints.mismatch import mismatch_report
from ._checkpoints.safe_load import WEIGHT_SETS, Checkpoint, read_checkpoint, sha256_file
from ._checkpoints.suggest import suggest_models
from .model import DGNO
from .registry import ModelInfo, get_model_info, list_models

__all__ = [
    "ArchitectureMismatchError",
    "CheckpointError",
    "ChecksumMismatchError",
    "DeviceUnavailableError",
    "ModelInfo",
    "ModelUnavailableError",
    "UnsafeCheckpointError",
    "cached_path",
    "fetch_model",
    "get_model_info",
    "hub_cache_dir",
    "hub_offline",
    "infer_network_g",
    "is_cached",
    "list_models",
    "load_model",
    "resolve_device",
    "sha256_file",
    "suggest_models",
]

NORMALIZATIONS = ("minmax", "rgb255")
#: Keyword arguments of ``DGNO`` that ``load_model`` accepts as overrides (plus ``normalization``).
NETWORK_KEYS = tuple(p for p in inspect.signature(DGNO.__init__).parameters if p not in ("self", "ignored"))


def _lookup(name: str) -> ModelInfo:
    try:
        return get_model_info(name)
    except KeyError as err:
        raise CheckpointError(f"{err.args[0]} (or give the path to a .pth/.safetensors file)") from None


def fetch_model(name: str, *, force: bool = False, progress: ProgressCallback | None = None) -> Path:
    """Local path of registry model ``name``, downloaded into the Hugging Face cache if needed, sha256-verified.

    ``progress(done_bytes, total_bytes)`` is called during a download; raising from it cancels it.
    ``force`` downloads again even when cached. Honours HF_HUB_OFFLINE, HF_HUB_CACHE, HF_HOME, HF_ENDPOINT.
    """
    return fetch(_lookup(name), force=force, progress=progress)[0]


def cached_path(name: str) -> Path | None:
    """The local file of registry model ``name`` (bundled or in the HF cache), or None; no network."""
    return _cached_path(_lookup(name))


def is_cached(name: str) -> bool:
    """Whether registry model ``name`` can be loaded without network (bundled, or in the HF cache)."""
    return cached_path(name) is not None


def load_model(
    source: str | os.PathLike,
    *,
    device: str | torch.device = "auto",
    weights: str = "params",
    **overrides: Any,
) -> DGNO:
    """A DGNO in eval mode on ``device``, with ``model.info`` (a :class:`ModelInfo`) describing it.

    ``source``: a registry name (case-insensitive; ``"demo"`` is the bundled model) or a path to a
    ``.pth``/``.pt`` (``{"params", "params_ema"}`` or a bare state dict) or ``.safetensors`` file.
    ``weights``: ``"params"`` (what the official tests use) or ``"params_ema"``.
    ``overrides``: DGNO settings the state dict cannot tell (``flux_mode``, ``boundary_type``,
    ``routing``, ...) and ``normalization`` (``"minmax"`` or ``"rgb255"``).
    Files are never unpickled beyond tensors (``torch.load(weights_only=True)``).
    """
    if weights not in WEIGHT_SETS:
        raise ValueError(f"weights must be one of {', '.join(map(repr, WEIGHT_SETS))}, got {weights!r}")
    normalization = overrides.pop("normalization", None)
    if normalization is not None and normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    unknown = sorted(set(overrides) - set(NETWORK_KEYS))
    if unknown:
        raise TypeError(
            f"load_model() got unknown setting(s) {', '.join(unknown)}; "
            f"allowed: normalization, {', '.join(NETWORK_KEYS)}"
        )
    target = resolve_device(device)  # before any download: a wrong device fails fast

    entry, path, digest = _resolve_source(source)
    by_name = entry is not None
    checkpoint = read_checkpoint(path)
    state = checkpoint.select(weights)
    if entry is None:
        entry = _registry_entry_for_file(path, digest)
    config, info = _configure(entry, by_name, checkpoint, state, path, digest)
    config.update(overrides)
    model = _build(config, path)
    _load_state(model, state, path, entry)
    model.eval().to(target)

    changes: dict[str, Any] = {}
    if overrides:
        changes["network_g"] = {**info.network_g, **overrides}
    if normalization is not None:
        changes["normalization"] = normalization
    model.info = dataclasses.replace(info, **changes) if changes else info
    model.weights = weights
    return model


def _resolve_source(source: str | os.PathLike) -> tuple[ModelInfo | None, Path, str]:
    """(registry entry or None, local file, its sha256); registry files are fetched and verified."""
    if isinstance(source, str) and not source.strip():
        raise ValueError("load_model() needs a model name or a file path, got an empty string")
    if isinstance(source, str):
        try:
            entry = get_model_info(source)
        except KeyError:
            entry = None
        if entry is not None:
            path, digest = fetch(entry)
            return entry, path, digest
    path = Path(source).expanduser()
    if not path.exists():
        if isinstance(source, str) and not path.suffix and os.sep not in source:
            _lookup(source)  # raises: unknown name, listing the known ones
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    return None, path, sha256_file(path) if path.is_file() else ""


def _registry_entry_for_file(path: Path, digest: str) -> ModelInfo | None:
    """The registry entry a local file is a copy of: same published sha256, or an official file name.

    The name matters because the official flux and boundary settings cannot be read from the tensors:
    ``load_model("/mnt/usb/DGNO_3DHistech_Face.pth")`` must behave like ``load_model("DGNO_3DHistech_Face")``.
    """
    for info in registry.list_models():
        if info.sha256 and info.sha256.lower() == digest:
            return info
    try:
        info = get_model_info(path.stem)
    except KeyError:
        return None
    if info.repo_id is None:  # only official file names mean something; any file may be called "demo"
        return None
    if info.sha256 and info.sha256.lower() != digest:
        warnings.warn(
            f"{path} is named like the official {info.name} but its sha256 {digest} differs from the "
            f"published {info.sha256}; using {info.name}'s configuration, treating the weights as unofficial",
            stacklevel=3,
        )
    return info


def _configure(
    entry: ModelInfo | None, by_name: bool, checkpoint: Checkpoint, state: dict, path: Path, digest: str
) -> tuple[dict, ModelInfo]:
    """The network configuration and the ModelInfo of the loaded weights."""
    if entry is not None and by_name:
        return dict(entry.network_g), dataclasses.replace(entry, sha256=digest)
    if entry is not None:  # a local copy of a registry model
        verified = entry.sha256 is None or entry.sha256.lower() == digest
        info = dataclasses.replace(
            entry, sha256=digest, local_path=str(path), official=entry.official and verified,
            description=f"{entry.description}; loaded from a local file",
        )
        return dict(entry.network_g), info
    config = infer_network_g(state)
    config.update(checkpoint.metadata.get("network_g", {}))
    config.pop("type", None)
    channels = int(config.get("inp_channels", 1))
    normalization = checkpoint.metadata.get("normalization") or ("rgb255" if channels == 3 else "minmax")
    info = ModelInfo(
        name=path.stem,
        dataset="unknown (local file)",
        modality="unknown",
        stain="unknown",
        channel="RGB" if channels == 3 else "unknown",
        channels=channels,
        variant=str(config.get("variant", "cell")),
        network_g=dict(config),
        normalization=normalization,
        repo_id=None,
        filename=path.name,
        revision=None,
        sha256=digest,
        license="unknown (local file)",
        citation=registry.PAPER_CITATION,
        description="local checkpoint; configuration "
        + ("from its metadata" if "network_g" in checkpoint.metadata else "inferred from the state dict"),
        local_path=str(path),
        official=False,
    )
    return config, info


def _build(config: dict, path: Path) -> DGNO:
    try:
        return DGNO(**config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"cannot build a DGNO for {path} with configuration {config}: {err}") from err


def _load_state(model: DGNO, state: dict, path: Path, entry: ModelInfo | None) -> None:
    report = mismatch_report(model.state_dict(), state)
    if report is not None:
        cfg = model.config
        summary = (
            f"{cfg['inp_channels']} channel(s), dim {cfg['dim']}, blocks {cfg['num_blocks']}, "
            f"{cfg['variant']}, flux {cfg['flux_mode']}"
        )
        if entry is not None and entry.repo_id is not None:
            advice = (
                f"The file is not a {entry.name} checkpoint. If it came from the Hub, download it again "
                f"(`napari-dgno models fetch {entry.name} --force`); if it is your own model, load it by a path "
                "whose file name is not a registry name, so its configuration is inferred."
            )
        else:
            advice = (
                "Check that the file is a DGNO checkpoint (e.g. not truncated), and pass what cannot be inferred "
                "as overrides (inp_channels=..., variant='face'|'cell', flux_mode=..., boundary_type=...)."
            )
        raise ArchitectureMismatchError(
            f"{path} does not fit the network it should load into ({summary}):\n{report}\n{advice}"
        )
    model.load_state_dict(state, strict=True)
