"""The command line's one progress bar: tqdm on stderr, driven by ``progress(done, total)`` callbacks."""

from __future__ import annotations

import sys
import threading


class ProgressBar:
    """A tqdm bar fed by the core's progress callbacks (from any thread).

    Created on the first call, so a run that fails during its checks prints no empty bar.
    """

    def __init__(self, label: str, unit: str, quiet: bool):
        self._label, self._unit, self._quiet = label, unit, quiet
        self._bar = None
        self._lock = threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        with self._lock:
            if self._bar is None:
                self._bar = tqdm(total=total, desc=self._label, unit=self._unit, file=sys.stderr,
                                 disable=self._quiet, dynamic_ncols=True)
            if total != self._bar.total:
                self._bar.total = total
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
