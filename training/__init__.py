"""Training, evaluation and export of DGNO models with the paper's recipe (see training/README.md).

Modules: ``config`` (yml + overrides), ``data``/``augment``/``sampling`` (datasets, official augmentation,
resumable per-rank sampler), ``losses``, ``schedule``, ``ema``, ``checkpointing``, ``distributed``,
``logs``, ``train`` (torchrun entry point), ``tiling`` (the official DGNO_eval tiler), ``metrics`` and
``evaluate`` (the paper's test protocol), ``export`` (safetensors for the plugin). The network itself is
``napari_dgno.DGNO``.
"""
