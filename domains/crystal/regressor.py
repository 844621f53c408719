"""A small property regressor: a CSPNet-style invariant graph network that predicts one scalar
property per crystal (e.g. Perov-5 ``heat_ref``) from its clean structure.

It scores property-guided generation: a generated crystal has no computed property, so the
benchmark reports the regressor's prediction, trained on the same split as the generative model
and checked on the test split (MAE, R²). Input is what a CIF holds: atomic numbers, fractional
coordinates and a lattice, Niggli-reduced as the training data (the network sees the lattice
through its Gram matrix, invariant to rotations but not to the choice of cell).

Architecture: atom-type embedding → ``num_layers`` :class:`~.nets.CSPLayer` message-passing
layers over all atom pairs of a crystal (edges: :func:`~.nets.periodic_edge_features`) → mean
over the crystal's atoms → MLP → one standardised number, turned into property units with the
training mean and standard deviation.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sciflow_domains.crystal.data import (
    CrystalDataset,
    collate_crystals,
    property_column,
    property_scaling,
)
from sciflow_domains.crystal.io import CrystalTable
from sciflow_domains.crystal.nets import (
    CSPLayer,
    fully_connected_edges,
    periodic_edge_features,
    segment_mean,
)
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from sciflow.atomic import atomic_write

log = logging.getLogger(__name__)

MIN_VOLUME = 0.1  # Å³, the structural-validity volume cutoff of the CDVAE protocol


class PropertyRegressor(nn.Module):
    """Invariant GNN: crystals → (B,) standardised property predictions.

    Args:
        hidden: node and edge width.
        num_layers: message-passing layers.
        num_freqs: Fourier frequencies per axis of the edge features.
        max_atomic_number: the type embedding covers atomic numbers 0..max_atomic_number.
        lattice_scale: Å per unit of the lattices the network reads (as the data module's).
    """

    def __init__(
        self,
        hidden: int = 128,
        num_layers: int = 3,
        num_freqs: int = 16,
        max_atomic_number: int = 100,
        lattice_scale: float = 1.0,
    ):
        super().__init__()
        self.config = {
            "hidden": hidden,
            "num_layers": num_layers,
            "num_freqs": num_freqs,
            "max_atomic_number": max_atomic_number,
            "lattice_scale": lattice_scale,
        }
        self.lattice_scale = float(lattice_scale)
        self.type_embedding = nn.Embedding(max_atomic_number + 1, hidden)
        self.register_buffer(
            "freqs", 2 * math.pi * torch.arange(1, num_freqs + 1.0), persistent=False
        )
        edge_dim = 6 * num_freqs + 6
        self.layers = nn.ModuleList(CSPLayer(hidden, edge_dim) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(hidden)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, batch: dict) -> torch.Tensor:
        """A :func:`~.data.collate_crystals` batch (lattice in Å / ``lattice_scale``) → (B,)."""
        index, lattice = batch["index"], batch["lattice"].float()
        num_crystals = lattice.shape[0]
        src, dst, in_degree = fully_connected_edges(index, num_crystals)
        edges = periodic_edge_features(batch["frac"].float(), lattice, src, dst, index, self.freqs)
        h = self.type_embedding(batch["types"])
        for layer in self.layers:
            h = layer(h, edges, src, dst, in_degree.float())
        pooled = segment_mean(self.final_norm(h), index, num_crystals)
        return self.head(pooled).squeeze(-1)


@dataclass
class TrainedRegressor:
    """A fitted :class:`PropertyRegressor` with its property's name and training scaling, and
    its test metrics (``{"mae", "rmse", "r2", "n"}``, property units) when measured."""

    network: PropertyRegressor
    name: str
    mean: float
    std: float
    metrics: dict | None = None

    @torch.no_grad()
    def predict_batches(self, dataset: CrystalDataset, batch_size: int = 256) -> np.ndarray:
        """(B,) predictions in property units for every crystal of ``dataset``."""
        self.network.eval()
        loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_crystals)
        out = [self.network(batch) for batch in loader]
        return torch.cat(out).double().numpy() * self.std + self.mean

    def predict_table(self, table: CrystalTable) -> np.ndarray:
        """(B,) predictions in property units for the crystals of a parsed table."""
        return self.predict_batches(CrystalDataset(table, self.network.lattice_scale))

    def predict_structures(self, structures: list, batch_size: int = 256) -> np.ndarray:
        """(n,) predictions for pymatgen `Structure`s (Niggli-reduced first); NaN for a
        structure whose cell cannot be reduced or is collapsed (volume < ``MIN_VOLUME`` Å³,
        where Niggli reduction can take seconds)."""
        table, kept = _table_of_structures(structures)
        values = np.full(len(structures), np.nan)
        if kept:
            dataset = CrystalDataset(table, self.network.lattice_scale)
            values[kept] = self.predict_batches(dataset, batch_size)
        return values

    def evaluate(self, table: CrystalTable, source: str) -> dict:
        """MAE, RMSE and R² against ``table``'s own ``name`` column (read from ``source``)."""
        truth = property_column(table, self.name, source)
        pred = self.predict_table(table)
        residual = pred - truth
        r2 = 1.0 - float((residual**2).sum() / ((truth - truth.mean()) ** 2).sum())
        return {
            "mae": float(np.abs(residual).mean()),
            "rmse": float(np.sqrt((residual**2).mean())),
            "r2": r2,
            "n": len(truth),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write weights, config, scaling and metrics to ``path`` atomically."""
        payload = {
            "config": self.network.config,
            "state_dict": self.network.state_dict(),
            "name": self.name,
            "mean": self.mean,
            "std": self.std,
            "metrics": self.metrics,
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as handle:
            torch.save(payload, handle)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainedRegressor:
        """Read a regressor written by :meth:`save`."""
        payload = torch.load(path, map_location="cpu", weights_only=True)
        missing = {"config", "state_dict", "name", "mean", "std"} - set(payload)
        if missing:
            raise ValueError(f"{path}: not a property-regressor file (missing {sorted(missing)})")
        network = PropertyRegressor(**payload["config"])
        network.load_state_dict(payload["state_dict"])
        network.eval()
        return cls(network, payload["name"], payload["mean"], payload["std"], payload["metrics"])


def fit_regressor(
    table: CrystalTable,
    name: str,
    source: str,
    lattice_scale: float,
    num_steps: int = 3000,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
    **network_options,
) -> TrainedRegressor:
    """Train a :class:`PropertyRegressor` on the ``name`` column of ``table`` (read from
    ``source``): AdamW on the mean squared error of the standardised property, cosine-decayed
    learning rate, ``num_steps`` steps of ``batch_size`` crystals in shuffled epochs."""
    values = property_column(table, name, source)
    scaling = property_scaling(values, name, source)
    mean, std = scaling["mean"], scaling["std"]
    targets = (values - mean) / std
    dataset = CrystalDataset(table, lattice_scale, targets[:, None])
    torch.manual_seed(seed)
    network = PropertyRegressor(lattice_scale=lattice_scale, **network_options)
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, num_steps)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=generator,
        collate_fn=collate_crystals, drop_last=len(dataset) > batch_size,
    )  # fmt: skip
    network.train()
    step, bar = 0, tqdm(total=num_steps, desc=f"regressor ({name})", disable=not progress)
    while step < num_steps:
        for batch in loader:
            loss = torch.nn.functional.mse_loss(network(batch), batch["property"][:, 0])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step == num_steps:
                break
    bar.close()
    network.eval()
    return TrainedRegressor(network, name, mean, std)


def _table_of_structures(structures: list) -> tuple[CrystalTable | None, list[int]]:
    """The Niggli-reduced structures that reduce, as a table, and their positions in the list."""
    types, frac, lattices, lengths, angles, counts, kept = [], [], [], [], [], [], []
    for i, structure in enumerate(structures):
        if not structure.volume >= MIN_VOLUME:
            continue
        try:
            reduced = structure.get_reduced_structure()
        except Exception as err:  # pymatgen raises several types on degenerate cells
            log.debug("structure %d: no Niggli cell (%s)", i, err)
            continue
        types.append(np.array(reduced.atomic_numbers, dtype=np.int64))
        frac.append(np.mod(reduced.frac_coords, 1.0))
        lattices.append(reduced.lattice.matrix)
        lengths.append(reduced.lattice.abc)
        angles.append(reduced.lattice.angles)
        counts.append(len(reduced))
        kept.append(i)
    if not kept:
        return None, []
    table = CrystalTable(
        types=np.concatenate(types),
        frac=np.concatenate(frac),
        lattice=np.stack(lattices),
        lengths=np.array(lengths, dtype=float),
        angles=np.array(angles, dtype=float),
        num_atoms=np.array(counts, dtype=np.int64),
        material_id=[f"structure{i}" for i in kept],
        rows=np.array(kept, dtype=np.int64),
    )
    return table, kept
