"""Evaluate weights with the paper's test protocol (test/test_bbbc.py, test/test_3dhistech.py).

    python -m training.evaluate --config training/configs/NAME.yml --weights PATH --input-dir DIR
        [--weights-key params|params_ema] [--csv out.csv] [--engine official|napari] [--routing argmax|gumbel]

* 1-channel models (BBBC006 protocol): every image min-max normalised on its own, the whole image
  (520×696 for BBBC006) through ``DGNO_eval``'s 512-tile blending when ``network_g.train_size`` is set,
  output clamped to [0, 1]; float PSNR (100 when identical) and SSIM (data range 1).
* 3-channel models (3DHistech protocol): RGB / 255, whole image; PSNR on the grayscale of truncated
  uint8 images, SSIM on float RGB, MAE.
* LPIPS (AlexNet) when the ``lpips`` package is installed.

``--input-dir`` is the folder holding the pairs (``GT``+``blur`` for BBBC006, ``sharp``+``blur``
otherwise) or its parent with a ``test`` split; synthetic configs need none (their held-out set is
simulated). ``--engine napari`` runs ``napari_dgno.engine.deblur`` (the plugin's tiling) instead of the
official tiler. The official tests load ``params`` (not the EMA weights) and sample the routing
(``--routing gumbel``); ``argmax`` is deterministic.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpointing import init_weights
from .config import ConfigError, load_config
from .data import (
    BBBC006Pairs,
    DataError,
    FolderPairs,
    Histech3DPairs,
    PairSource,
    build_source,
    inference_normalization,
)
from .distributed import pick_device
from .metrics import Lpips, protocol_metrics
from .tiling import official_tiled_forward
from .train import build_network


def resolve_source(opt: dict, input_dir: str | Path | None, split: str = "test") -> PairSource:
    """The evaluation pairs: ``input_dir`` read as the config's dataset type, or the config's val set."""
    dopt = dict(opt["datasets"].get("val") or opt["datasets"]["train"])
    kind = str(dopt.get("type", "")).lower()
    channels = int(opt["network_g"].get("inp_channels", 1))
    if input_dir is None:
        if kind != "synthetic":
            raise DataError(f"--input-dir is required for a {kind} config (the folder with the test pairs)")
        return build_source(dopt, "val", channels)
    root = Path(input_dir)
    if not root.is_dir():
        raise DataError(f"--input-dir {root} is not a folder")
    if kind == "bbbc006":
        base = root if (root / "GT").is_dir() else root / split
        return BBBC006Pairs(base.parent, base.name, dopt.get("channel", "w1"))
    if kind == "3dhistech":
        base = root if (root / "sharp").is_dir() else root / split
        return Histech3DPairs(base.parent, base.name)
    base = root if (root / "sharp").is_dir() else root / split
    normalization = dopt.get("normalization") or ("rgb255" if channels == 3 else "minmax")
    return FolderPairs(base, normalization, channels)


def load_network(opt: dict, weights: str | Path, key: str, device: torch.device, routing: str) -> torch.nn.Module:
    """The config's network with ``weights[key]`` loaded strictly, in eval mode."""
    net = build_network(opt["network_g"])
    net.load_state_dict(init_weights(weights, key), strict=True)
    net.routing = routing
    channels = int(opt["network_g"].get("inp_channels", 1))
    # what napari_dgno.engine reads to normalise like the training data (identity on the [0, 1] images
    # evaluation feeds it: min-max of a min-max normalised image, or RGB already divided by 255)
    net.info = {"name": Path(str(weights)).stem,
                "normalization": inference_normalization(opt["datasets"]["train"], channels)}
    return net.eval().to(device)


def make_runner(net: torch.nn.Module, opt: dict, engine: str,
                device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """(H, W, C) float32 image in [0, 1] → restored (H, W, C) float32 in [0, 1]."""
    train_size = opt["network_g"].get("train_size")
    if engine == "official":
        @torch.no_grad()
        def run(image: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(device)
            out = official_tiled_forward(net, x, train_size).clamp_(0, 1)
            return out[0].cpu().numpy().transpose(1, 2, 0)
        return run
    if engine == "napari":
        from napari_dgno.engine import deblur

        def run(image: np.ndarray) -> np.ndarray:
            data, axes = (image[..., 0], "YX") if image.shape[-1] == 1 else (image, "YXC")
            out = np.asarray(deblur(data, net, axes=axes, device=str(device)), dtype=np.float32)
            out = out[..., None] if out.ndim == 2 else out
            return np.clip(out, 0, 1)
        return run
    raise ValueError(f"engine must be 'official' or 'napari', got {engine!r}")


def evaluate(opt: dict, weights: str | Path, input_dir: str | Path | None = None, *, weights_key: str = "params",
             engine: str = "official", routing: str = "argmax", device: str = "auto", max_images: int | None = None,
             with_input: bool = True, lpips: bool = True,
             progress: Callable[[int, int, dict], None] | None = None) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per-image metric rows and their means (see the module docstring for the protocol)."""
    dev = pick_device(device, 0)
    net = load_network(opt, weights, weights_key, dev, routing)
    source = resolve_source(opt, input_dir)
    count = len(source) if max_images is None else min(len(source), int(max_images))
    protocol = "rgb" if net.in_channels == 3 else "fluorescence"
    run = make_runner(net, opt, engine, dev)
    lp = Lpips(str(dev)) if lpips else None
    rows: list[dict[str, Any]] = []
    for index in range(count):
        lq, gt, name = source.load(index)
        out = run(lq)
        row: dict[str, Any] = {"image": name, **protocol_metrics(out, gt, protocol)}
        if lp is not None and lp.available:
            row["lpips"] = lp(out, gt)
        if with_input:
            row.update({f"{k}_input": v for k, v in protocol_metrics(lq, gt, protocol).items()})
        rows.append(row)
        if progress is not None:
            progress(index + 1, count, row)
    return rows, mean_rows(rows)


def mean_rows(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean of every numeric column (infinite PSNRs of identical images are left out of the mean)."""
    keys = [k for k in rows[0] if k != "image"] if rows else []
    means = {}
    for key in keys:
        values = [float(r[key]) for r in rows if key in r and math.isfinite(float(r[key]))]
        means[key] = float(np.mean(values)) if values else float("nan")
    return means


def write_csv(path: str | Path, rows: list[dict[str, Any]], means: dict[str, float]) -> None:
    """Per-image rows, then a ``mean`` row."""
    fields = ["image", *means]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow({"image": "mean", **means})


def checkpoint_errors() -> tuple[type[Exception], ...]:
    """The loader's user-facing errors (bad file, unknown name, no network), shown without a traceback."""
    from napari_dgno.checkpoints import CheckpointError, DeviceUnavailableError

    return (CheckpointError, DeviceUnavailableError)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="training config (yml path or name in training/configs)")
    parser.add_argument("--weights", required=True, help="checkpoint (.pth/.safetensors) or registry name")
    parser.add_argument("--input-dir", default=None, help="folder with the test pairs (see above)")
    parser.add_argument("--weights-key", default="params", choices=("params", "params_ema"))
    parser.add_argument("--csv", default=None, help="write per-image metrics and the means here")
    parser.add_argument("--engine", default="official", choices=("official", "napari"))
    parser.add_argument("--routing", default="argmax", choices=("argmax", "gumbel"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS even when lpips is installed")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config setting (e.g. datasets.val.channel=w2)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        opt = load_config(args.config, args.overrides)

        def show(done: int, total: int, row: dict) -> None:
            scores = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "image")
            print(f"[{done}/{total}] {row['image']}: {scores}", flush=True)

        rows, means = evaluate(opt, args.weights, args.input_dir, weights_key=args.weights_key, engine=args.engine,
                               routing=args.routing, device=args.device, max_images=args.max_images,
                               lpips=not args.no_lpips, progress=show)
    except (ConfigError, DataError, FileNotFoundError, *checkpoint_errors()) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"mean over {len(rows)} images: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
    if args.csv:
        write_csv(args.csv, rows, means)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
