"""Physically based defocus simulation: specimens, defocus PSFs, camera noise, pairs and focus series.

Used by the tests, the napari sample data and training smoke runs; numpy/scipy only, fast enough to
generate training pairs on the fly (a 256x256 pair in a few milliseconds).

>>> from napari_dgno.synthetic import make_pair, make_focus_stack
>>> blurred, sharp = make_pair((256, 256), kind="nuclei", rng=0)
>>> series = make_focus_stack((9, 128, 128), rng=1)   # series.stack[series.in_focus] is the sharpest
"""

from .camera import add_noise, to_counts
from .optics import BRIGHTFIELD_RGB, FLUORESCENCE, RGB_WAVELENGTHS_UM, Optics, blur, defocus_psf, psf_size
from .pairs import (
    DEFOCUS_RANGE_UM,
    FocusStack,
    default_optics,
    make_focus_stack,
    make_pair,
    random_defocus_map,
    sample_pair,
    sample_rgb,
    sample_stack,
    sample_stack_truth,
)
from .specimens import KINDS, RngLike, random_specimen

__all__ = [
    "BRIGHTFIELD_RGB", "DEFOCUS_RANGE_UM", "FLUORESCENCE", "KINDS", "RGB_WAVELENGTHS_UM", "FocusStack", "Optics",
    "RngLike",
    "add_noise", "blur", "default_optics", "defocus_psf", "make_focus_stack", "make_pair", "psf_size",
    "random_defocus_map", "random_specimen", "sample_pair", "sample_rgb", "sample_stack", "sample_stack_truth", "to_counts",
]
