"""Real tiles and their conditions, as the satellite benchmark needs them (helper of
``generation.py``): one row per (month record, crop) of a split of a set-up
``SatelliteDataModule``, conditions in physical units (what ``SatelliteSampler.sample`` takes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sciflow_domains.satellite.data import SPLITS, SatelliteDataModule


@dataclass
class SplitTiles:
    """N real tiles of one split.

    images (N, 3, S, S) uint8; climate (N, 3) raw T degC, P mm/day, R MJ/m2/day; landcover (N,)
    ids; month (N,) 1..12; location (N, 2) lat, lon of the crop centre; location_id, date
    lists; month_index (N,) months since year 0; crop (N,) crop index.
    """

    images: np.ndarray
    climate: np.ndarray
    landcover: np.ndarray
    month: np.ndarray
    location: np.ndarray
    location_id: list[str]
    date: list[str]
    month_index: np.ndarray
    crop: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, rows) -> SplitTiles:
        """The tiles at ``rows`` (indices or a boolean mask)."""
        rows = np.arange(len(self))[rows]
        return SplitTiles(
            self.images[rows],
            self.climate[rows],
            self.landcover[rows],
            self.month[rows],
            self.location[rows],
            [self.location_id[i] for i in rows],
            [self.date[i] for i in rows],
            self.month_index[rows],
            self.crop[rows],
        )

    @classmethod
    def concat(cls, parts: list[SplitTiles]) -> SplitTiles:
        """The tiles of ``parts`` one after the other."""
        return cls(
            np.concatenate([p.images for p in parts]),
            np.concatenate([p.climate for p in parts]),
            np.concatenate([p.landcover for p in parts]),
            np.concatenate([p.month for p in parts]),
            np.concatenate([p.location for p in parts]),
            sum((p.location_id for p in parts), []),
            sum((p.date for p in parts), []),
            np.concatenate([p.month_index for p in parts]),
            np.concatenate([p.crop for p in parts]),
        )

    def conditions(self) -> dict:
        """Keyword arguments of ``SatelliteSampler.sample`` for these tiles."""
        return dict(
            climate=self.climate, landcover=self.landcover, month=self.month, location=self.location
        )


def split_tiles(module: SatelliteDataModule, split: str) -> SplitTiles:
    """Every (record, crop) of ``split`` in the module's order; raises when the split is empty."""
    items = [(rec, crop) for rec, crop, _ in module.dataset(split).items]
    if not items:
        raise ValueError(f"split {split!r}: no tiles (check test_months / max_cloud of the data)")
    tiles = module.tiles
    return SplitTiles(
        images=np.stack([tiles.pixels[rec.key][crop] for rec, crop in items]),
        climate=np.stack([rec.climate.as_array() for rec, _ in items]),
        landcover=np.array([rec.landcover for rec, _ in items], dtype=np.int64),
        month=np.array([rec.month for rec, _ in items], dtype=np.int64),
        location=np.stack([tiles.centres[rec.key][crop] for rec, crop in items]),
        location_id=[rec.location_id for rec, _ in items],
        date=[rec.date for rec, _ in items],
        month_index=np.array([rec.month_index for rec, _ in items], dtype=np.int64),
        crop=np.array([crop for _, crop in items], dtype=np.int64),
    )


def previous_frames(
    module: SatelliteDataModule, tiles: SplitTiles, max_lag: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each tile the latest earlier month of the same place and crop kept by the module (any
    split) at most ``max_lag`` months back: (N, 3, S, S) uint8 frames and (N,) lags; rows
    without one get lag 0 and a zero frame."""
    kept = {}
    for split in SPLITS:
        for rec in module.splits[split]:
            kept[(rec.location_id, rec.month_index)] = rec.key
    frames = np.zeros_like(tiles.images)
    lags = np.zeros(len(tiles), dtype=np.int64)
    for i in range(len(tiles)):
        for lag in range(1, max_lag + 1):
            key = kept.get((tiles.location_id[i], int(tiles.month_index[i]) - lag))
            if key is not None:
                frames[i], lags[i] = module.tiles.pixels[key][tiles.crop[i]], lag
                break
    return frames, lags
