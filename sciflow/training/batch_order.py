"""Fixed batches of indices served in an order drawn from (seed, epoch)."""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class EpochShuffledBatches(Sampler[list[int]]):
    """Yields ``batches`` (lists of dataset indices); with ``shuffle``, epoch e serves them in a
    permutation drawn from ``(seed, e)``, so a resumed run sees the same order. Lightning calls
    :meth:`set_epoch` before every epoch."""

    def __init__(self, batches: list[list[int]], shuffle: bool, seed: int = 0):
        self.batches, self.shuffle, self.seed, self.epoch = batches, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        order = range(len(self.batches))
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(len(self.batches), generator=generator).tolist()
        return (self.batches[i] for i in order)
