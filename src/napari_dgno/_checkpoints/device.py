"""Turn a user's device request into a ``torch.device`` that really exists on this machine.

"auto" prefers CUDA, then Apple's MPS, then the CPU. An explicit request for a device that is not
there is an error, never a silent fall-back to the CPU (which would look like a hang on big data).
"""

from __future__ import annotations

import torch


class DeviceUnavailableError(RuntimeError):
    """The requested device is not usable on this machine."""


def mps_available() -> bool:
    """Apple's MPS backend is built into this torch and usable (False on older torch without it)."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` (cuda > mps > cpu), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a ``torch.device``."""
    text = str(device).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    try:
        dev = torch.device(text)
    except RuntimeError as err:
        raise ValueError(
            f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' (N = GPU index) or 'mps'"
        ) from err
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {device!r} was requested but CUDA is not available here (no NVIDIA GPU, or a "
                f"CPU-only PyTorch build: torch {torch.__version__}); use device='auto' or 'cpu'"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceUnavailableError(
                f"device {device!r} was requested but this machine has {count} CUDA device(s) "
                f"(cuda:0..cuda:{count - 1})"
            )
        return dev
    if dev.type == "mps":
        if not mps_available():
            raise DeviceUnavailableError(
                f"device {device!r} was requested but Apple's MPS backend is not available here; "
                "use device='auto' or 'cpu'"
            )
        return dev
    raise ValueError(f"unsupported device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
