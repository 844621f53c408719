"""Training on stored rectified-flow pairs: a dataset, its collate and a Lightning data module.

Batches are the data parts x1 as in any batch, plus ``x0`` (a dict of the paired prior points,
which `sciflow.engine.Engine` uses instead of fresh draws) and, for padded parts, ``mask``.
"""

from __future__ import annotations

from functools import partial

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from sciflow.reflow.pairs import ReflowPairs, pad_rows
from sciflow.training.batch_order import EpochShuffledBatches


class PairsDataset(Dataset):
    """One item per stored pair: ``{part: x1 (n, d) or (..., d), "x0": {part: ...}}``; padded
    pairs are cut to their own length ``n``."""

    def __init__(self, pairs: ReflowPairs, indices: list[int] | None = None):
        self.pairs = pairs
        self.indices = list(range(len(pairs))) if indices is None else list(indices)
        mask = pairs.mask
        self.lengths = [int(mask[i].sum()) if mask is not None else 1 for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        row, n = self.indices[i], self.lengths[i]
        cut = (lambda v: v[row, :n]) if self.pairs.mask is not None else (lambda v: v[row])
        item = {k: cut(v) for k, v in self.pairs.x1.items()}
        item["x0"] = {k: cut(v) for k, v in self.pairs.x0.items()}
        return item


def collate_pairs(items: list[dict], padded: bool) -> dict:
    """Stack items; for padded parts pad to the longest and add ``mask`` (B, N) bool."""
    parts = [k for k in items[0] if k != "x0"]
    if not padded:
        batch = {k: torch.stack([it[k] for it in items]) for k in parts}
        batch["x0"] = {k: torch.stack([it["x0"][k] for it in items]) for k in parts}
        return batch
    length = max(len(it[parts[0]]) for it in items)
    batch = {k: pad_rows([it[k].unsqueeze(0) for it in items], length) for k in parts}
    batch["x0"] = {k: pad_rows([it["x0"][k].unsqueeze(0) for it in items], length) for k in parts}
    masks = [torch.ones(1, len(it[parts[0]]), dtype=torch.bool) for it in items]
    batch["mask"] = pad_rows(masks, length)
    return batch


class LengthBucketSampler(EpochShuffledBatches):
    """Batches of ``batch_size`` items of similar length, in an order drawn from (seed, epoch)."""

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool, seed: int):
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        super().__init__(batches, shuffle, seed)


class ReflowDataModule(L.LightningDataModule):
    """Fine-tuning data for rectified flow: the pairs written by ``sciflow reflow``.

    Args:
        path: the ``.npz`` of pairs (see `sciflow.reflow.pairs`).
        batch_size: pairs per batch (padded pairs are grouped by length).
        val_fraction: share of the pairs held out (seeded); their loss is logged as val/loss.
        seed: seeds the split and the batch order.
    """

    def __init__(self, path: str, batch_size: int = 32, val_fraction: float = 0.05, seed: int = 0):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction: expected a float in (0, 1), got {val_fraction!r}")
        self.path, self.batch_size = path, batch_size
        self.val_fraction, self.seed = val_fraction, seed
        self.splits: dict[str, PairsDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        pairs = ReflowPairs.load(self.path)
        if len(pairs) < 2:
            raise ValueError(f"reflow pairs {self.path}: need at least 2 pairs, got {len(pairs)}")
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(self.seed))
        num_val = min(max(1, round(self.val_fraction * len(pairs))), len(pairs) - 1)
        self.splits["val"] = PairsDataset(pairs, sorted(order[:num_val].tolist()))
        self.splits["train"] = PairsDataset(pairs, sorted(order[num_val:].tolist()))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.splits[split]
        padded = dataset.pairs.mask is not None
        sampler = LengthBucketSampler(dataset.lengths, self.batch_size, shuffle, self.seed)
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=partial(collate_pairs, padded=padded),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)
