"""Protein backbone data: the bundled ``backbones.npz`` set, filters, and a frames dataset.

The bundled set lives in ``<data_dir()>/protein/`` (``$SCIFLOW_DATA_DIR``): ``backbones.npz``
(``coords`` [R, 4, 3] N/CA/C/O in Å, ``chain_offsets`` [C + 1], optional ``res_id`` [R]) and
``chains.csv`` beside it (one row per chain: name, seq, DSSP fractions, ...).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np
import torch
from sciflow_domains.protein.frames import center, frames_from_backbone
from sciflow_domains.protein.io import Backbone, find_breaks
from torch.utils.data import Dataset

from sciflow.data import data_dir

log = logging.getLogger(__name__)


def default_npz_path() -> Path:
    """``<data_dir()>/protein/backbones.npz``."""
    return data_dir() / "protein" / "backbones.npz"


def _read_chains_csv(path: Path, n_chains: int) -> list[dict[str, str]] | None:
    if not path.is_file():
        return None
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if len(rows) != n_chains:
        raise ValueError(f"{path}: has {len(rows)} rows, but the npz holds {n_chains} chains")
    return rows


def _coil_fraction(row: dict[str, str]) -> float | None:
    """1 − helix − strand from the DSSP columns, or None when they are absent or empty."""
    try:
        return 1.0 - float(row["dssp_helix_frac"]) - float(row["dssp_strand_frac"])
    except (KeyError, ValueError):
        return None


def load_backbones_npz(path: str | os.PathLike | None = None) -> list[Backbone]:
    """Chains of a ``backbones.npz`` file (default :func:`default_npz_path`).

    Names, sequences and coil fractions (1 − DSSP helix − strand) come from ``chains.csv``
    beside the file when present; otherwise chains are named ``chain<i>`` with sequence ``X…``.
    Breaks are always recomputed from the coordinates (:func:`~.io.find_breaks`).
    """
    path = default_npz_path() if path is None else Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: backbone file not found (set SCIFLOW_DATA_DIR?)")
    with np.load(path) as npz:
        for key in ("coords", "chain_offsets"):
            if key not in npz:
                raise ValueError(f"{path}: missing array {key!r} (has {sorted(npz.files)})")
        coords = npz["coords"].astype(np.float32)
        offsets = npz["chain_offsets"].astype(np.int64)
        res_id = npz["res_id"] if "res_id" in npz else None
    if coords.ndim != 3 or coords.shape[1:] != (4, 3):
        raise ValueError(f"{path}: coords must have shape (R, 4, 3), got {coords.shape}")
    if (
        offsets.ndim != 1
        or offsets[0] != 0
        or offsets[-1] != len(coords)
        or (np.diff(offsets) <= 0).any()
    ):
        raise ValueError(
            f"{path}: chain_offsets must increase strictly from 0 to {len(coords)}, "
            f"got {offsets[:3]}...{offsets[-1:]}"
        )
    rows = _read_chains_csv(path.with_name("chains.csv"), len(offsets) - 1)
    backbones = []
    for i, (lo, hi) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        row = rows[i] if rows is not None else {}
        x = coords[lo:hi]
        ids = res_id[lo:hi] if res_id is not None else np.arange(1, hi - lo + 1)
        seq = row.get("seq") or "X" * len(x)
        if len(seq) != len(x):
            raise ValueError(f"{path}: chain {i} has {len(x)} residues but seq of {len(seq)}")
        name = row.get("name") or f"chain{i}"
        backbones.append(Backbone(name, x, ids, seq, find_breaks(x), _coil_fraction(row)))
    return backbones


def filter_backbones(
    backbones: list[Backbone],
    min_length: int,
    max_length: int,
    max_breaks: int = 0,
    max_coil_fraction: float | None = None,
) -> list[Backbone]:
    """Keep chains with ``min_length <= L <= max_length``, at most ``max_breaks`` breaks and,
    when ``max_coil_fraction`` is set, coil fraction ``<=`` it.

    Chains without a known coil fraction are kept (and counted in the log line). Logs one line
    with the number kept and the number dropped for each reason (first failing reason counts).
    """
    if not 0 < min_length <= max_length:
        raise ValueError(
            f"min_length, max_length: need 0 < min <= max, got {min_length}, {max_length}"
        )
    reasons = {"too short": 0, "too long": 0, "too many breaks": 0, "too much coil": 0}
    unknown_coil = 0
    kept = []
    for bb in backbones:
        if len(bb) < min_length:
            reasons["too short"] += 1
        elif len(bb) > max_length:
            reasons["too long"] += 1
        elif len(bb.breaks) > max_breaks:
            reasons["too many breaks"] += 1
        elif max_coil_fraction is not None and bb.coil_fraction is None:
            unknown_coil += 1
            kept.append(bb)
        elif max_coil_fraction is not None and bb.coil_fraction > max_coil_fraction:
            reasons["too much coil"] += 1
        else:
            kept.append(bb)
    dropped = ", ".join(f"{n} {why}" for why, n in reasons.items() if n) or "none"
    log.info(
        "kept %d of %d chains (length %d-%d, breaks <= %d, coil <= %s); dropped: %s%s",
        len(kept),
        len(backbones),
        min_length,
        max_length,
        max_breaks,
        max_coil_fraction,
        dropped,
        f"; coil fraction unknown (kept, not checked) for {unknown_coil}" if unknown_coil else "",
    )
    return kept


class BackboneFrames(Dataset):
    """Residue frames of backbones: item i is ``{"rot": (L, 4), "trans": (L, 3)}`` float32.

    ``rot`` are unit quaternions WXYZ (see :mod:`.frames`), ``trans`` the Cα positions in Å,
    centred on the Cα centroid of the (cropped) chain. Chains longer than ``max_length`` are
    cropped to a contiguous window whose start is drawn from ``seed``, the epoch
    (:meth:`set_epoch`) and the index, so crops are reproducible and independent of worker order.
    """

    def __init__(
        self, backbones: list[Backbone], max_length: int | None = None, seed: int = 0
    ) -> None:
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length: expected a positive int or None, got {max_length}")
        if not backbones:
            raise ValueError("backbones: expected at least one chain, got none")
        self.max_length = max_length
        self.seed = seed
        self.epoch = 0
        self._frames = []
        for bb in backbones:
            x = torch.from_numpy(bb.coords).double()
            q, t = frames_from_backbone(x[:, 0], x[:, 1], x[:, 2])
            self._frames.append((q.float(), t))

    def set_epoch(self, epoch: int) -> None:
        """Change the crops drawn from now on (call once per epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rot, trans = self._frames[index]
        length = len(rot)
        if self.max_length is not None and length > self.max_length:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            start = int(rng.integers(0, length - self.max_length + 1))
            rot = rot[start : start + self.max_length]
            trans = trans[start : start + self.max_length]
        return {"rot": rot.clone(), "trans": center(trans).float()}


def collate_padded(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad items to the longest: ``rot`` (B, N, 4) (identity quaternion in padding), ``trans``
    (B, N, 3) (zeros in padding) and ``mask`` (B, N) bool, True on real residues."""
    if not items:
        raise ValueError("items: expected at least one item, got an empty list")
    n = max(len(item["rot"]) for item in items)
    b = len(items)
    rot = torch.zeros(b, n, 4)
    rot[..., 0] = 1.0
    trans = torch.zeros(b, n, 3)
    mask = torch.zeros(b, n, dtype=torch.bool)
    for i, item in enumerate(items):
        length = len(item["rot"])
        if item["trans"].shape != (length, 3) or item["rot"].shape != (length, 4):
            raise ValueError(
                f"items[{i}]: expected rot (L, 4) and trans (L, 3), got "
                f"{tuple(item['rot'].shape)} and {tuple(item['trans'].shape)}"
            )
        rot[i, :length] = item["rot"]
        trans[i, :length] = item["trans"]
        mask[i, :length] = True
    return {"rot": rot, "trans": trans, "mask": mask}
