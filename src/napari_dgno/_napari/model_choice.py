"""The models the widget offers: registry entries and local checkpoint files, and whether each is usable now.

Thin wrappers over :mod:`napari_dgno.checkpoints` (registry, cache look-up, suggestions); nothing here
touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import checkpoints
from ..registry import ModelInfo
from .layer_info import LayerSnapshot, suggest_input

#: Suffixes offered in the "Local file…" dialog (what :func:`napari_dgno.load_model` reads).
CHECKPOINT_FILTER = "DGNO checkpoints (*.pth *.pt *.safetensors *.ckpt *.bin);;All files (*)"

#: Availability states.
BUNDLED, CACHED, DOWNLOAD, MISSING, LOCAL = "bundled", "cached", "download", "missing", "local"


@dataclass(frozen=True)
class ModelChoice:
    """A registry model (``info`` set) or a local checkpoint file (``info`` None, ``source`` its path)."""

    source: str
    label: str
    info: ModelInfo | None = None

    @property
    def is_local(self) -> bool:
        return self.info is None

    @property
    def channels(self) -> int | None:
        """Input channels when known before loading (registry models)."""
        return self.info.channels if self.info is not None else None


def registry_choices() -> list[ModelChoice]:
    """Every registry model, official checkpoints first, then the bundled demo."""
    out = []
    for info in checkpoints.list_models():
        kind = "RGB" if info.channels == 3 else "1 channel"
        label = f"{info.name}  ({info.dataset}, {kind})" if info.official else f"{info.name}  (bundled demo)"
        out.append(ModelChoice(info.name, label, info))
    return out


def local_choice(path: str | Path) -> ModelChoice:
    path = Path(path).expanduser().resolve()
    return ModelChoice(str(path), f"{path.name}  (local file)")


def availability(choice: ModelChoice) -> tuple[str, str]:
    """(state, text for the user): can this model be loaded without the network right now?"""
    if choice.is_local:
        path = Path(choice.source)
        if path.is_file():
            return LOCAL, f"local file {path.name}"
        return MISSING, f"the file {path} no longer exists; choose another file"
    info = choice.info
    found = checkpoints.cached_path(info.name)
    if info.repo_id is None:
        if found is not None:
            return BUNDLED, "bundled with napari-dgno, works offline"
        return MISSING, (
            f"the {info.name} weights are not installed ({info.local_path}); reinstall napari-dgno "
            "or choose an official model"
        )
    if found is not None:
        return CACHED, f"downloaded ({found.parent}), works offline"
    return DOWNLOAD, f"not downloaded yet: click Fetch to download it once from huggingface.co/{info.repo_id}"


def suggestions(snap: LayerSnapshot) -> list[tuple[str, str]]:
    """(model name, one-line reason) for the layer, best first."""
    return [(info.name, reason) for info, reason in checkpoints.suggest_models(suggest_input(snap))]
