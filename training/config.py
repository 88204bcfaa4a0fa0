"""Training configurations: BasicSR-style yml files, defaults, and ``--set key=value`` overrides.

A config is a nested dict (``name``, ``manual_seed``, ``datasets``, ``network_g``, ``path``, ``train``,
``val``, ``logger``). Every key the trainer reads has a default here, so an override of a misspelt key
is an error instead of a silently ignored setting.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).parent / "configs"

#: Everything the trainer reads besides ``datasets`` and ``network_g`` (the paper's recipe, section 11).
DEFAULTS: dict[str, Any] = {
    "name": None,
    "manual_seed": 100,
    "device": "auto",  # auto | cpu | cuda
    "path": {
        "experiments_root": "experiments",  # the run lives in <experiments_root>/<name>
        "init_from": None,  # registry name or checkpoint path to fine-tune from
        "init_from_key": "params",  # params | params_ema
    },
    "train": {
        "total_iter": 60000,
        "optim_g": {"type": "AdamW", "lr": 3e-4, "weight_decay": 1e-4, "betas": [0.9, 0.999]},
        "scheduler": {
            "type": "CosineAnnealingRestartCyclicLR",
            "periods": [20000, 40000],
            "restart_weights": [1, 1],
            "eta_mins": [3e-4, 1e-6],
        },
        "ema_decay": 0.999,
        "use_grad_clip": True,
        "grad_clip_norm": 0.01,
        "fft_loss_weight": 0.1,
        "bf16": False,
        "tf32": False,
        "scan_backend": None,  # sets NAPARI_DGNO_SCAN for every rank (auto, torch, triton, mamba, reference)
        "max_minutes": None,  # stop cleanly (checkpoint + validation) after this wall-clock budget
        "stop_check_freq": 10,  # iterations between the all-rank checks for a stop request or time budget
    },
    "val": {
        "val_freq": 4000,
        "center_crop": 256,
        "weights": "params_ema",  # which network validates: params_ema (official) or params
        "routing": "argmax",  # argmax (deterministic) or gumbel (the original's sampled routing)
        "max_images": None,
    },
    "logger": {
        "print_freq": 100,
        "save_checkpoint_freq": 4000,
        "use_tb_logger": True,
        "keep_checkpoints": None,  # keep only the newest N net_g_<iter>.pth / states (None: keep all)
    },
}

#: Short names accepted by ``--set`` for settings people change most.
ALIASES: dict[str, str] = {
    "init_from": "path.init_from",
    "init_from_key": "path.init_from_key",
    "experiments_root": "path.experiments_root",
    "scan_backend": "train.scan_backend",
    "total_iter": "train.total_iter",
    "iterations": "train.total_iter",
    "max_minutes": "train.max_minutes",
    "bf16": "train.bf16",
    "seed": "manual_seed",
    "dataroot": "datasets.train.dataroot",
    "val_freq": "val.val_freq",
    "print_freq": "logger.print_freq",
    "save_checkpoint_freq": "logger.save_checkpoint_freq",
    "num_workers": "datasets.train.num_worker_per_gpu",
}

#: Sections whose keys are free-form (validated by the dataset builder or the network itself).
_FREE_SECTIONS = ("datasets", "network_g")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says what to change."""


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in _FREE_SECTIONS:
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_config_path(config: str | Path) -> Path:
    """A path as given, or the name of a file in ``training/configs`` (with or without ``.yml``)."""
    path = Path(config)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / path.name, CONFIG_DIR / f"{path.name}.yml"):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yml")))
    raise ConfigError(f"config {str(config)!r} not found (neither a file nor one of training/configs: {known})")


def parse_value(text: str) -> Any:
    """YAML scalar/list parsing for ``--set`` values, with floats like ``3e-4`` read as numbers."""
    value = yaml.safe_load(text) if text.strip() else None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_override(opt: dict, assignment: str) -> None:
    """Apply one ``key=value`` (dotted key or alias) to ``opt`` in place."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    key, text = assignment.split("=", 1)
    key = ALIASES.get(key.strip(), key.strip())
    parts = key.split(".")
    node = opt
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node.get(part), dict):
            if parts[0] in _FREE_SECTIONS and part not in node:
                node[part] = {}
            else:
                raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a section of the config")
        node = node[part]
    leaf = parts[-1]
    if parts[0] not in _FREE_SECTIONS and leaf not in node:
        known = ", ".join(sorted(node)) if node is not opt else ", ".join(sorted(set(opt) | set(ALIASES)))
        raise ConfigError(f"--set {key}: unknown setting {leaf!r}; known here: {known}")
    node[leaf] = parse_value(text)


def _as_float(opt: dict, section: str, key: str) -> None:
    value = opt[section].get(key)
    if isinstance(value, str):
        try:
            opt[section][key] = float(value)
        except ValueError as exc:
            raise ConfigError(f"{section}.{key} must be a number, got {value!r}") from exc


def validate(opt: dict) -> dict:
    """Check the parts the trainer relies on; coerce YAML strings such as ``3e-4`` to numbers."""
    if not opt.get("name"):
        raise ConfigError("the config needs a 'name' (the run folder is experiments/<name>)")
    for section in ("network_g", "datasets"):
        if not isinstance(opt.get(section), dict):
            raise ConfigError(f"the config needs a '{section}' section")
    if "train" not in opt["datasets"]:
        raise ConfigError("the config needs datasets.train")
    optim = opt["train"]["optim_g"]
    for key in ("lr", "weight_decay"):
        if isinstance(optim.get(key), str):
            optim[key] = float(optim[key])
    sched = opt["train"]["scheduler"]
    sched["eta_mins"] = [float(v) for v in sched["eta_mins"]]
    for key in ("ema_decay", "grad_clip_norm", "fft_loss_weight", "max_minutes"):
        _as_float(opt, "train", key)
    total = int(opt["train"]["total_iter"])
    if total < 1:
        raise ConfigError(f"train.total_iter must be at least 1, got {total}")
    opt["train"]["total_iter"] = total
    if opt["train"]["scan_backend"] is not None:
        from napari_dgno.model.scan import BACKENDS

        if str(opt["train"]["scan_backend"]).lower() not in BACKENDS:
            raise ConfigError(f"train.scan_backend must be one of {', '.join(BACKENDS)}, "
                              f"got {opt['train']['scan_backend']!r}")
    if opt["device"] not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {opt['device']!r}")
    if opt["val"]["weights"] not in ("params", "params_ema"):
        raise ConfigError(f"val.weights must be params or params_ema, got {opt['val']['weights']!r}")
    if opt["path"]["init_from_key"] not in ("params", "params_ema"):
        raise ConfigError(f"path.init_from_key must be params or params_ema, got {opt['path']['init_from_key']!r}")
    return opt


def load_config(config: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Read a yml (path or name in training/configs), merge defaults, apply overrides, validate."""
    path = resolve_config_path(config)
    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} does not hold a mapping of settings")
    opt = _merge(DEFAULTS, raw)
    if not opt.get("name"):
        opt["name"] = path.stem
    for assignment in overrides:
        apply_override(opt, assignment)
    opt["config_file"] = str(path)
    return validate(opt)


def network_kwargs(network_g: dict) -> dict:
    """The ``network_g`` section as keyword arguments for ``napari_dgno.DGNO`` (``type`` dropped)."""
    return {k: v for k, v in network_g.items() if k != "type"}


def experiment_dir(opt: dict) -> Path:
    """Where the run writes: ``<path.experiments_root>/<name>`` (relative to the current directory)."""
    return Path(opt["path"]["experiments_root"]) / opt["name"]
