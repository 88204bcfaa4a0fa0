"""Which dimensions of an image are the plane (Y, X), the channels (C) and the stack (everything else).

The engine works on one canonical layout, ``(*stack, C, Y, X)``, and maps results back to the
caller's order. Any other letter (Z, T, or tifffile's A, E, H, P, Q, R, ...) is a stack axis: every
YX plane along it is deblurred on its own. ``S`` (tifffile's interleaved samples) means ``C``.
A channel axis that comes last with 4 entries is RGBA: its alpha channel is passed through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PLANE = "YX"
CHANNEL = "C"
SAMPLES = "S"
#: Letters given to leading dimensions when guessing, right-aligned (ImageJ's TZCYX order).
_STACK_LETTERS = "TZ"


def _rgb_last(shape: tuple[int, ...]) -> bool:
    """The last dimension looks like interleaved colour samples (3 or 4 next to a real plane)."""
    return len(shape) >= 3 and shape[-1] in (3, 4) and min(shape[-3], shape[-2]) > 4


def guess_axes(shape: tuple[int, ...], dtype: np.dtype | str, in_channels: int = 1) -> str:
    """The axes string for an array of ``shape``/``dtype`` given to a model with ``in_channels`` inputs.

    2-D is YX; a last dimension of 3 (or 4 for uint8) next to a plane is RGB(A) samples; other leading
    dimensions are stack axes (for a 1-channel model every plane is processed alone, so it does not
    matter whether they are Z, T or C). Raises a ValueError naming the ambiguity when it cannot tell.
    """
    shape = tuple(int(n) for n in shape)
    ndim = len(shape)
    hint = "pass axes= explicitly, e.g. axes='ZYX', 'YXC', 'CYX', 'TZYX', 'ZYXC' or 'TZCYX'"
    if ndim < 2:
        raise ValueError(f"an image needs at least two dimensions (Y, X); got shape {shape}")
    if ndim == 2:
        return "YX"
    if _rgb_last(shape):
        if shape[-1] == 4 and np.dtype(dtype) != np.uint8:
            raise ValueError(
                f"cannot tell whether the last axis of shape {shape} ({np.dtype(dtype)}) holds RGBA samples "
                f"(alpha passed through) or 4 separate planes; pass axes='...YXC' for RGBA or move that axis "
                f"first and pass e.g. axes='CYX' for 4 channels"
            )
        leading = ndim - 3
        if leading > len(_STACK_LETTERS):
            raise ValueError(f"cannot guess the axes of a {ndim}-D array with shape {shape}; {hint}")
        return _STACK_LETTERS[len(_STACK_LETTERS) - leading :] + "YXC"
    leading = shape[:-2]
    if in_channels <= 1:
        if len(leading) > 3:
            raise ValueError(f"cannot guess the axes of a {ndim}-D array with shape {shape}; {hint}")
        return ("Z", "TZ", "TZC")[len(leading) - 1] + "YX"
    candidates = [i for i, n in enumerate(leading) if n == in_channels]
    if not candidates:
        raise ValueError(
            f"the model expects {in_channels} input channels but no dimension of shape {shape} has "
            f"{in_channels} entries; use a 1-channel model or pass an image with {in_channels} channels"
        )
    if len(candidates) > 1:
        raise ValueError(
            f"cannot tell which dimension of shape {shape} holds the model's {in_channels} channels "
            f"(dimensions {', '.join(map(str, candidates))} all have {in_channels} entries); {hint}"
        )
    if len(leading) - 1 > len(_STACK_LETTERS):
        raise ValueError(f"cannot guess the axes of a {ndim}-D array with shape {shape}; {hint}")
    letters = list(_STACK_LETTERS[len(_STACK_LETTERS) - (len(leading) - 1) :])
    letters.insert(candidates[0], CHANNEL)
    return "".join(letters) + "YX"


@dataclass(frozen=True)
class Layout:
    """An image's axes (normalised: upper case, S read as C) and shape, with the canonical mapping."""

    axes: str
    shape: tuple[int, ...]

    @property
    def has_channel(self) -> bool:
        return CHANNEL in self.axes

    @property
    def channels(self) -> int:
        return self.shape[self.axes.index(CHANNEL)] if self.has_channel else 1

    @property
    def rgba(self) -> bool:
        """Channel axis last with 4 entries: the 4th is alpha and is passed through."""
        return self.axes.endswith(CHANNEL) and self.channels == 4

    @property
    def stack_axes(self) -> str:
        return "".join(a for a in self.axes if a not in PLANE + CHANNEL)

    @property
    def permutation(self) -> tuple[int, ...]:
        order = [self.axes.index(a) for a in self.stack_axes]
        if self.has_channel:
            order.append(self.axes.index(CHANNEL))
        return (*order, self.axes.index("Y"), self.axes.index("X"))

    @property
    def canonical_shape(self) -> tuple[int, ...]:
        shape = [self.shape[i] for i in self.permutation]
        if not self.has_channel:
            shape.insert(len(shape) - 2, 1)
        return tuple(shape)

    @property
    def stack_shape(self) -> tuple[int, ...]:
        return self.canonical_shape[:-3]

    def to_canonical(self, array):
        """View of ``array`` (numpy or dask) as ``(*stack, C, Y, X)``."""
        out = array.transpose(self.permutation)
        return out if self.has_channel else out[..., None, :, :]

    def from_canonical(self, array):
        """Inverse of :meth:`to_canonical`."""
        if not self.has_channel:
            array = array[..., 0, :, :]
        return array.transpose(tuple(np.argsort(self.permutation)))

    def describe(self, stack_index: tuple[int, ...], channel: int | None = None) -> str:
        """Human name of one plane, e.g. ``plane Z=3, C=1`` (for error messages)."""
        parts = [f"{a}={i}" for a, i in zip(self.stack_axes, stack_index)]
        if channel is not None and self.has_channel:
            parts.append(f"C={channel}")
        return f"plane {', '.join(parts)}" if parts else "the image"


def parse_axes(axes: str, shape: tuple[int, ...]) -> Layout:
    """Validate a user's ``axes`` string against ``shape``; errors say what to pass instead."""
    if not isinstance(axes, str):
        raise TypeError(f"axes must be a string such as 'YX', 'ZYX' or 'YXC', got {type(axes).__name__}")
    shape = tuple(int(n) for n in shape)
    text = axes.strip().upper()
    if SAMPLES in text:
        if CHANNEL in text:
            raise ValueError(f"axes {axes!r} has both C and S (samples); only one channel axis is supported")
        text = text.replace(SAMPLES, CHANNEL)
    if not text.isalpha() or not text.isascii():
        raise ValueError(f"axes must be letters, one per dimension (e.g. 'ZYX'), got {axes!r}")
    if len(set(text)) != len(text):
        raise ValueError(f"axes {axes!r} repeats a letter; each dimension needs its own letter")
    if len(text) != len(shape):
        raise ValueError(
            f"axes {axes!r} has {len(text)} letters but the image has {len(shape)} dimensions (shape {shape}); "
            f"give one letter per dimension, e.g. {guess_axes_or_none(shape)!r}"
        )
    missing = [a for a in PLANE if a not in text]
    if missing:
        raise ValueError(f"axes {axes!r} must contain Y and X (the image plane); missing {', '.join(missing)}")
    return Layout(text, shape)


def guess_axes_or_none(shape: tuple[int, ...]) -> str:
    """A plausible axes string for an error message (never raises)."""
    try:
        return guess_axes(shape, np.float32)
    except ValueError:
        return "TZCYX"[max(0, 5 - len(shape)) :] if len(shape) <= 5 else "YX"
