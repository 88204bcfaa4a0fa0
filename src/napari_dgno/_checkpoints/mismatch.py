"""A short, readable account of why a state dict does not fit a network (first few keys, not a wall)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

SHOWN = 4


def compare_state_dicts(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[tuple[str, tuple, tuple]]]:
    """Keys the network needs but the file lacks, keys the network has no use for, and shape clashes."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        (k, tuple(found[k].shape), tuple(expected[k].shape))
        for k in expected
        if k in found and tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    return missing, unexpected, shapes


def _listing(keys: list[str]) -> str:
    more = f", ... ({len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def mismatch_report(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> str | None:
    """None when ``found`` loads into ``expected`` with ``strict=True``; else a few lines saying how it differs."""
    missing, unexpected, shapes = compare_state_dicts(expected, found)
    if not (missing or unexpected or shapes):
        return None
    lines = []
    if shapes:
        shown = "; ".join(f"{k}: file {list(f)} vs network {list(e)}" for k, f, e in shapes[:SHOWN])
        more = f"; ... ({len(shapes) - SHOWN} more)" if len(shapes) > SHOWN else ""
        lines.append(f"  {len(shapes)} with other shapes: {shown}{more}")
    if missing:
        lines.append(f"  {len(missing)} missing from the file: {_listing(missing)}")
    if unexpected:
        lines.append(f"  {len(unexpected)} not used by the network: {_listing(unexpected)}")
    return "\n".join(lines)
