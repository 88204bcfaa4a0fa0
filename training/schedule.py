"""Schedules indexed by iteration: the learning rate (Restormer's cosine restarts) and the progressive
mini-batch/patch size of Restormer-style training."""

from __future__ import annotations

import bisect
import math
from itertools import accumulate

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def cosine_restart_lr(step: int, base_lr: float, periods: list[int], restart_weights: list[float],
                      eta_mins: list[float]) -> float:
    """Learning rate after ``step`` scheduler steps (Restormer's CosineAnnealingRestartCyclicLR).

    Period ``i`` runs cosine annealing from ``restart_weight[i] * base_lr`` down to ``eta_mins[i]``; a
    step on the boundary belongs to the earlier period (``step <= cumulative period``), and steps past the
    last period keep its final value.
    """
    cumulative = list(accumulate(periods))
    idx = min(bisect.bisect_left(cumulative, step), len(periods) - 1)
    start = 0 if idx == 0 else cumulative[idx - 1]
    progress = min((step - start) / periods[idx], 1.0)
    eta_min = eta_mins[idx]
    return eta_min + restart_weights[idx] * 0.5 * (base_lr - eta_min) * (1 + math.cos(math.pi * progress))


class CosineAnnealingRestartCyclicLR(LRScheduler):
    """Restormer's scheduler: cosine annealing restarted at the end of each period, each period with its
    own minimum. With ``eta_mins=[3e-4, 1e-6]`` and lr 3e-4 the first period is flat."""

    def __init__(self, optimizer: Optimizer, periods: list[int], restart_weights: list[float] = (1,),
                 eta_mins: list[float] = (0,), last_epoch: int = -1):
        if not (len(periods) == len(restart_weights) == len(eta_mins)):
            raise ValueError("periods, restart_weights and eta_mins must have the same length")
        if any(int(p) <= 0 for p in periods):
            raise ValueError(f"scheduler periods must be positive, got {list(periods)}")
        self.periods = [int(p) for p in periods]
        self.restart_weights = [float(w) for w in restart_weights]
        self.eta_mins = [float(e) for e in eta_mins]
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [cosine_restart_lr(self.last_epoch, base, self.periods, self.restart_weights, self.eta_mins)
                for base in self.base_lrs]


class ProgressiveSchedule:
    """Per-GPU mini-batch size and patch size at each iteration (1-based).

    Stage ``j`` covers the iterations up to ``sum(iters[:j+1])``; later iterations stay in the last stage
    (Restormer's rule). A single stage is plain fixed-size training.
    """

    def __init__(self, mini_batch_sizes: list[int], gt_sizes: list[int], iters: list[int]):
        if not (len(mini_batch_sizes) == len(gt_sizes) == len(iters)) or not iters:
            raise ValueError("mini_batch_sizes, gt_sizes and iters must be non-empty and of the same length "
                             f"(got {mini_batch_sizes}, {gt_sizes}, {iters})")
        self.batch = [int(b) for b in mini_batch_sizes]
        self.patch = [int(p) for p in gt_sizes]
        self.iters = [int(i) for i in iters]
        self.bounds = list(accumulate(self.iters))

    @classmethod
    def from_dataset_opt(cls, dopt: dict) -> ProgressiveSchedule:
        batch = int(dopt.get("batch_size_per_gpu", 8))
        gt_size = int(dopt.get("gt_size", 256))
        sizes = dopt.get("mini_batch_sizes") or [batch]
        patches = dopt.get("gt_sizes") or [gt_size]
        iters = dopt.get("iters") or [1]
        if max(sizes) > batch:
            raise ValueError(f"mini_batch_sizes {sizes} exceed batch_size_per_gpu {batch}")
        if max(patches) > gt_size:
            raise ValueError(f"gt_sizes {patches} exceed gt_size {gt_size}")
        return cls(sizes, patches, iters)

    def stage(self, iteration: int) -> int:
        return min(bisect.bisect_left(self.bounds, iteration), len(self.bounds) - 1)

    def at(self, iteration: int) -> tuple[int, int]:
        """(mini-batch size per GPU, patch size) used at ``iteration``."""
        j = self.stage(iteration)
        return self.batch[j], self.patch[j]

    def samples_before(self, iteration: int) -> int:
        """Samples one rank has drawn in iterations ``1 .. iteration - 1``."""
        done, total, previous = iteration - 1, 0, 0
        for j, bound in enumerate(self.bounds):
            last = bound if j < len(self.bounds) - 1 else max(bound, done)
            span = max(0, min(done, last) - previous)
            total += span * self.batch[j]
            previous = last
            if done <= last:
                break
        return total
