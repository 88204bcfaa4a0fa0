"""Which compute devices really work here, which precisions and accelerations each supports, and whether
torch is CPU-only.

The widget lists only devices that pass a real allocation (a CUDA card the driver cannot reach is left
out rather than failing later), and warns when the installed PyTorch cannot use any GPU at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._checkpoints.device import mps_available
from ..engine.acceleration import ACCELERATIONS, check_acceleration
from ..engine.devices import PRECISIONS, check_precision


@dataclass(frozen=True)
class DeviceChoice:
    """``value`` is what the engine takes (``cuda:0``, ``mps``, ``cpu``); ``label`` what the user sees."""

    value: str
    label: str


def _works(device: str) -> bool:
    try:
        torch.zeros(1, device=device) + 1
    except Exception:  # noqa: BLE001 - any failure means "not usable", whatever the backend raises
        return False
    return True


def available_devices() -> list[DeviceChoice]:
    """Working devices, fastest first: every CUDA card, Apple's MPS, then the CPU."""
    out: list[DeviceChoice] = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            value = f"cuda:{index}"
            if _works(value):
                out.append(DeviceChoice(value, f"CUDA {index}: {torch.cuda.get_device_name(index)}"))
    if mps_available() and _works("mps"):
        out.append(DeviceChoice("mps", "Apple GPU (MPS)"))
    out.append(DeviceChoice("cpu", f"CPU ({os.cpu_count() or 1} cores)"))
    return out


def cpu_only_warning() -> str | None:
    """A warning when this PyTorch build has no GPU support (None otherwise)."""
    if torch.version.cuda or getattr(torch.version, "hip", None) or mps_available():
        return None
    return (
        f"PyTorch {torch.__version__} is a CPU-only build: DGNO runs on the CPU here (seconds per plane). "
        "For an NVIDIA GPU, install a CUDA build of PyTorch (https://pytorch.org/get-started/locally/)."
    )


def no_gpu_note() -> str | None:
    """A note when the build supports CUDA but no card works (driver missing, card busy, ...)."""
    if torch.version.cuda and not any(d.value.startswith("cuda") for d in available_devices()):
        return f"PyTorch {torch.__version__} supports CUDA {torch.version.cuda}, but no working NVIDIA GPU was found."
    return None


def _accepted(names, check: Callable[[str, torch.device], None], device: str) -> list[str]:
    """The ``names`` that the engine's ``check`` accepts on ``device``, in their order."""
    target = torch.device(device)
    out = []
    for name in names:
        try:
            check(name, target)
        except ValueError:
            continue
        out.append(name)
    return out


def precisions_for(device: str) -> list[str]:
    """The precisions the engine accepts on ``device`` (fp32 always first)."""
    return _accepted(PRECISIONS, check_precision, device)


def accelerations_for(device: str) -> list[str]:
    """The ``accelerate`` modes the engine accepts on ``device`` ("auto" first; graph modes only on CUDA)."""
    return _accepted(ACCELERATIONS, check_acceleration, device)
