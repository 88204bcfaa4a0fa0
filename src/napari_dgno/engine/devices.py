"""Device-dependent choices: numeric precision, default tile and batch sizes, out-of-memory handling.

Device names are resolved by :func:`napari_dgno.checkpoints.resolve_device` ("auto" = cuda > mps >
cpu; an unavailable device is an error, never a silent CPU fall-back).

Precision: ``fp32`` everywhere; ``bf16`` and ``fp16`` run the network under ``torch.autocast`` on
CUDA (bf16 needs a GPU that supports it). On the CPU, ``bf16`` uses CPU autocast (useful on CPUs
with AMX/AVX512-BF16, slower elsewhere) and ``fp16`` is refused; on Apple MPS only ``fp32`` is
offered. Results are always returned as float32.
"""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

#: Default tile edge in pixels. 512 on GPUs: few tiles, little overlap overhead (~14 % at overlap
#: 32), and the size the BBBC006 checkpoints were tested at. 256 on the CPU: a quarter of the
#: memory per tile and progress/cancel every couple of seconds instead of every ten.
DEFAULT_TILE = {"cpu": 256, "cuda": 512, "mps": 512}
DEFAULT_OVERLAP = 32
#: Pixels per batch on accelerators (4 tiles of 512^2, 16 of 256^2); one tile at a time on CPU.
_GPU_BATCH_PIXELS = 1024 * 1024
#: The smallest tile an out-of-memory retry goes down to.
MIN_TILE = 64

_LOCKS: dict[str, threading.Lock] = defaultdict(threading.Lock)


class TileSizeReduced(RuntimeWarning):
    """The device ran out of memory; the engine halved the tile and retried."""


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return
    if device.type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise ValueError("this GPU does not support bf16; use precision='fp16' or 'fp32'")
        return
    if device.type == "cpu" and precision == "bf16":
        return
    raise ValueError(
        f"precision={precision!r} is not supported on {device.type.upper()}; use 'fp32' "
        "(reduced precision runs on CUDA GPUs; bf16 also on the CPU)"
    )


def autocast(device: torch.device, precision: str):
    """The autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def default_tile(device: torch.device) -> int:
    return DEFAULT_TILE.get(device.type, 512)


def default_batch_size(device: torch.device, tile: int) -> int:
    if device.type == "cpu":
        return 1
    return max(1, _GPU_BATCH_PIXELS // (tile * tile))


def resolve_sizes(device: torch.device, tile: int | None, batch_size: int | None) -> tuple[int, int]:
    """(tile, batch size) with the device's defaults filled in for None."""
    tile = default_tile(device) if tile is None else tile
    return tile, default_batch_size(device, tile) if batch_size is None else batch_size


def device_lock(device: torch.device) -> threading.Lock:
    """One forward pass at a time per device in this process (napari slicing, widget and CLI threads)."""
    return _LOCKS[str(device)]


def is_out_of_memory(error: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    if isinstance(error, oom):
        return True
    return isinstance(error, RuntimeError) and "MPS backend out of memory" in str(error)


def release_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def device_name(device: torch.device) -> str:
    """E.g. ``cuda:0 (NVIDIA H100 80GB HBM3)`` for provenance and messages."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type
