"""Internals of :mod:`napari_dgno.checkpoints`, one job per module.

* :mod:`.errors`       the exceptions users see (each message names the problem and the fix)
* :mod:`.device`       "auto"/"cpu"/"cuda:1"/"mps" -> a usable ``torch.device``
* :mod:`.safe_load`    reading .pth/.safetensors without ever unpickling code; sha256 of files
* :mod:`.infer_config` the ``network_g`` of a DGNO state dict
* :mod:`.mismatch`     a short report of how a state dict differs from a network
* :mod:`.hub`          Hugging Face download and cache look-ups
* :mod:`.suggest`      which registry model fits an image
"""
