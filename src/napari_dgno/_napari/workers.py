"""The widget's background jobs as generators for ``napari.qt.threading.thread_worker``.

Each job yields :class:`Step` values (the napari progress bar follows them) and *returns* an
:class:`Outcome` instead of raising: expected failures (bad data, missing weights, cancel) become a
one-line message the widget shows as a notification, never a traceback. Nothing here reads viewer
state; requests carry plain values captured on the main thread.

The engine reports progress through a callback from inside ``deblur``; to turn those calls into
yields, the engine runs in a helper thread and the generator relays its progress from a queue
(:func:`relay_progress`). Cancel is the engine's own token (a ``threading.Event``), checked between
tile batches, so pressing Cancel stops the computation itself, not just the reporting.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..engine import Cancelled
from .provenance import layer_provenance

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Step:
    """Progress of a job: ``done`` of ``total`` ``unit`` (tiles, bytes); total 0 means unknown."""

    message: str
    done: int = 0
    total: int = 0
    unit: str = "tiles"

    def describe(self) -> str:
        """E.g. ``"deblurring x: 3/12 tiles"`` or ``"downloading y: 12.0/52.1 MB"``."""
        if not self.total:
            return self.message
        if self.unit == "bytes":
            return f"{self.message}: {self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB"
        return f"{self.message}: {self.done}/{self.total} {self.unit}"


@dataclass(frozen=True)
class DeblurRequest:
    """One deblurring job, in plain values (``data`` is referenced, never modified)."""

    data: Any
    axes: str
    model: str
    device: str
    tile: int | None
    overlap: int
    batch_size: int | None
    precision: str
    input_name: str
    mode: str = "eager"  # "eager", "lazy" or "preview"
    extra: dict[str, Any] = field(default_factory=dict)
    accelerate: str = "auto"  # one of napari_dgno.engine.acceleration.ACCELERATIONS

    @property
    def parameters(self) -> dict[str, Any]:
        """The engine's keyword arguments (also what the provenance record lists)."""
        return {"axes": self.axes, "tile": self.tile, "overlap": self.overlap, "batch_size": self.batch_size,
                "device": self.device, "precision": self.precision, "accelerate": self.accelerate}


@dataclass
class Outcome:
    """What a job produced: a result with its provenance, or why not."""

    result: Any = None
    record: dict[str, Any] | None = None
    model_name: str = ""
    error: str | None = None
    cancelled: bool = False


class ModelCache:
    """Loaded models by (source, device, file version), so a re-run does not load the weights again."""

    def __init__(self, size: int = 2):
        self._models: dict[tuple, Any] = {}
        self._size = size
        self._lock = threading.Lock()

    @staticmethod
    def _key(source: str, device: str) -> tuple:
        path = Path(source)
        stamp = path.stat().st_mtime_ns if path.is_file() else None
        return source, device, stamp

    def get(self, source: str, device: str) -> Any:
        """The model, loaded with :func:`napari_dgno.checkpoints.load_model` on first use."""
        from ..checkpoints import load_model

        key = self._key(source, device)
        with self._lock:
            if key not in self._models:
                model = load_model(source, device=device)
                self._models[key] = model
                while len(self._models) > self._size:
                    self._models.pop(next(iter(self._models)))
            return self._models[key]

    def peek(self, source: str, device: str) -> Any | None:
        """The model if it is loaded already (no loading)."""
        with self._lock:
            return self._models.get(self._key(source, device))


_DONE = object()


def relay_progress(task: Callable[[Callable[[int, int], None]], T], message: str, unit: str = "tiles",
                   poll_s: float = 0.1) -> Generator[Step, None, T]:
    """Run ``task(progress)`` in a helper thread, yield a :class:`Step` per progress call, return its result.

    Exceptions of the task are re-raised here, in the generator's thread.
    """
    updates: queue.SimpleQueue = queue.SimpleQueue()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = task(lambda done, total: updates.put((int(done), int(total or 0))))
        except BaseException as err:  # noqa: BLE001 - handed back to the generator's thread
            box["error"] = err
        finally:
            updates.put(_DONE)

    thread = threading.Thread(target=target, name="napari-dgno-job", daemon=True)
    thread.start()
    finished = False
    while not finished:
        try:
            item = updates.get(timeout=poll_s)
        except queue.Empty:
            continue
        latest = None
        while item is not _DONE:  # coalesce bursts: only the newest count matters to a progress bar
            latest = item
            try:
                item = updates.get_nowait()
            except queue.Empty:
                break
        finished = item is _DONE
        if latest is not None:
            yield Step(message, *latest, unit=unit)
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def error_message(err: BaseException) -> str:
    """One line for the user; the traceback of an unexpected error goes to the log, not the screen."""
    expected = (ValueError, TypeError, LookupError, OSError, RuntimeError)
    if not isinstance(err, expected):
        logger.error("napari-dgno job failed", exc_info=err)
    text = str(err).strip() or type(err).__name__
    if isinstance(err, RuntimeError) and "out of memory" in text.lower():
        text += " (try a smaller tile or batch size under Advanced, or another device)"
    return text if isinstance(err, (ValueError, OSError, LookupError)) else f"{type(err).__name__}: {text}"


def deblur_job(request: DeblurRequest, models: ModelCache, cancel: threading.Event) -> Generator[Step, None, Outcome]:
    """Load the model, deblur (eagerly with progress, or lazily), and record provenance."""
    from ..engine import deblur, deblur_lazy

    name = Path(request.model).stem if Path(request.model).suffix else request.model
    try:
        if models.peek(request.model, request.device) is None:
            yield Step(f"loading model {name} on {request.device}…")
        model = models.get(request.model, request.device)
        name = getattr(getattr(model, "info", None), "name", name)
        if cancel.is_set():
            raise Cancelled("deblurring was cancelled")
        params = request.parameters
        if request.mode == "lazy":
            result = deblur_lazy(request.data, model, **params)
            if "compile" in request.accelerate:
                # Compile here, in the background, on the first plane: otherwise the first plane the
                # viewer shows would compile on its thread and freeze napari for about a minute.
                yield Step(f"DGNO {name}: compiling on the first plane (about a minute the first time)…")
                result.blocks[(0,) * result.ndim].compute()
        else:
            def task(progress: Callable[[int, int], None]) -> Any:
                return deblur(request.data, model, progress=progress, cancel=cancel, **params)

            if "compile" in request.accelerate:  # no progress until the first batch: say why it waits
                yield Step(f"DGNO {name}: compiling (about a minute the first time for this tile size and "
                           "precision)…")
            result = yield from relay_progress(task, f"DGNO {name}: deblurring {request.input_name}")
        record = layer_provenance(model, params, input_layer=request.input_name, mode=request.mode,
                                  source=request.model, input_shape=list(request.data.shape),
                                  input_dtype=str(request.data.dtype), **request.extra)
        return Outcome(result=result, record=record, model_name=name)
    except Cancelled:
        return Outcome(model_name=name, cancelled=True)
    except Exception as err:  # noqa: BLE001 - every failure becomes a notification, not a traceback
        return Outcome(model_name=name, error=error_message(err))


def fetch_job(name: str, cancel: threading.Event) -> Generator[Step, None, Outcome]:
    """Download registry model ``name`` into the Hugging Face cache, yielding bytes done/total."""
    from ..checkpoints import fetch_model

    def task(progress: Callable[[int, int], None]) -> Path:
        def report(done: int, total: int | None) -> None:
            if cancel.is_set():
                raise Cancelled(f"download of {name} was cancelled")
            progress(done, total or 0)

        return fetch_model(name, progress=report)

    try:
        yield Step(f"downloading {name}…")
        path = yield from relay_progress(task, f"downloading {name}", unit="bytes")
        return Outcome(result=path, model_name=name)
    except Cancelled:
        return Outcome(model_name=name, cancelled=True)
    except Exception as err:  # noqa: BLE001
        return Outcome(model_name=name, error=error_message(err))
