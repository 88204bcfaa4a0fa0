"""A resumable, per-rank batch sampler whose position is a pure function of the iteration.

Each rank sees its share of a per-epoch permutation (DistributedSampler's split: the shuffled index
list padded to a multiple of the world size, rank ``r`` takes every ``world``-th entry from ``r``).
Batches follow the progressive schedule, and every sample carries its own augmentation seed
``(seed, rank, n)`` where ``n`` counts the samples this rank has drawn. Restarting at iteration ``k``
therefore replays exactly what an uninterrupted run would have drawn, whatever the worker count.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from .data import SampleKey
from .schedule import ProgressiveSchedule


class ResumableBatchSampler(Sampler[list[SampleKey]]):
    """Infinite stream of per-iteration batches of :class:`SampleKey`, starting at ``start_iter + 1``."""

    def __init__(self, num_items: int | None, schedule: ProgressiveSchedule, *, rank: int = 0, world_size: int = 1,
                 seed: int = 100, start_iter: int = 0, shuffle: bool = True):
        self.num_items, self.schedule = num_items, schedule
        self.rank, self.world, self.seed, self.shuffle = rank, world_size, int(seed), shuffle
        self.start_iter = int(start_iter)
        if num_items is not None:
            self.per_rank = -(-num_items // world_size)
        self._epoch_cache: tuple[int, np.ndarray] | None = None

    def position(self, iteration: int) -> int:
        """Samples this rank has drawn before ``iteration`` (the sampler's resume position)."""
        return self.schedule.samples_before(iteration)

    def _rank_indices(self, epoch: int) -> np.ndarray:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            n = self.num_items
            order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            total = self.per_rank * self.world
            padded = np.resize(order, total)  # repeats from the start, like DistributedSampler
            self._epoch_cache = (epoch, padded[self.rank : total : self.world])
        return self._epoch_cache[1]

    def key(self, n: int, patch: int) -> SampleKey:
        """The ``n``-th sample of this rank."""
        if self.num_items is None:  # unbounded source: a fresh item for every sample of every rank
            index = n * self.world + self.rank
        else:
            epoch, within = divmod(n, self.per_rank)
            index = int(self._rank_indices(epoch)[within])
        return SampleKey(index, (self.seed, self.rank, n), patch)

    def batch(self, iteration: int) -> list[SampleKey]:
        size, patch = self.schedule.at(iteration)
        first = self.position(iteration)
        return [self.key(first + j, patch) for j in range(size)]

    def __iter__(self) -> Iterator[list[SampleKey]]:
        iteration = self.start_iter + 1
        while True:
            yield self.batch(iteration)
            iteration += 1

    def __len__(self) -> int:  # DataLoader asks; the stream is endless
        return 2**62
