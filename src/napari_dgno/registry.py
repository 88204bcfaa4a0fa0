"""The models napari-dgno knows by name: the six official DGNO checkpoints and the bundled demo.

Each entry carries what a user needs to pick the model for their data (dataset, modality, stain,
channels) and what the loader needs (the exact official ``network_g``, the Hugging Face location,
a pinned revision, the sha256 where known, the intensity normalisation of its training data).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HF_REPO_ID = "Duane245/DGNO"
#: Revision of ``Duane245/DGNO`` to download; override with NAPARI_DGNO_HF_REVISION (a commit hash pins it).
DEFAULT_REVISION = "main"
REVISION_ENV = "NAPARI_DGNO_HF_REVISION"

PAPER_CITATION = (
    "DGNO: Discontinuous Galerkin Neural Operator for microscopy defocus deblurring. "
    "ICML 2026. arXiv:2605.23282. Code and weights: https://github.com/Duane245/DGNO, "
    "https://huggingface.co/Duane245/DGNO"
)
PAPER_LICENSE = "as published by the authors on https://huggingface.co/Duane245/DGNO (not restated here)"

#: Where the bundled demo weights live inside the package.
DEMO_WEIGHTS = Path(__file__).parent / "data" / "demo_dgno.safetensors"

_COMMON = {
    "type": "DGNO",
    "dim": 48,
    "num_blocks": [2, 4, 6, 2],
    "num_refinement_blocks": 4,
    "heads": [1, 2, 4, 8],
    "ffn_expansion_factor": 2.66,
    "bias": False,
    "LayerNorm_type": "WithBias",
    "dual_pixel_task": False,
    "learnable_tau": True,
    "init_tau": 0.25,
}


def _network_g(channels: int, variant: str, flux_mode: str, boundary_type: str, train_size: int | None) -> dict:
    cfg = dict(_COMMON, inp_channels=channels, out_channels=channels, variant=variant,
               flux_mode=flux_mode, boundary_type=boundary_type)
    if variant == "cell":
        cfg["win_dg"] = 8
    if train_size is not None:
        cfg["train_size"] = train_size
    return cfg


@dataclass(frozen=True)
class ModelInfo:
    """One registry entry. ``normalization`` is ``minmax`` (per-plane min-max, BBBC006) or ``rgb255``."""

    name: str
    dataset: str
    modality: str
    stain: str
    channel: str
    channels: int
    variant: str
    network_g: dict[str, Any]
    normalization: str
    repo_id: str | None = HF_REPO_ID
    filename: str | None = None
    revision: str | None = DEFAULT_REVISION
    sha256: str | None = None
    license: str = PAPER_LICENSE
    citation: str = PAPER_CITATION
    description: str = ""
    local_path: str | None = None
    official: bool = True
    keywords: tuple[str, ...] = field(default_factory=tuple)

    @property
    def pinned_revision(self) -> str | None:
        """The revision to download: NAPARI_DGNO_HF_REVISION when set, else the entry's own."""
        return os.environ.get(REVISION_ENV) or self.revision

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_BBBC_MODALITY = "widefield fluorescence (BBBC006, U2OS cells, 16-bit, 520x696)"
_HISTECH_MODALITY = "brightfield RGB whole-slide pathology (3DHistech scanner, 8-bit, 256x256 patches)"
_NUCLEAR = ("hoechst", "dapi", "nuclei", "nucleus", "nuclear", "w1", "dna", "draq5", "sytox")
_ACTIN = ("phalloidin", "actin", "f-actin", "w2", "cytoskeleton", "lifeact")


def _official(name: str, dataset: str, modality: str, stain: str, channel: str, channels: int, variant: str,
              flux: str, boundary: str, train_size: int | None, normalization: str, keywords: tuple[str, ...],
              sha256: str | None = None) -> ModelInfo:
    kind = "DGNO-Face (face-wise DG flux)" if variant == "face" else "DGNO-Cell (cell-wise DG flux)"
    return ModelInfo(
        name=name, dataset=dataset, modality=modality, stain=stain, channel=channel, channels=channels,
        variant=variant, network_g=_network_g(channels, variant, flux, boundary, train_size),
        normalization=normalization, filename=f"pretrained/{name}.pth", sha256=sha256,
        description=f"{kind}, {flux} flux, {boundary} boundary; trained on {dataset}", keywords=keywords,
    )


OFFICIAL_MODELS: tuple[ModelInfo, ...] = (
    _official("DGNO_BBBC006_w1_Face", "BBBC006", _BBBC_MODALITY, "Hoechst 33342 (nuclei)", "w1", 1, "face",
              "avg_jump", "dirichlet", 512, "minmax", _NUCLEAR),
    _official("DGNO_BBBC006_w1_Cell", "BBBC006", _BBBC_MODALITY, "Hoechst 33342 (nuclei)", "w1", 1, "cell",
              "jump", "neumann", 512, "minmax", _NUCLEAR),
    _official("DGNO_BBBC006_w2_Face", "BBBC006", _BBBC_MODALITY, "phalloidin (actin)", "w2", 1, "face",
              "jump", "neumann", 512, "minmax", _ACTIN),
    _official("DGNO_BBBC006_w2_Cell", "BBBC006", _BBBC_MODALITY, "phalloidin (actin)", "w2", 1, "cell",
              "jump", "neumann", 512, "minmax", _ACTIN),
    _official("DGNO_3DHistech_Face", "3DHistech", _HISTECH_MODALITY, "H&E (brightfield)", "RGB", 3, "face",
              "avg_jump", "dirichlet", None, "rgb255", ("rgb", "h&e", "he", "brightfield", "pathology"),
              sha256="aa4eb5a4f9539a6cda7026520f4bf891391b414dfb9489bb7f6adba12102993f"),
    _official("DGNO_3DHistech_Cell", "3DHistech", _HISTECH_MODALITY, "H&E (brightfield)", "RGB", 3, "cell",
              "jump", "neumann", None, "rgb255", ("rgb", "h&e", "he", "brightfield", "pathology")),
)

#: The reduced network of the bundled demo model (``training/configs/demo_synthetic.yml``).
DEMO_NETWORK_G: dict[str, Any] = {
    "type": "DGNO",
    "inp_channels": 1,
    "out_channels": 1,
    "dim": 32,
    "num_blocks": [1, 1, 2, 1],
    "ffn_expansion_factor": 2.66,
    "bias": False,
    "LayerNorm_type": "WithBias",
    "variant": "face",
    "flux_mode": "avg_jump",
    "boundary_type": "dirichlet",
    "learnable_tau": True,
    "init_tau": 0.25,
}

DEMO_MODEL = ModelInfo(
    name="demo",
    dataset="synthetic defocus (napari_dgno.synthetic)",
    modality="simulated widefield fluorescence (any single channel)",
    stain="any (simulated nuclei and filaments)",
    channel="any",
    channels=1,
    variant="face",
    network_g=DEMO_NETWORK_G,
    normalization="minmax",
    repo_id=None,
    filename=None,
    revision=None,
    sha256=None,
    license="MIT (trained by the napari-dgno developers)",
    citation="napari-dgno demo model; architecture: " + PAPER_CITATION,
    description="Small DGNO trained on simulated defocus; NOT the paper's weights. Works offline.",
    local_path=str(DEMO_WEIGHTS),
    official=False,
)

MODELS: tuple[ModelInfo, ...] = (*OFFICIAL_MODELS, DEMO_MODEL)


def list_models() -> list[ModelInfo]:
    """All registry entries, official checkpoints first, then the bundled demo."""
    return list(MODELS)


def get_model_info(name: str) -> ModelInfo:
    """Registry entry by name, case-insensitive; the error lists the known names."""
    wanted = name.strip().lower()
    for info in MODELS:
        if info.name.lower() == wanted:
            return info
    raise KeyError(f"no model named {name!r} in the registry; known models: {', '.join(m.name for m in MODELS)}")
