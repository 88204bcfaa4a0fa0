"""Shared pieces of the napari tests: a tiny real DGNO checkpoint and a counter of network calls."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from napari_dgno.model import DGNO
from napari_dgno.model.configs import tiny_network_g


def save_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """A randomly initialised tiny DGNO saved as a BasicSR-style .pth with its configuration."""
    torch.manual_seed(seed)
    config = tiny_network_g()
    model = DGNO(**config)
    torch.save({"params": model.state_dict(), "network_g": config}, path)
    return path


class ForwardCounter:
    """Counts full DGNO forward passes (in any thread), optionally pausing at the n-th one.

    A global module hook, so it sees the networks the widget loads itself.
    """

    def __init__(self, pause_at: int | None = None):
        self.calls = 0
        self.pause_at = pause_at
        self.paused = threading.Event()
        self.resume = threading.Event()
        self._lock = threading.Lock()
        self._handle = None

    def _hook(self, module, args, output) -> None:
        if not isinstance(module, DGNO):
            return
        with self._lock:
            self.calls += 1
            calls = self.calls
        if self.pause_at is not None and calls == self.pause_at:
            self.paused.set()
            self.resume.wait(timeout=60)

    def __enter__(self) -> ForwardCounter:
        self._handle = torch.nn.modules.module.register_module_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self.resume.set()
        self._handle.remove()
