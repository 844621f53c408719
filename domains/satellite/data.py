"""Satellite tiles as training data: conditions, splits, climate normalisation, batches.

Records come from the EcoMapper layout (:mod:`.datasets`). Months with ``cloud > max_cloud`` or
with more than ``max_nodata`` of black (no-data) pixels are dropped, as targets and as previous
frames. Each remaining tile is centre-cropped to a square,
optionally cut into k x k crops (``crops_per_side``), and each crop is area-averaged to ``size``
pixels; crops inherit their tile's metadata except the centre, which is the crop's own.

Splits (``split``):

* ``"location"``: whole locations go to train/val/test (the right split for the full dataset).
* ``"temporal"``: calendar months ``test_months`` / ``val_months`` of *every* location are held
  out (default: all Decembers). In the example set each land-cover class has a single location,
  so holding out locations would hold out classes; only this split is honest there.

The climate normalisation (mean/std per field) is fitted on the training tiles only.

A batch (``SatelliteDataModule`` loaders, default ``torch`` collation), B samples::

    image      (B, 3, H, W) float32 in [-1, 1]    the target tile (H = W = size)
    cond = {
      climate    (B, 3) float32    (T, P, R) in (degC, mm/day, MJ/m2/day), normalised with the
                                   training mean/std (ClimateNormalizer)
      landcover  (B,)   int64      id into datasets.LANDCOVER_CLASSES (17 IGBP classes)
      month      (B, 2) float32    (sin, cos) of 2π (month - 1) / 12
      location   (B, 3) float32    unit vector (cos φ cos λ, cos φ sin λ, sin φ) of the centre
    }
    previous   (B, 3, H, W) float32 in [-1, 1]    only with previous=True: the same place (same
                                   crop) ``lag`` months earlier
    lag        (B,) int64          only with previous=True: months between previous and image
    meta = {
      location_id list[str], date list[str] ("YYYY-MM"), cloud (B,) float64,
      crop (B,) int64 (row-major index of the crop), lat, lon (B,) float64 (crop centre, degrees),
      gsd_m (B,) float64 (metres per output pixel, from ``tile_gsd_m``)
    }

With ``previous=True`` every (target, previous) pair with 1 ≤ lag ≤ ``max_lag`` is one sample
(targets without any earlier month are left out). Previous frames never come from a later split
than their target: train targets pair with train frames, val with train+val, test with any.
:meth:`SatelliteDataModule.series` returns the whole time series of one location for roll-outs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from sciflow_domains.satellite.climate import CANONICAL_UNITS, FIELDS
from sciflow_domains.satellite.datasets import (
    EXAMPLE_SERIES_LOCATION,
    LANDCOVER_CLASSES,
    TileRecord,
    location_records,
    scan_ecomapper,
)
from sciflow_domains.satellite.io import crop_centres, read_tile, square_crops
from torch.utils.data import DataLoader, Dataset

from sciflow.data.splits import split_groups

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SPLIT_MODES = ("location", "temporal")


# -- condition encodings ----------------------------------------------------------------------
def month_encoding(month) -> np.ndarray:
    """Calendar month(s) 1..12 → (..., 2) float32 (sin, cos) of 2π (month - 1) / 12."""
    angle = 2 * np.pi * (np.asarray(month, dtype=np.float64) - 1) / 12
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1).astype(np.float32)


def location_encoding(lat, lon) -> np.ndarray:
    """Latitude, longitude (degrees) → (..., 3) float32 unit vector on the sphere."""
    phi, lam = np.radians(np.asarray(lat, np.float64)), np.radians(np.asarray(lon, np.float64))
    xyz = [np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)]
    return np.stack(xyz, axis=-1).astype(np.float32)


@dataclass
class ClimateNormalizer:
    """Per-field standardisation of (T, P, R) in canonical units: (x - mean) / std."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> ClimateNormalizer:
        """Fit on (N, 3) canonical values (N ≥ 1); a constant field gets std 1."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != 3 or not len(values):
            raise ValueError(f"values: expected (N >= 1, 3) climate values, got {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError("values: the climate values to fit contain NaN or inf")
        std = values.std(axis=0)
        return cls(values.mean(axis=0), np.where(std > 0, std, 1.0))

    def transform(self, values) -> np.ndarray:
        """(..., 3) canonical → (..., 3) float32 standardised."""
        return ((np.asarray(values, np.float64) - self.mean) / self.std).astype(np.float32)

    def inverse(self, values) -> np.ndarray:
        """(..., 3) standardised → (..., 3) float64 canonical units."""
        return np.asarray(values, np.float64) * self.std + self.mean

    def to_dict(self) -> dict:
        """JSON-able: ``{"fields", "units", "mean", "std"}``."""
        units = [CANONICAL_UNITS[f] for f in FIELDS]
        return dict(
            fields=list(FIELDS), units=units, mean=self.mean.tolist(), std=self.std.tolist()
        )

    @classmethod
    def from_dict(cls, state: dict) -> ClimateNormalizer:
        """Inverse of :meth:`to_dict`; the fields and units must be the current ones."""
        units = [CANONICAL_UNITS[f] for f in FIELDS]
        if list(state.get("fields", [])) != list(FIELDS) or list(state.get("units", [])) != units:
            raise ValueError(
                f"state: expected fields {list(FIELDS)} in {units}, got {state.get('fields')} "
                f"in {state.get('units')}"
            )
        return cls(np.asarray(state["mean"], np.float64), np.asarray(state["std"], np.float64))


# -- splits -----------------------------------------------------------------------------------
def split_by_location(
    records: Sequence[TileRecord],
    test_locations: Sequence[str] | None = None,
    val_locations: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> dict[str, list[TileRecord]]:
    """Whole locations to train/val/test (:func:`sciflow.data.split_groups`: the listed ones,
    else ``round(fraction · n)``, at least one for a positive fraction, drawn with ``seed``)."""
    groups = split_groups(
        [r.location_id for r in records], test_locations, val_locations,
        test_fraction, val_fraction, seed, kind="location",
    )  # fmt: skip
    owner = {name: split for split, names in groups.items() for name in names}
    out = {s: [] for s in SPLITS}
    for rec in records:
        out[owner[rec.location_id]].append(rec)
    return out


def split_temporal(
    records: Sequence[TileRecord],
    test_months: Sequence[int] = (12,),
    val_months: Sequence[int] = (),
) -> dict[str, list[TileRecord]]:
    """Calendar months ``test_months`` / ``val_months`` of every location held out."""
    for label, months in (("test_months", test_months), ("val_months", val_months)):
        if any(not isinstance(m, int) or not 1 <= m <= 12 for m in months):
            raise ValueError(f"{label}: expected calendar months in 1..12, got {list(months)!r}")
    both = set(test_months) & set(val_months)
    if both:
        raise ValueError(f"test_months/val_months: month(s) {sorted(both)} in both")
    owner = {m: "test" for m in test_months} | {m: "val" for m in val_months}
    out = {s: [] for s in SPLITS}
    for rec in records:
        out[owner.get(rec.month, "train")].append(rec)
    if not out["train"]:
        raise ValueError("test_months/val_months: no training month left")
    return out


def pair_previous(
    targets: Sequence[TileRecord], pool: Sequence[TileRecord], max_lag: int
) -> list[tuple[TileRecord, TileRecord]]:
    """Every (target, earlier) pair of the same location from ``pool`` with 1 ≤ lag ≤ max_lag."""
    by_location: dict[str, list[TileRecord]] = {}
    for rec in pool:
        by_location.setdefault(rec.location_id, []).append(rec)
    pairs = []
    for target in targets:
        for prev in by_location.get(target.location_id, []):
            if 1 <= target.month_index - prev.month_index <= max_lag:
                pairs.append((target, prev))
    return pairs


# -- tiles and samples ------------------------------------------------------------------------
@dataclass
class Tiles:
    """Prepared crops of records, by record key: ``pixels`` (K, 3, size, size) uint8 (K = k²),
    ``centres`` (K, 2) lat/lon degrees, ``gsd_m`` metres per output pixel, ``nodata`` the
    fraction of source pixels that are black in all bands (Sentinel-2 no-data)."""

    pixels: dict
    centres: dict
    gsd_m: dict
    nodata: dict

    @classmethod
    def load(
        cls, records: Sequence[TileRecord], size: int, crops_per_side: int, tile_gsd_m: float
    ) -> Tiles:
        """Read each record's PNG and cut it (see :func:`~.io.square_crops`)."""
        tiles = cls({}, {}, {}, {})
        k = crops_per_side
        for rec in records:
            image = read_tile(rec.image_path)
            side = min(image.shape[:2]) // k * k
            tiles.pixels[rec.key] = square_crops(image, size, k)
            tiles.centres[rec.key] = crop_centres(rec.lat, rec.lon, side, tile_gsd_m, k)
            tiles.gsd_m[rec.key] = tile_gsd_m * side / k / size
            tiles.nodata[rec.key] = float((image.max(axis=2) == 0).mean())
        return tiles


def _image(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).float().div_(127.5).sub_(1.0)


def climate_array(records: Sequence[TileRecord]) -> np.ndarray:
    """(N, 3) float64 canonical climate of records; NaN rows where a record has none."""
    rows = [r.climate.as_array() if r.climate else np.full(3, np.nan) for r in records]
    return np.asarray(rows, dtype=np.float64).reshape(len(records), 3)


class SatelliteTiles(Dataset):
    """Samples ``(target, crop, previous or None)``; items are the per-sample dicts of the
    module docstring (without the batch dimension)."""

    def __init__(
        self,
        items: Sequence[tuple[TileRecord, int, TileRecord | None]],
        tiles: Tiles,
        normalizer: ClimateNormalizer,
    ):
        self.items, self.tiles, self.normalizer = list(items), tiles, normalizer

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        rec, crop, prev = self.items[index]
        lat, lon = self.tiles.centres[rec.key][crop]
        sample = {
            "image": _image(self.tiles.pixels[rec.key][crop]),
            "cond": {
                "climate": torch.from_numpy(self.normalizer.transform(rec.climate.as_array())),
                "landcover": torch.tensor(rec.landcover, dtype=torch.long),
                "month": torch.from_numpy(month_encoding(rec.month)),
                "location": torch.from_numpy(location_encoding(lat, lon)),
            },
            "meta": {
                "location_id": rec.location_id,
                "date": rec.date,
                "cloud": rec.cloud,
                "crop": crop,
                "lat": float(lat),
                "lon": float(lon),
                "gsd_m": self.tiles.gsd_m[rec.key],
            },
        }
        if prev is not None:
            sample["previous"] = _image(self.tiles.pixels[prev.key][crop])
            sample["lag"] = torch.tensor(rec.month_index - prev.month_index, dtype=torch.long)
        return sample


# -- Lightning data module --------------------------------------------------------------------
class SatelliteDataModule(L.LightningDataModule):
    """Batches of EcoMapper tiles (format in the module docstring).

    Args:
        root: the EcoMapper folder (default ``$SCIFLOW_DATA_DIR/climate/ecomapper_example``).
        exclude: period folders to skip (default the climate-less ``Test-Batch``).
        size: output pixels per side (32 on CPU; 64 works too).
        crops_per_side: k; each tile gives k x k crops (k=4 on the 512 px example tiles gives
            128 px crops, 16 per tile).
        max_cloud: drop months whose ``cloud_coverage`` exceeds this (1.0 keeps all).
        max_nodata: drop months with a larger fraction of black (no-data) pixels.
        split: ``"temporal"`` (``test_months``, ``val_months``) or ``"location"``
            (``test_locations``, ``val_locations``, else ``test_fraction``, ``val_fraction``).
        previous: add each sample's earlier frame (``previous``, ``lag``), 1 ≤ lag ≤ max_lag.
        tile_gsd_m: metres per pixel of the source tiles (not recorded by EcoMapper; 20 m is
            the value in EcoMapper's own metadata vector).
        batch_size, num_workers, seed: loaders; ``seed`` also drives the location split.

    After :meth:`setup`: ``splits`` (split → records), ``normalizer``, ``tiles``. The class
    attributes ``landcover_names`` / ``num_landcover`` give the id → name table.
    """

    landcover_names = LANDCOVER_CLASSES
    num_landcover = len(LANDCOVER_CLASSES)

    def __init__(
        self,
        root: str | None = None,
        exclude: list[str] | None = None,
        size: int = 32,
        crops_per_side: int = 1,
        max_cloud: float = 0.3,
        max_nodata: float = 0.05,
        split: str = "temporal",
        test_months: list[int] | None = None,
        val_months: list[int] | None = None,
        test_locations: list[str] | None = None,
        val_locations: list[str] | None = None,
        test_fraction: float = 0.2,
        val_fraction: float = 0.0,
        previous: bool = False,
        max_lag: int = 6,
        tile_gsd_m: float = 20.0,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        if split not in SPLIT_MODES:
            raise ValueError(f"split: expected one of {SPLIT_MODES}, got {split!r}")
        for name, value in (
            ("size", size),
            ("crops_per_side", crops_per_side),
            ("max_lag", max_lag),
            ("batch_size", batch_size),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        for name, value in (("max_cloud", max_cloud), ("max_nodata", max_nodata)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: expected a fraction in [0, 1], got {value!r}")
        if not tile_gsd_m > 0:
            raise ValueError(f"tile_gsd_m: expected positive metres, got {tile_gsd_m!r}")
        self.root, self.exclude = root, tuple(exclude if exclude is not None else ["Test-Batch"])
        self.size, self.crops_per_side = size, crops_per_side
        self.max_cloud, self.max_nodata = max_cloud, max_nodata
        self.split = split
        self.test_months = list(test_months if test_months is not None else [12])
        self.val_months = list(val_months or [])
        self.location_args = dict(
            test_locations=test_locations,
            val_locations=val_locations,
            test_fraction=test_fraction,
            val_fraction=val_fraction,
            seed=seed,
        )
        self.previous, self.max_lag, self.tile_gsd_m = previous, max_lag, tile_gsd_m
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.splits: dict[str, list[TileRecord]] | None = None
        self.normalizer: ClimateNormalizer | None = None
        self.tiles: Tiles | None = None

    def setup(self, stage: str | None = None) -> None:
        """Scan, filter clouds, split, load the tiles and fit the climate normalisation (once)."""
        if self.splits is not None:
            return
        records = scan_ecomapper(self.root, self.exclude, require_climate=True)
        clear = [r for r in records if r.cloud <= self.max_cloud]
        tiles = Tiles.load(clear, self.size, self.crops_per_side, self.tile_gsd_m)
        kept = [r for r in clear if tiles.nodata[r.key] <= self.max_nodata]
        log.info(
            "%d of %d months kept: %d have cloud > %s, %d more have no-data > %s",
            len(kept), len(records), len(records) - len(clear), self.max_cloud,
            len(clear) - len(kept), self.max_nodata,
        )  # fmt: skip
        if self.split == "temporal":
            splits = split_temporal(kept, self.test_months, self.val_months)
        else:
            splits = split_by_location(kept, **self.location_args)
        if not splits["train"]:
            raise ValueError(
                f"max_cloud={self.max_cloud}, max_nodata={self.max_nodata}: no training tile left"
            )
        self.normalizer = ClimateNormalizer.fit(climate_array(splits["train"]))
        self.tiles, self.splits = tiles, splits

    def _require(self) -> dict[str, list[TileRecord]]:
        if self.splits is None:
            raise RuntimeError("SatelliteDataModule: call setup() first")
        return self.splits

    def dataset(self, split: str) -> SatelliteTiles:
        """The samples of ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
        splits = self._require()
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        crops = range(self.crops_per_side**2)
        if self.previous:
            pool = [r for s in SPLITS[: SPLITS.index(split) + 1] for r in splits[s]]
            pairs = pair_previous(splits[split], pool, self.max_lag)
        else:
            pairs = [(r, None) for r in splits[split]]
        items = [(rec, c, prev) for rec, prev in pairs for c in crops]
        return SatelliteTiles(items, self.tiles, self.normalizer)

    def _loader(self, split: str, shuffle: bool) -> DataLoader | list:
        dataset = self.dataset(split)
        if not len(dataset):
            return []
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader | list:
        return self._loader("test", shuffle=False)

    def series(self, location_id: str = EXAMPLE_SERIES_LOCATION, crop: int = 0) -> dict:
        """The whole series of one location (see :func:`load_series`) with this module's size,
        crops, GSD and fitted normalisation; no cloud or no-data filter (every month is
        returned, with its ``cloud`` and ``nodata`` fractions)."""
        self._require()
        return load_series(
            location_id,
            self.root,
            self.size,
            self.crops_per_side,
            crop,
            self.tile_gsd_m,
            self.normalizer,
        )


def load_series(
    location_id: str = EXAMPLE_SERIES_LOCATION,
    root: str | None = None,
    size: int = 32,
    crops_per_side: int = 1,
    crop: int = 0,
    tile_gsd_m: float = 20.0,
    normalizer: ClimateNormalizer | None = None,
) -> dict:
    """Every month of one location, oldest first (for roll-out evaluation), T months::

        image        (T, 3, size, size) float32 in [-1, 1]   crop ``crop`` of each tile
        cond         landcover (T,) int64, month (T, 2), location (T, 3), and with a
                     ``normalizer`` climate (T, 3) normalised (NaN where a month has none)
        climate_raw  (T, 3) float64 canonical units, NaN where a month has none
        climate_valid (T,) bool; cloud, nodata (T,) float64 (cloudy / black fractions);
        dates list[str]; month_index (T,) int64
        location_id str; lat, lon float (crop centre); gsd_m float (per output pixel)

    The example set's ``Test-Batch/4451`` has 72 months (2017-01 … 2022-12) without climate.
    """
    records = location_records(location_id, root)
    k = crops_per_side
    if not isinstance(crop, int) or not 0 <= crop < k * k:
        raise ValueError(f"crop: expected an int in [0, {k * k - 1}], got {crop!r}")
    tiles = Tiles.load(records, size, k, tile_gsd_m)
    raw = climate_array(records)
    lat, lon = tiles.centres[records[0].key][crop]
    cond = {
        "landcover": torch.tensor([r.landcover for r in records], dtype=torch.long),
        "month": torch.from_numpy(month_encoding([r.month for r in records])),
        "location": torch.from_numpy(location_encoding(lat, lon)).expand(len(records), 3),
    }
    if normalizer is not None:
        cond["climate"] = torch.from_numpy(normalizer.transform(raw))
    return {
        "image": torch.stack([_image(tiles.pixels[r.key][crop]) for r in records]),
        "cond": cond,
        "climate_raw": torch.from_numpy(raw),
        "climate_valid": torch.from_numpy(np.isfinite(raw).all(axis=1)),
        "cloud": torch.tensor([r.cloud for r in records], dtype=torch.float64),
        "nodata": torch.tensor([tiles.nodata[r.key] for r in records], dtype=torch.float64),
        "dates": [r.date for r in records],
        "month_index": torch.tensor([r.month_index for r in records], dtype=torch.long),
        "location_id": str(location_id),
        "lat": float(lat),
        "lon": float(lon),
        "gsd_m": tiles.gsd_m[records[0].key],
    }
