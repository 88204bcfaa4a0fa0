"""Train DGNO with the paper's recipe on 1..N processes.

    torchrun --nproc_per_node=N -m training.train --config training/configs/NAME.yml [--set key=value ...] [--resume]
    python -m training.train --config ...          (one process, CPU or one GPU)

Writes ``experiments/<name>/``: ``models/net_g_<iter>.pth`` and ``net_g_latest.pth`` (official format),
``training_states/<iter>.state`` (resume), ``train_log.csv``, ``val_log.csv``, ``train.log``,
``config.yml``, ``run_info.json`` and TensorBoard events when available. SIGINT/SIGTERM (or the
``train.max_minutes`` budget) stop every rank at the same iteration after saving a resumable state.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import time
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from .checkpointing import (
    STATE_SUFFIX,
    atomic_save,
    capture_rng,
    init_weights,
    latest_state,
    load_training_state,
    official_checkpoint,
    prune,
    restore_rng,
    seed_everything,
)
from .config import ConfigError, experiment_dir, load_config, network_kwargs
from .data import DataError, build_train_dataset, build_val_dataset, inference_normalization
from .distributed import DistInfo, any_rank, barrier, cleanup, gather_objects, init_distributed, mean_over_ranks
from .ema import ModelEMA
from .logs import CsvLog, TensorBoard, get_logger, setup_console
from .losses import LossTerms, dgno_loss
from .metrics import protocol_metrics
from .runlock import RunLock
from .sampling import ResumableBatchSampler
from .schedule import CosineAnnealingRestartCyclicLR, ProgressiveSchedule

TRAIN_FIELDS = ["iter", "lr", "loss", "l_content", "l_fft", "batch_per_gpu", "patch", "sec_per_iter", "samples_per_sec",
                "elapsed_s", "gpu_peak_gib"]
VAL_FIELDS = ["iter", "psnr", "ssim", "psnr_input", "ssim_input", "images", "weights"]


# ---------------------------------------------------------------------------------------------- building blocks
def build_network(network_g: dict) -> nn.Module:
    """``napari_dgno.DGNO(**network_g)``: the package's network, never a copy."""
    from napari_dgno import DGNO

    return DGNO(**network_kwargs(network_g))


def build_optimizer(net: nn.Module, optim_opt: dict) -> torch.optim.Optimizer:
    kind = optim_opt.get("type", "AdamW")
    if kind != "AdamW":
        raise ConfigError(f"train.optim_g.type {kind!r} is not supported (the paper uses AdamW)")
    return torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=float(optim_opt["lr"]),
                             weight_decay=float(optim_opt.get("weight_decay", 0.0)),
                             betas=tuple(float(b) for b in optim_opt.get("betas", (0.9, 0.999))))


def build_scheduler(optimizer: torch.optim.Optimizer, sched_opt: dict) -> CosineAnnealingRestartCyclicLR:
    kind = sched_opt.get("type", "CosineAnnealingRestartCyclicLR")
    if kind != "CosineAnnealingRestartCyclicLR":
        raise ConfigError(f"train.scheduler.type {kind!r} is not supported (the paper uses "
                          "CosineAnnealingRestartCyclicLR)")
    return CosineAnnealingRestartCyclicLR(optimizer, sched_opt["periods"], sched_opt["restart_weights"],
                                          sched_opt["eta_mins"])


def train_step(model: nn.Module, lq: torch.Tensor, gt: torch.Tensor, optimizer: torch.optim.Optimizer, *,
               grad_clip: float | None, fft_weight: float = 0.1, bf16: bool = False) -> LossTerms:
    """One optimisation step of the official ``optimize_parameters`` (forward, loss, backward, clip, step)."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=lq.device.type, dtype=torch.bfloat16, enabled=bf16):
        outputs = model(lq)
    terms = dgno_loss(outputs, gt, fft_weight)
    terms.total.backward()
    # The norm is computed even without clipping: a non-finite gradient (one bad batch, a flat
    # Galerkin head under bf16 ...) skips the step instead of writing NaN into the weights. Under DDP
    # the gradients are already all-reduced, so every rank takes the same decision.
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip else float("inf"))
    if not bool(torch.isfinite(norm)):
        optimizer.zero_grad(set_to_none=True)
        return terms._replace(applied=False)
    optimizer.step()
    return terms


@torch.no_grad()
def predict(net: nn.Module, lq: torch.Tensor) -> torch.Tensor:
    """Full-resolution output of a network on a (B, C, H, W) batch, clamped to [0, 1]."""
    return net(lq)[-1].float().clamp_(0, 1)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().transpose(1, 2, 0)


def _gpu_peak_gib(device: torch.device) -> str:
    """Peak memory allocated on this rank's GPU so far (GiB), empty on other devices."""
    if device.type != "cuda":
        return ""
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}"


class StopRequest:
    """SIGINT/SIGTERM set a flag checked at iteration boundaries; a second signal aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        get_logger().warning("stop requested (signal %d): saving at the next check; signal again to abort", signum)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------------------------------- trainer
class Trainer:
    """One rank of a training run (see the module docstring)."""

    def __init__(self, opt: dict, info: DistInfo, resume: bool = False):
        self.opt, self.info = opt, info
        self.topt, self.vopt, self.lopt = opt["train"], opt["val"], opt["logger"]
        self.skipped_steps = self.skipped_in_a_row = 0
        self.run_dir = experiment_dir(opt)
        self.models_dir, self.states_dir = self.run_dir / "models", self.run_dir / "training_states"
        self.log = setup_console(self.run_dir, info.is_main)
        self.lock = RunLock(self.run_dir)
        problem = self.lock.acquire() if info.is_main else None
        if any_rank(info, problem is not None):
            raise ConfigError(problem or "rank 0 found the run directory in use (see its message)")
        if self.lock.previous:
            self.log.warning("took over run.lock of process %s (%s), which is gone", self.lock.previous.get("pid"),
                             self.lock.previous.get("started"))
        state = self._find_state(resume)
        self.start_iter = int(state["iter"]) if state else 0
        self.total_iter = int(self.topt["total_iter"])
        self.device = info.device

        # data first: a wrong folder fails before the network is built
        dopt = opt["datasets"]["train"]
        self.train_set = build_train_dataset(opt)
        self.val_set = build_val_dataset(opt)  # on every rank, so a bad val folder stops all of them
        try:
            self.progressive = ProgressiveSchedule.from_dataset_opt(dopt)
        except ValueError as exc:
            raise ConfigError(f"datasets.train: {exc}") from exc

        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = bool(self.topt["tf32"])
            torch.backends.cudnn.allow_tf32 = bool(self.topt["tf32"])
        seed_everything(int(opt["manual_seed"]) + info.rank)

        net = build_network(opt["network_g"]).to(self.device)
        if state is not None:
            net.load_state_dict(state["params"], strict=True)
        elif opt["path"]["init_from"]:
            self._init_from(net, str(opt["path"]["init_from"]), opt["path"]["init_from_key"])
        net.train()
        self.ema = ModelEMA(net, float(self.topt["ema_decay"]))
        if state is not None:
            self.ema.load_state_dict(state["params_ema"])
        self.optimizer = build_optimizer(net, self.topt["optim_g"])
        self.scheduler = build_scheduler(self.optimizer, self.topt["scheduler"])
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        if info.distributed:
            # depthwise-conv gradients on CPU come with other strides than DDP's buckets: one extra copy
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model: nn.Module = DistributedDataParallel(net, device_ids=ids, gradient_as_bucket_view=True)
        else:
            self.model = net
        self.net = net
        self.normalization = inference_normalization(opt["datasets"]["train"], net.in_channels)

        source = self.train_set.source
        self.sampler = ResumableBatchSampler(None if source.unbounded else len(source), self.progressive,
                                             rank=info.rank, world_size=info.world_size, seed=int(opt["manual_seed"]),
                                             start_iter=self.start_iter, shuffle=bool(dopt.get("use_shuffle", True)))
        if state is not None and "sampler_position" in state:
            expected = self.sampler.position(self.start_iter + 1)
            if int(state["sampler_position"]) != expected:
                self.log.warning("sampler position in the state (%s) differs from the schedule's (%s): the config's "
                                 "batch schedule changed", state["sampler_position"], expected)
        workers = int(dopt.get("num_worker_per_gpu", 0))
        self.loader = DataLoader(
            self.train_set, batch_sampler=self.sampler, num_workers=workers,
            pin_memory=self.device.type == "cuda", worker_init_fn=_worker_init,
            prefetch_factor=int(dopt.get("prefetch_factor", 2)) if workers else None,
            generator=torch.Generator(),  # keeps the global RNG untouched (exact resume)
        )
        self._rng_state = state["rng"] if state is not None else None
        self._state_world = int(state.get("world_size", info.world_size)) if state is not None else info.world_size
        self.stop = StopRequest()
        self.last_saved = self.start_iter if state is not None else -1
        self.last_validated = -1

        if info.is_main:
            resume_from = self.start_iter if state is not None else None
            self.train_csv = CsvLog(self.run_dir / "train_log.csv", TRAIN_FIELDS, resume_from)
            self.val_csv = CsvLog(self.run_dir / "val_log.csv", VAL_FIELDS, resume_from)
            self.tb = TensorBoard(self.run_dir / "tb", bool(self.lopt["use_tb_logger"]))
            with open(self.run_dir / "config.yml", "w", encoding="utf-8") as handle:
                yaml.safe_dump(opt, handle, sort_keys=False)
            from napari_dgno.model.scan import resolve_backend

            covered = sum(int(p) for p in self.topt["scheduler"]["periods"])
            if covered != self.total_iter:
                self.log.warning("the learning-rate schedule spans %d iterations but total_iter is %d; set "
                                 "train.scheduler.periods to match", covered, self.total_iter)

            params = sum(p.numel() for p in net.parameters())
            self.log.info("run %s: %s, %d rank(s), device %s, %.2f M parameters, selective scan %s",
                          opt["name"], f"resumed at iteration {self.start_iter}" if state else "new run",
                          info.world_size, self.device, params / 1e6,
                          resolve_backend(None, self.device, needs_grad=True))

    # ------------------------------------------------------------------------------------------ setup helpers
    def _find_state(self, resume: bool) -> dict | None:
        existing = latest_state(self.states_dir)
        if not resume:
            if existing is not None:
                raise ConfigError(f"{self.run_dir} already holds a run (state {existing.name}); pass --resume to "
                                  "continue it, or choose another --set name=... / experiments_root")
            return None
        if existing is None:
            self.log.info("--resume: no training state under %s, starting from iteration 0", self.states_dir)
            return None
        state = load_training_state(existing)
        saved_net = state.get("config", {}).get("network_g")
        if saved_net is not None and network_kwargs(saved_net) != network_kwargs(self.opt["network_g"]):
            raise ConfigError(f"--resume: network_g of {existing} differs from the config's; resume with the same "
                              "network")
        self.log.info("resuming from %s", existing)
        return state

    def _init_from(self, net: nn.Module, source: str, key: str) -> None:
        weights = init_weights(source, key)
        try:
            net.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise ConfigError(f"init_from={source!r}: its weights do not fit this config's network_g ({exc}); "
                              "use the network_g of that model") from exc
        self.log.info("initialised from %s (%s)", source, key)

    # ------------------------------------------------------------------------------------------ loop
    def run(self) -> int:
        """Train to ``total_iter`` (or until stopped); returns the last completed iteration."""
        batches = iter(self.loader)
        if self._rng_state is not None:  # after everything that could draw random numbers
            if self.info.rank < len(self._rng_state) and self._state_world == self.info.world_size:
                restore_rng(self._rng_state[self.info.rank], self.device)
            else:
                self.log.warning("resuming with %d rank(s) instead of %d: random streams differ from an "
                                 "uninterrupted run", self.info.world_size, self._state_world)
                seed_everything(int(self.opt["manual_seed"]) + self.info.rank + self.start_iter)
        self.stop.install()
        it = self.start_iter
        t0 = time.time()
        tick, tick_iter = time.time(), it
        budget = self.topt["max_minutes"]
        try:
            while it < self.total_iter:
                it += 1
                batch = next(batches)
                lq = batch["lq"].to(self.device, non_blocking=True)
                gt = batch["gt"].to(self.device, non_blocking=True)
                terms = train_step(self.model, lq, gt, self.optimizer,
                                   grad_clip=float(self.topt["grad_clip_norm"]) if self.topt["use_grad_clip"] else None,
                                   fft_weight=float(self.topt["fft_loss_weight"]), bf16=bool(self.topt["bf16"]))
                if terms.applied:
                    self.ema.update(self.net)
                    self.skipped_in_a_row = 0
                else:
                    self.skipped_steps += 1
                    self.skipped_in_a_row += 1
                    self.log.warning("iteration %d: non-finite gradients, optimiser step skipped (%d so far)",
                                     it, self.skipped_steps)
                    if self.skipped_in_a_row >= 10:
                        raise FloatingPointError(
                            f"10 consecutive iterations had non-finite gradients (at iteration {it}); lower the "
                            "learning rate, turn off bf16, or check the data for NaN/Inf")
                lr = self.optimizer.param_groups[0]["lr"]
                self.scheduler.step()

                if it % int(self.lopt["print_freq"]) == 0 or it == self.total_iter:
                    now = time.time()
                    per_iter = (now - tick) / max(1, it - tick_iter)
                    tick, tick_iter = now, it
                    self._log_train(it, lr, terms, lq.shape, per_iter, now - t0)
                if it % int(self.lopt["save_checkpoint_freq"]) == 0:
                    self.save(it)
                if it % int(self.vopt["val_freq"]) == 0:
                    self.validate(it)
                if it % int(self.topt["stop_check_freq"]) == 0 or it == self.total_iter:
                    over = budget is not None and (time.time() - t0) / 60.0 >= float(budget)
                    if any_rank(self.info, self.stop.requested or over):
                        self.log.info("stopping at iteration %d (%s)", it,
                                      "time budget spent" if over else "stop requested")
                        break
        finally:
            self.stop.uninstall()
        if self.last_saved != it:
            self.save(it)
        if self.last_validated != it:
            self.validate(it)
        if self.info.is_main:
            self.tb.close()
            self.log.info("done: iteration %d, %.1f min; checkpoint %s", it, (time.time() - t0) / 60,
                          self.models_dir / "net_g_latest.pth")
        return it

    def _log_train(self, it: int, lr: float, terms: LossTerms, shape: torch.Size, per_iter: float,
                   elapsed: float) -> None:
        values = mean_over_ranks(self.info, torch.stack([terms.total.detach(), terms.content.detach(),
                                                          terms.frequency.detach()]).float())
        loss, content, freq = (float(v) for v in values.cpu())
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} at iteration {it}; lower the learning rate, "
                                     "turn off bf16, or check the data for NaN/Inf")
        if not self.info.is_main:
            return
        samples = shape[0] * self.info.world_size / per_iter if per_iter > 0 else float("nan")
        eta = per_iter * (self.total_iter - it)
        self.log.info("iter %d/%d lr %.3e loss %.5f (content %.5f, fft %.5f) %.3f s/iter %.1f samples/s eta %s",
                      it, self.total_iter, lr, loss, content, freq, per_iter, samples, _duration(eta))
        self.train_csv.write({"iter": it, "lr": lr, "loss": repr(loss), "l_content": repr(content), "l_fft": repr(freq),
                              "batch_per_gpu": shape[0], "patch": shape[-1], "sec_per_iter": f"{per_iter:.4f}",
                              "samples_per_sec": f"{samples:.2f}", "elapsed_s": f"{elapsed:.1f}",
                              "gpu_peak_gib": _gpu_peak_gib(self.device)})
        self.tb.scalars({"train/loss": loss, "train/l_content": content, "train/l_fft": freq, "train/lr": lr}, it)

    # ------------------------------------------------------------------------------------------ saving
    def save(self, it: int) -> None:
        """Official checkpoint + resumable state (all ranks contribute their RNG states)."""
        rngs = gather_objects(self.info, capture_rng(self.device))
        if self.info.is_main:
            ckpt = official_checkpoint(self.net, self.ema.module, self.opt["network_g"], self.normalization)
            path = atomic_save(ckpt, self.models_dir / f"net_g_{it}.pth")
            tmp = self.models_dir / f".net_g_latest.pth.tmp{os.getpid()}"
            shutil.copyfile(path, tmp)
            os.replace(tmp, self.models_dir / "net_g_latest.pth")
            state = {
                "iter": it,
                "params": ckpt["params"],
                "params_ema": ckpt["params_ema"],
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "sampler_position": self.sampler.position(it + 1),
                "world_size": self.info.world_size,
                "rng": rngs,
                "config": _plain(self.opt),
            }
            atomic_save(state, self.states_dir / f"{it}{STATE_SUFFIX}")
            keep = self.lopt["keep_checkpoints"]
            prune(self.models_dir, "net_g_*.pth", keep)
            prune(self.states_dir, f"*{STATE_SUFFIX}", keep)
            self._write_run_info({"iteration": it, "checkpoint": str(path.name)})
            self.log.info("saved %s and training state %d", path, it)
        self.last_saved = it
        barrier(self.info)

    def _write_run_info(self, update: dict) -> None:
        path = self.run_dir / "run_info.json"
        info = json.loads(path.read_text()) if path.is_file() else {}
        info.update(update, name=self.opt["name"], network_g=self.opt["network_g"], world_size=self.info.world_size)
        tmp = path.with_name(".run_info.json.tmp")
        tmp.write_text(json.dumps(info, indent=2))
        os.replace(tmp, path)

    # ------------------------------------------------------------------------------------------ validation
    def validate(self, it: int) -> dict[str, float] | None:
        """PSNR/SSIM of the EMA (or raw) network on the centre-cropped validation set, on rank 0."""
        self.last_validated = it
        result = None
        if self.info.is_main and self.val_set is not None and len(self.val_set):
            weights = self.vopt["weights"]
            net = self.ema.module if weights == "params_ema" else self.net
            was_training, routing = net.training, net.routing
            net.eval()
            net.routing = self.vopt["routing"]
            protocol = "rgb" if self.net.in_channels == 3 else "fluorescence"
            scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "psnr_input": [], "ssim_input": []}
            try:
                for k in range(len(self.val_set)):
                    item = self.val_set[k]
                    out = predict(net, item["lq"][None].to(self.device))[0]
                    gt, lq = _hwc(item["gt"]), _hwc(item["lq"])
                    m = protocol_metrics(_hwc(out), gt, protocol)
                    m_in = protocol_metrics(lq, gt, protocol)
                    scores["psnr"].append(m["psnr"])
                    scores["ssim"].append(m["ssim"])
                    scores["psnr_input"].append(m_in["psnr"])
                    scores["ssim_input"].append(m_in["ssim"])
            finally:
                net.routing = routing
                net.train(was_training)
            result = {k: float(np.mean(v)) for k, v in scores.items()}
            self.log.info("validation at %d (%s, %d images): PSNR %.3f dB (input %.3f), SSIM %.4f (input %.4f)", it,
                          weights, len(self.val_set), result["psnr"], result["psnr_input"], result["ssim"],
                          result["ssim_input"])
            self.val_csv.write({"iter": it, **{k: repr(v) for k, v in result.items()}, "images": len(self.val_set),
                                "weights": weights})
            self.tb.scalars({f"val/{k}": v for k, v in result.items()}, it)
            self._write_run_info({"val_iteration": it, "val": result, "val_weights": weights})
        barrier(self.info)
        return result


def _worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _plain(value: Any) -> Any:
    """The config as plain python types (safe to store with ``weights_only`` loading)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="yml file, or the name of one in training/configs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting (dotted key, e.g. train.total_iter=1000, or a short name: "
                             "init_from, scan_backend, total_iter, max_minutes, bf16, seed, dataroot, ...)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest training state of this run")
    return parser.parse_args(argv)


def _checkpoint_errors() -> tuple[type[Exception], ...]:
    from napari_dgno.checkpoints import CheckpointError

    return (CheckpointError,)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        opt = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if opt["train"]["scan_backend"]:
        os.environ["NAPARI_DGNO_SCAN"] = str(opt["train"]["scan_backend"]).lower()
    info = init_distributed(opt["device"])
    trainer = None
    try:
        trainer = Trainer(opt, info, resume=args.resume)
        trainer.run()
    except (ConfigError, DataError, FileNotFoundError, *_checkpoint_errors()) as exc:
        print(f"error (rank {info.rank}): {exc}", file=sys.stderr)
        return 2
    finally:
        if trainer is not None:
            trainer.lock.release()
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
