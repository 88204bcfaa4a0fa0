"""Exceptions raised while finding, reading and loading checkpoints.

All derive from :class:`CheckpointError` (a ``RuntimeError``) so that the napari widget and the CLI
can catch one type and show the message, which always says what went wrong and what to do.
"""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint could not be found, read, verified or loaded."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds pickled objects beyond tensors and plain containers; it was not executed."""


class ChecksumMismatchError(CheckpointError):
    """The file's sha256 differs from the one published for that model."""


class ModelUnavailableError(CheckpointError):
    """The weights are neither in the local cache nor downloadable right now (offline, network error)."""


class ArchitectureMismatchError(CheckpointError):
    """The state dict does not fit the network built for it (missing/unexpected keys, other shapes)."""
