"""Focus curves of several stacks in one pass, with one progress count and one cancel (worker-thread code)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np


def curves_of(jobs: list[tuple[Any, Any]], measure: str, progress: Callable[[int, int], Any] | None,
              cancel: threading.Event) -> dict[Any, np.ndarray] | None:
    """``{key: focus_curve(stack)}`` for each (key, (Z, Y, X) stack), or None when ``cancel`` fired.

    ``progress(done, total)`` counts planes over all stacks, so one progress bar covers the whole job.
    """
    from ..engine.hooks import Cancelled
    from ..focus import focus_curve

    total = sum(int(data.shape[0]) for _, data in jobs)
    done, out = 0, {}
    try:
        for key, data in jobs:
            def step(n: int, _total: int, offset: int = done) -> None:
                if progress is not None:
                    progress(offset + n, total)

            out[key] = focus_curve(data, measure, progress=step, cancel=cancel)
            done += int(data.shape[0])
    except Cancelled:
        return None
    return out
