"""Export trained weights as a ``.safetensors`` file the plugin loads by path (or ships as a model).

    python -m training.export --checkpoint experiments/NAME/models/net_g_latest.pth --weights params_ema \\
        --out src/napari_dgno/data/demo_dgno.safetensors [--fp16] [--description TEXT]

The file holds one state dict and ``__metadata__`` with ``network_g`` (JSON), ``normalization``,
``description``, ``trained_with`` (config name), ``iterations`` and the held-out PSNR/SSIM of the
exported weights (and of the blurred input) on the config's validation set, measured here. ``--fp16``
stores float weights in half precision (half the size) and records how much that changed the
held-out scores.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from .checkpointing import init_weights
from .config import ConfigError, load_config
from .data import DataError, inference_normalization
from .evaluate import checkpoint_errors, evaluate


def find_config(checkpoint: Path, config: str | None) -> dict:
    """``--config``, else the ``config.yml`` the trainer wrote next to ``models/``."""
    if config:
        return load_config(config)
    saved = checkpoint.resolve().parent.parent / "config.yml"
    if not saved.is_file():
        raise ConfigError(f"no config.yml next to {checkpoint} (expected {saved}); pass --config")
    return load_config(saved)


def find_iterations(checkpoint: Path) -> int | None:
    """From ``net_g_<iter>.pth``, or ``run_info.json`` for ``net_g_latest.pth``."""
    match = re.fullmatch(r"net_g_(\d+)", checkpoint.stem)
    if match:
        return int(match.group(1))
    info = checkpoint.resolve().parent.parent / "run_info.json"
    if info.is_file():
        return json.loads(info.read_text()).get("iteration")
    return None


def save_safetensors(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str], fp16: bool) -> None:
    from safetensors.torch import save_file

    tensors = {}
    for key, value in state.items():
        value = value.detach().cpu()
        if fp16 and value.is_floating_point():
            value = value.half()
        tensors[key] = value.contiguous().clone()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


def heldout_scores(opt: dict, weights: Path, max_images: int | None) -> dict[str, float]:
    _, means = evaluate(opt, weights, None if _is_synthetic(opt) else _val_dir(opt), weights_key="params",
                        max_images=max_images, lpips=False)
    return means


def _is_synthetic(opt: dict) -> bool:
    return str((opt["datasets"].get("val") or {}).get("type", "")).lower() == "synthetic"


def _val_dir(opt: dict) -> Path:
    val = opt["datasets"].get("val") or {}
    if not val.get("dataroot"):
        raise DataError("the config has no validation set to measure the exported weights on; use --no-eval")
    return Path(val["dataroot"]) / str(val.get("split", "test"))


def export(checkpoint: str | Path, out: str | Path, *, weights: str = "params_ema", config: str | None = None,
           fp16: bool = False, description: str | None = None, evaluate_images: int | None = None,
           run_eval: bool = True, log=print) -> dict[str, str]:
    """Write ``out`` and return its metadata."""
    checkpoint, out = Path(checkpoint), Path(out)
    opt = find_config(checkpoint, config)
    state = init_weights(checkpoint, weights)
    channels = int(opt["network_g"].get("inp_channels", 1))
    iterations = find_iterations(checkpoint)
    metadata: dict[str, Any] = {
        "format": "napari-dgno state dict",
        "network_g": json.dumps(opt["network_g"]),
        "normalization": inference_normalization(opt["datasets"]["train"], channels),
        "description": description or (f"DGNO trained with training/configs/{opt['name']}.yml; "
                                       + ("NOT the paper's weights" if "synthetic" in opt["name"] else "")),
        "trained_with": str(opt["name"]),
        "iterations": "" if iterations is None else str(iterations),
        "weights": weights,
        "dtype": "float16" if fp16 else "float32",
    }
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "full.safetensors"
        save_safetensors(state, full, {k: str(v) for k, v in metadata.items()}, fp16=False)
        if run_eval:
            scores = heldout_scores(opt, full, evaluate_images)
            metadata.update({f"heldout_{k}": f"{v:.4f}" for k, v in scores.items()})
            metadata["heldout_set"] = _describe_val(opt, evaluate_images)
            log(f"held-out ({metadata['heldout_set']}): " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        if fp16:
            half = Path(tmp) / "half.safetensors"
            save_safetensors(state, half, {k: str(v) for k, v in metadata.items()}, fp16=True)
            if run_eval:
                half_scores = heldout_scores(opt, half, evaluate_images)
                metadata["fp16_psnr_change"] = f"{half_scores['psnr'] - scores['psnr']:+.4f}"
                metadata["fp16_ssim_change"] = f"{half_scores['ssim'] - scores['ssim']:+.5f}"
                metadata.update({f"heldout_{k}": f"{v:.4f}" for k, v in half_scores.items()})
                log(f"float16 weights change held-out PSNR by {metadata['fp16_psnr_change']} dB, "
                    f"SSIM by {metadata['fp16_ssim_change']}")
    final = {k: str(v) for k, v in metadata.items()}
    save_safetensors(state, out, final, fp16=fp16)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return final


def _describe_val(opt: dict, max_images: int | None) -> str:
    val = opt["datasets"].get("val") or {}
    if _is_synthetic(opt):
        count = val.get("num_pairs") if max_images is None else min(int(val.get("num_pairs") or 0), max_images)
        size = val.get("size") or val.get("center_crop")
        return (f"{count} simulated {val.get('kind', 'mixed')} pairs of {size} px, "
                f"seed {val.get('seed', 0)} (never used for training)")
    return f"{val.get('type')} {val.get('split', 'test')} set under {val.get('dataroot')}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a net_g_<iter>.pth or net_g_latest.pth of a run")
    parser.add_argument("--weights", default="params_ema", choices=("params", "params_ema"))
    parser.add_argument("--out", required=True, help="the .safetensors file to write")
    parser.add_argument("--config", default=None, help="training config (default: the run's config.yml)")
    parser.add_argument("--fp16", action="store_true", help="store float weights as float16 (half the size)")
    parser.add_argument("--description", default=None)
    parser.add_argument("--eval-images", type=int, default=None, help="held-out images to score (default: all)")
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.out.endswith(".safetensors"):
        print("error: --out must end with .safetensors", file=sys.stderr)
        return 2
    try:
        export(args.checkpoint, args.out, weights=args.weights, config=args.config, fp16=args.fp16,
               description=args.description, evaluate_images=args.eval_images, run_eval=not args.no_eval)
    except (ConfigError, DataError, FileNotFoundError, *checkpoint_errors()) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
