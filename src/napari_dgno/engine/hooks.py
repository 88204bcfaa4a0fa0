"""Progress reporting and cooperative cancellation shared by every plane of one job.

Torch-free on purpose: :mod:`napari_dgno.io` and the CLI use :class:`Cancelled` without paying for
importing torch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

ProgressCallback = Callable[[int, int], Any]
#: A ``threading.Event`` (or anything with ``is_set()``) or a zero-argument callable returning True to stop.
CancelToken = Any


class Cancelled(Exception):
    """The caller's cancel token fired; nothing partial was returned or written."""


def check_cancel_token(cancel: CancelToken) -> None:
    """Raise a TypeError now (not deep inside a run) when ``cancel`` is not a usable token."""
    if cancel is None or hasattr(cancel, "is_set") or callable(cancel):
        return
    raise TypeError(
        f"cancel must be a threading.Event or a zero-argument callable returning True to stop, "
        f"got {type(cancel).__name__}"
    )


def is_cancelled(cancel: CancelToken) -> bool:
    """Whether ``cancel`` (None, an Event-like object or a callable) asks to stop."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def raise_if_cancelled(cancel: CancelToken, what: str = "deblurring") -> None:
    """Raise :class:`Cancelled` when ``cancel`` asks to stop."""
    if is_cancelled(cancel):
        raise Cancelled(f"{what} was cancelled")


class Hooks:
    """Thread-safe progress counter (units: tiles of the whole job) and cancel check.

    Dask's threaded scheduler runs several planes at once, so counts are updated under a lock.
    The callbacks belong to the calling process: when a task graph is shipped to
    ``dask.distributed`` workers the hooks travel as no-ops (see :meth:`__reduce__`).
    """

    def __init__(
        self,
        progress: ProgressCallback | None = None,
        cancel: CancelToken = None,
        *,
        images: int = 0,
        tiles_per_image: int = 0,
    ):
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be a callable progress(done, total), got {type(progress).__name__}")
        check_cancel_token(cancel)
        self.progress = progress
        self.cancel = cancel
        self.images = images
        self.images_finished = 0
        self.done = 0
        self.total = images * tiles_per_image
        self._lock = threading.Lock()

    def __reduce__(self):  # callbacks and locks cannot (and should not) travel to other processes
        return (Hooks, ())

    def check(self) -> None:
        """Raise :class:`Cancelled` if the token fired (called between tile batches)."""
        raise_if_cancelled(self.cancel)

    def start(self) -> None:
        """Report ``(0, total)`` before the first batch so bars appear at once."""
        self._report()

    def advance(self, tiles: int) -> None:
        with self._lock:
            self.done += tiles
            self.total = max(self.total, self.done)
        self._report()

    def finish_images(self, count: int) -> None:
        with self._lock:
            self.images_finished += count

    def retile(self, tiles_per_image: int) -> None:
        """After an out-of-memory retry with smaller tiles: the unfinished images need this many tiles each."""
        with self._lock:
            self.total = self.done + max(self.images - self.images_finished, 0) * tiles_per_image
        self._report()

    def _report(self) -> None:
        if self.progress is not None:
            with self._lock:
                done, total = self.done, self.total
            self.progress(done, total)
