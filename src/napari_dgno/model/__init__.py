"""The DGNO network in pure PyTorch (no compiled extension needed)."""

from .dgno import DGNO

__all__ = ["DGNO"]
