"""Which registry model fits an image: RGB brightfield -> 3DHistech, one fluorescence channel -> BBBC006.

Among BBBC006 models the stain decides: nuclear stains (Hoechst, DAPI, ...) -> w1, actin (phalloidin,
...) -> w2, read from the layer name, channel names and metadata. Every suggestion carries a one-line
reason for the user that also says whether the weights are on this machine already.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import registry
from ..registry import ModelInfo
from .hub import cached_path

W1 = ("DGNO_BBBC006_w1_Face", "DGNO_BBBC006_w1_Cell")
W2 = ("DGNO_BBBC006_w2_Face", "DGNO_BBBC006_w2_Cell")
HISTECH = ("DGNO_3DHistech_Face", "DGNO_3DHistech_Cell")


@dataclass
class _Input:
    shape: tuple[int, ...] | None
    dtype: np.dtype | None
    rgb: bool | None
    channel_axis: int | None
    text: str  # lower-case names, channel names and metadata strings


def _field(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _strings(value: Any, depth: int = 0, budget: list[int] | None = None) -> Iterable[str]:
    """String values (not keys) of nested metadata, bounded in depth and count."""
    budget = budget if budget is not None else [500]
    if budget[0] <= 0 or depth > 4:
        return
    if isinstance(value, str):
        budget[0] -= 1
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item, depth + 1, budget)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item, depth + 1, budget)


def _describe(obj: Any) -> _Input:
    """Shape, dtype, RGB flag, channel axis and text of an array, a napari layer, or a dict of those fields."""
    shape, dtype = _field(obj, "shape"), _field(obj, "dtype")
    data = None if isinstance(obj, Mapping) else getattr(obj, "data", None)
    if shape is None and data is not None:  # a napari layer: look at its (first-scale) data
        first = data[0] if isinstance(data, (list, tuple)) and data else data
        shape, dtype = getattr(first, "shape", None), dtype if dtype is not None else getattr(first, "dtype", None)
    try:
        dtype = np.dtype(dtype) if dtype is not None else None
    except TypeError:
        dtype = None
    rgb = _field(obj, "rgb")
    axis = _field(obj, "channel_axis")
    texts = [_field(obj, "name"), _field(obj, "channel_names"), _field(obj, "metadata")]
    text = " ".join(_strings(texts)).lower()
    return _Input(tuple(int(s) for s in shape) if shape is not None else None, dtype,
                  None if rgb is None else bool(rgb), None if axis is None else int(axis), text)


def _find(words: Iterable[str], text: str) -> str | None:
    """The first keyword found in ``text``: short ones as whole words (w1 may be followed by letters)."""
    for word in words:
        if len(word) > 3:
            if word in text:
                return word
        else:
            tail = r"(?!\d)" if re.fullmatch(r"w\d", word) else r"(?![a-z0-9])"
            if re.search(rf"(?<![a-z0-9]){re.escape(word)}{tail}", text):
                return word
    return None


def _looks_rgb(inp: _Input, rgb_words: Iterable[str]) -> tuple[bool | None, str]:
    """True/False, or None when the last axis could be colour or could be 3 planes."""
    if inp.rgb is not None:
        return inp.rgb, "marked RGB" if inp.rgb else "single-channel"
    if inp.shape and len(inp.shape) >= 3 and inp.shape[-1] in (3, 4):
        if inp.dtype == np.uint8:
            return True, f"8-bit image with {inp.shape[-1]} colour values per pixel (RGB)"
        word = _find(rgb_words, inp.text)
        if word:
            return True, f"last axis of size {inp.shape[-1]} and {word!r} in its name/metadata (RGB)"
        return None, f"last axis of size {inp.shape[-1]}"
    return False, "single-channel"


def _availability(info: ModelInfo) -> str:
    if cached_path(info) is not None:
        return "bundled, works offline" if info.repo_id is None else "cached, works offline"
    if info.repo_id is None:
        return "demo weights not installed"
    return "not downloaded yet: needs internet once"


def suggest_models(image_or_layer_info: Any) -> list[tuple[ModelInfo, str]]:
    """Registry models that can process this image, best match first, each with a one-line reason.

    Accepts a numpy/dask array, a napari layer, or a dict/object with any of ``shape``, ``dtype``,
    ``rgb``, ``channel_axis``, ``name``, ``metadata``, ``channel_names``.
    """
    inp = _describe(image_or_layer_info)
    by_name = {m.name: m for m in registry.list_models()}
    rgb, why = _looks_rgb(inp, by_name[HISTECH[0]].keywords)
    ranked: list[tuple[ModelInfo, str]] = []

    def add(name: str, reason: str) -> None:
        info = by_name[name]
        # Face before Cell: the only published comparison (3DHistech PSNR, architecture doc section 13)
        # has DGNO-Face at least as good as DGNO-Cell (34.02 vs 34.00 dB); none favours Cell.
        variant = "Face variant (paper's best); " if info.variant == "face" else "Cell variant (alternative); "
        ranked.append((info, f"{reason}; {variant if info.official else ''}{_availability(info)}"))

    if rgb:
        for name in HISTECH:
            add(name, f"{why} -> 3DHistech (H&E brightfield RGB)")
        return ranked

    nuclear, actin = _find(by_name[W1[0]].keywords, inp.text), _find(by_name[W2[0]].keywords, inp.text)
    n_channels = inp.shape[inp.channel_axis] if inp.shape and inp.channel_axis is not None else 1
    each = f"each of the {n_channels} channels" if n_channels > 1 else "single-channel image"
    if nuclear and actin:
        for a, b in zip(W1, W2, strict=True):
            add(a, f"{each}; {nuclear!r} named -> BBBC006 w1 (Hoechst nuclei) for the nuclear channel")
            add(b, f"{each}; {actin!r} named -> BBBC006 w2 (phalloidin actin) for the actin channel")
    elif actin:
        for name in W2:
            add(name, f"{each}, {actin!r} in its name/metadata (actin stain) -> BBBC006 w2 (phalloidin)")
        for name in W1:
            add(name, f"{each}; trained on nuclei (Hoechst), while this looks like an actin stain ({actin!r})")
    elif nuclear:
        for name in W1:
            add(name, f"{each}, {nuclear!r} in its name/metadata (nuclear stain) -> BBBC006 w1 (Hoechst)")
        for name in W2:
            add(name, f"{each}; trained on actin (phalloidin), while this looks like a nuclear stain ({nuclear!r})")
    else:
        for name in W1:
            add(name, f"{each}, no stain named -> BBBC006 w1 (Hoechst nuclei), the default for fluorescence")
        for name in W2:
            add(name, f"{each}, no stain named; BBBC006 w2 fits actin/filament stains (phalloidin)")
    add(registry.DEMO_MODEL.name, "small model trained on simulated defocus only, a fallback")
    if rgb is None:  # last axis of 3/4 in a non-8-bit image: maybe colour after all
        for name in HISTECH:
            add(name, f"only if the {why} is RGB colour -> 3DHistech (H&E brightfield)")
    return ranked
