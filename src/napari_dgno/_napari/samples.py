"""Sample data (File > Open Sample > DGNO deblur), simulated offline by :mod:`napari_dgno.synthetic`.

Each sample opens with a name that says what it is, the simulated microscope's pixel size as scale
(µm), axis labels, and contrast limits set from the in-focus data (so the blur is visible at once).
The simulation parameters travel in ``layer.metadata["synthetic"]``.
"""

from __future__ import annotations

from typing import Any

from ..synthetic import sample_pair, sample_rgb, sample_stack

LayerData = tuple[Any, dict[str, Any], str]


def _geometry(meta: dict[str, Any]) -> dict[str, Any]:
    return {"scale": tuple(meta["scale"]), "units": tuple(meta["units"]), "axis_labels": tuple(meta["axes"].replace("C", ""))}


def defocus_stack() -> list[LayerData]:
    """A 21-plane widefield z-stack of nuclei, in focus at plane 10 (uint16, 1 µm steps)."""
    data, meta = sample_stack()
    kwargs = {"name": "DGNO sample: defocus z-stack", "contrast_limits": meta["contrast_limits"],
              "colormap": "gray", "metadata": {"synthetic": meta}, **_geometry(meta)}
    return [(data, kwargs, "image")]


def pair_2d() -> list[LayerData]:
    """A defocused 2-D field and the in-focus acquisition of the same field."""
    blurred, sharp, meta = sample_pair()
    common = {"contrast_limits": meta["contrast_limits"], "colormap": "gray", "metadata": {"synthetic": meta},
              **_geometry(meta)}
    return [
        (sharp, {**common, "name": "DGNO sample: 2D pair (in focus)", "visible": False}, "image"),
        (blurred, {**common, "name": "DGNO sample: 2D pair (defocused)"}, "image"),
    ]


def rgb_patch() -> list[LayerData]:
    """A defocused H&E-like brightfield patch (8-bit RGB), like a slide scanner's out-of-focus tile."""
    data, meta = sample_rgb()
    kwargs = {"name": "DGNO sample: RGB pathology patch", "rgb": True, "contrast_limits": (0, 255),
              "metadata": {"synthetic": meta}, **_geometry(meta)}
    return [(data, kwargs, "image")]
