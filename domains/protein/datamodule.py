"""Lightning data module of protein backbones: filter, split by chain, crop, batch by tokens.

Batches are ``{"rot": (B, N, 4), "trans": (B, N, 3), "mask": (B, N)}`` (see
:func:`~.data.collate_padded`) with translations in units of ``trans_scale`` Å: each chain is
centred on its Cα centroid and divided by ``trans_scale`` (10 Å by default), so that its spread
matches the N(0, I) prior of the translation flow. Whatever turns samples back into atoms must
multiply the translations by the same ``trans_scale``, and a ``FrameTransformer`` trained on these
batches takes ``trans_scale: 1.0`` (its inputs are already in that unit).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
from sciflow_domains.protein.data import (
    BackboneFrames,
    collate_padded,
    default_npz_path,
    filter_backbones,
    load_backbones_npz,
)
from torch.utils.data import DataLoader, Dataset

from sciflow.data import get_dataset, list_datasets
from sciflow.geometry.quaternion import to_matrix
from sciflow.training.batch_order import EpochShuffledBatches

log = logging.getLogger(__name__)

#: Å per unit of batch translations: chains divided by 10 Å match the N(0, I) prior (ReQFlow's nm).
DEFAULT_TRANS_SCALE = 10.0


def token_budget_batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Group indices by length so that each batch's padded size B × N_max ≤ ``max_tokens``.

    lengths: (C,) chain lengths after cropping. Indices are sorted by (length, index) and
    filled greedily, so every batch holds chains of similar length. Returns a list of index lists.
    """
    if lengths and max(lengths) > max_tokens:
        raise ValueError(
            f"max_tokens: {max_tokens} is smaller than the longest (cropped) chain, "
            f"{max(lengths)} residues; raise max_tokens or lower max_length"
        )
    batches: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        if batches and (len(batches[-1]) + 1) * lengths[index] <= max_tokens:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


class TokenBudgetSampler(EpochShuffledBatches):
    """Yields the :func:`token_budget_batches` of ``frames``, in an order shuffled per epoch.

    lengths: (C,) the cropped length of each chain of ``frames``.

    With ``shuffle``, the batch order of epoch e is a permutation drawn from ``(seed, e)``;
    :meth:`set_epoch` (called by Lightning at each epoch) also changes the crops of ``frames``.
    """

    def __init__(
        self,
        frames: BackboneFrames,
        lengths: list[int],
        max_tokens: int,
        shuffle: bool,
        seed: int = 0,
    ):
        if len(lengths) != len(frames):
            raise ValueError(f"lengths: expected {len(frames)} entries, got {len(lengths)}")
        super().__init__(token_budget_batches(lengths, max_tokens), shuffle, seed)
        self.frames = frames

    def set_epoch(self, epoch: int) -> None:
        """Use the batch order and crops of ``epoch`` from now on."""
        super().set_epoch(epoch)
        self.frames.set_epoch(epoch)


class _ChainLists(Dataset):
    """Item ``[i, j, ...]`` is the list of ``frames`` items i, j, ... (one whole batch)."""

    def __init__(self, frames: BackboneFrames):
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        return [self.frames[i] for i in indices]


def collate_scaled(
    items: list[dict[str, torch.Tensor]], trans_scale: float, rotations: str = "quaternion"
) -> dict:
    """:func:`collate_padded` with ``trans`` (B, N, 3) divided by ``trans_scale``; with
    ``rotations="matrix"``, ``rot`` becomes row-major rotation matrices (B, N, 9)."""
    batch = collate_padded(items)
    batch["trans"] = batch["trans"] / trans_scale
    if rotations == "matrix":
        batch["rot"] = to_matrix(batch["rot"]).flatten(-2)
    return batch


def _missing_data_error(path: Path) -> FileNotFoundError:
    registered = [name for name in list_datasets() if get_dataset(name).domain == "protein"]
    if registered:
        hint = f"or run `sciflow data fetch {registered[0]}`"
    else:
        hint = (
            "no protein dataset is registered for `sciflow data fetch` yet: copy "
            "backbones.npz and chains.csv there by hand"
        )
    return FileNotFoundError(
        f"protein backbones not found at {path}: set SCIFLOW_DATA_DIR to the folder holding "
        f"protein/backbones.npz or pass data.init_args.path ({hint})"
    )


class ProteinDataModule(L.LightningDataModule):
    """Backbone frames from a ``backbones.npz`` file, split by chain, batched by a token budget.

    Args:
        path: the npz file (default ``$SCIFLOW_DATA_DIR/protein/backbones.npz``).
        min_length: drop chains shorter than this (no upper bound: long chains are cropped).
        max_length: crop length; longer chains are cut to a random contiguous window of this
            many residues, drawn from ``seed``, the epoch and the chain (validation: epoch 0).
        max_breaks, max_coil_fraction: the other filters of :func:`~.data.filter_backbones`.
        val_fraction: share of the kept chains held out for validation (at least one chain).
        max_tokens: token budget of a batch, B × N_max ≤ max_tokens (see
            :func:`token_budget_batches`); training batches come in a seeded order per epoch.
        trans_scale: Å per unit of the batch translations (see the module docstring).
        seed: seeds the split, the crops and the batch order.
        num_chains: keep only the first ``num_chains`` chains after filtering (smoke runs).
        rotations: ``"quaternion"`` (B, N, 4) for `UnitQuaternion` parts or ``"matrix"``
            (B, N, 9) for the `RotationMatrix` baseline.
    """

    def __init__(
        self,
        path: str | None = None,
        min_length: int = 40,
        max_length: int = 128,
        max_breaks: int = 0,
        max_coil_fraction: float | None = None,
        val_fraction: float = 0.1,
        max_tokens: int = 4096,
        trans_scale: float = DEFAULT_TRANS_SCALE,
        seed: int = 0,
        num_chains: int | None = None,
        rotations: str = "quaternion",
    ):
        super().__init__()
        if rotations not in ("quaternion", "matrix"):
            raise ValueError(f"rotations: expected 'quaternion' or 'matrix', got {rotations!r}")
        self.rotations = rotations
        for name, value in (("min_length", min_length), ("max_length", max_length)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction: expected a float in (0, 1), got {val_fraction!r}")
        if max_tokens < max_length:
            raise ValueError(
                f"max_tokens: expected at least max_length={max_length}, got {max_tokens}"
            )
        if not trans_scale > 0:
            raise ValueError(f"trans_scale: expected a positive float, got {trans_scale!r}")
        if num_chains is not None and num_chains < 2:
            raise ValueError(f"num_chains: expected None or an int >= 2, got {num_chains!r}")
        self.path = Path(path) if path is not None else None
        self.min_length, self.max_length = min_length, max_length
        self.max_breaks, self.max_coil_fraction = max_breaks, max_coil_fraction
        self.val_fraction, self.max_tokens = val_fraction, max_tokens
        self.trans_scale, self.seed, self.num_chains = float(trans_scale), seed, num_chains
        self.splits: dict[str, BackboneFrames] = {}
        self.lengths: dict[str, list[int]] = {}
        #: The chains of each split (uncropped), e.g. held-out references for evaluation.
        self.chains: dict[str, list] = {}

    def _resolved_path(self) -> Path:
        return self.path if self.path is not None else default_npz_path()

    def setup(self, stage: str | None = None) -> None:
        """Load, filter and split the chains (once)."""
        if self.splits:
            return
        path = self._resolved_path()
        if not path.is_file():
            raise _missing_data_error(path)
        chains = load_backbones_npz(path)
        longest = max(len(bb) for bb in chains)  # long chains are cropped, not dropped
        chains = filter_backbones(
            chains,
            self.min_length,
            max(self.max_length, longest),
            self.max_breaks,
            self.max_coil_fraction,
        )
        if self.num_chains is not None:
            chains = chains[: self.num_chains]
        if len(chains) < 2:
            raise ValueError(
                f"{path}: {len(chains)} chain(s) left after filtering; need 2 for a train/val split"
            )
        order = np.random.default_rng(self.seed).permutation(len(chains))
        num_val = min(max(1, round(self.val_fraction * len(chains))), len(chains) - 1)
        val, train = sorted(order[:num_val]), sorted(order[num_val:])
        for split, indices in (("train", train), ("val", val)):
            picked = [chains[i] for i in indices]
            self.chains[split] = picked
            self.splits[split] = BackboneFrames(picked, self.max_length, self.seed)
            self.lengths[split] = [min(len(bb), self.max_length) for bb in picked]
        log.info(
            "protein chains from %s: %d train, %d val (crop %d, <= %d tokens per batch)",
            path,
            len(train),
            len(val),
            self.max_length,
            self.max_tokens,
        )

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        frames = self.splits[split]
        lengths = self.lengths[split]
        sampler = TokenBudgetSampler(frames, lengths, self.max_tokens, shuffle, self.seed)
        collate = partial(collate_scaled, trans_scale=self.trans_scale, rotations=self.rotations)
        return DataLoader(_ChainLists(frames), sampler=sampler, batch_size=None, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)
