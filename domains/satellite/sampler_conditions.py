"""User conditions in physical units → the model's ``cond`` dict (see :mod:`.nets_conditioning`).

Inputs (any may be omitted; B rows, or one row / a scalar broadcast to B)::

    climate      (B, 3) T degC, P mm/day, R MJ/m2/day; NaN rows → the null climate
    landcover    (B,) ids or IGBP class names (``datasets.LANDCOVER_CLASSES``)
    month        (B,) calendar months 1..12
    location     (B, 2) latitude, longitude in degrees
    previous     (B, 3, H, W) in [-1, 1]     the earlier frame (time-series model)
    lag          (B,) months between ``previous`` and the target
    climate_map  (B, 3, H, W) T, P, R in the climate's units (climate-map model)
"""

from __future__ import annotations

import numpy as np
import torch
from sciflow_domains.satellite.data import ClimateNormalizer, location_encoding, month_encoding
from sciflow_domains.satellite.datasets import landcover_id


def _array(value, name: str, dtype=np.float64) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected numbers, got {type(value).__name__} ({err})") from err


def _rows(array: np.ndarray, name: str, tail: tuple[int, ...], describe: str) -> np.ndarray:
    """``array`` as (n, *tail): a single item (shape ``tail``) becomes one row."""
    if array.shape == tail:
        array = array[None]
    if array.ndim != len(tail) + 1 or tuple(array.shape[1:]) != tail or not len(array):
        raise ValueError(f"{name}: expected {describe}, got shape {array.shape}")
    return array


def batch_rows(rows: dict[str, np.ndarray], num_samples: int | None) -> int:
    """The batch size B: ``num_samples`` or the common row count; single rows broadcast."""
    sizes = {name: len(value) for name, value in rows.items()}
    counts = {n for n in sizes.values() if n != 1}
    if num_samples is not None:
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
            raise ValueError(f"num_samples: expected a positive int, got {num_samples!r}")
        counts.add(num_samples)
    if len(counts) > 1:
        raise ValueError(
            f"conditions: row counts disagree ({sizes}, num_samples={num_samples}); give B rows "
            "or one row per condition"
        )
    if counts:
        return counts.pop()
    if not sizes:
        raise ValueError("num_samples: give num_samples or at least one condition")
    return 1


def _broadcast(value: np.ndarray, batch: int) -> np.ndarray:
    return np.broadcast_to(value, (batch, *value.shape[1:])).copy()


def landcover_ids(value, num_landcover: int) -> np.ndarray:
    """(n,) int64 ids from ids or IGBP names (a scalar gives one row)."""
    items = [value] if isinstance(value, str | int | np.integer) else list(_listed(value))
    ids = []
    for item in items:
        if isinstance(item, str):
            ids.append(landcover_id(item, "landcover"))
        elif isinstance(item, int | np.integer) and not isinstance(item, bool):
            if not 0 <= int(item) < num_landcover:
                raise ValueError(f"landcover: ids must lie in [0, {num_landcover - 1}], got {item}")
            ids.append(int(item))
        else:
            raise TypeError(f"landcover: expected ids or IGBP class names, got {item!r}")
    if not ids:
        raise ValueError("landcover: got an empty list")
    return np.asarray(ids, dtype=np.int64)


def _listed(value):
    if isinstance(value, torch.Tensor | np.ndarray):
        return value.tolist()
    return value


def model_conditions(
    normalizer: ClimateNormalizer | None,
    num_landcover: int,
    image_shape: tuple[int, int, int],
    num_samples: int | None = None,
    climate=None,
    landcover=None,
    month=None,
    location=None,
    previous=None,
    lag=None,
    climate_map=None,
) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray], int]:
    """Validate and convert the user conditions (module docstring).

    Returns ``(cond, raw, B)``: ``cond`` the model's tensors (CPU), ``raw`` the given values in
    physical units broadcast to B rows (``lat``/``lon`` for the location), and B.
    """
    channels, height, width = image_shape
    rows: dict[str, np.ndarray] = {}
    if climate is not None:
        rows["climate"] = _rows(_array(climate, "climate"), "climate", (3,), "(B, 3) T, P, R")
    if landcover is not None:
        rows["landcover"] = landcover_ids(landcover, num_landcover)
    if month is not None:
        months = _array(month, "month").reshape(-1)
        if not np.all(np.isin(months, np.arange(1, 13))):
            raise ValueError(f"month: expected calendar months 1..12, got {months.tolist()}")
        rows["month"] = months.astype(np.int64)
    if location is not None:
        loc = _rows(_array(location, "location"), "location", (2,), "(B, 2) latitude, longitude")
        if np.any(np.abs(loc[:, 0]) > 90) or np.any(np.abs(loc[:, 1]) > 180):
            raise ValueError(f"location: latitude in [-90, 90], longitude in [-180, 180]: {loc}")
        rows["location"] = loc
    image = (channels, height, width)
    if previous is not None:
        prev = _rows(_array(previous, "previous", np.float32), "previous", image, f"(B, {image})")
        if not np.isfinite(prev).all() or np.abs(prev).max() > 1.0 + 1e-6:
            raise ValueError("previous: expected finite values in [-1, 1] (model space)")
        rows["previous"] = prev
    if lag is not None:
        lags = _array(lag, "lag").reshape(-1)
        if np.any(lags < 1) or np.any(lags != np.round(lags)):
            raise ValueError(f"lag: expected whole months >= 1, got {lags.tolist()}")
        rows["lag"] = lags.astype(np.int64)
    if climate_map is not None:
        maps = _array(climate_map, "climate_map", np.float64)
        shape = (3, height, width)
        maps = _rows(maps, "climate_map", shape, f"(B, {shape}) T, P, R maps")
        if not np.isfinite(maps).all():
            raise ValueError("climate_map: contains NaN or inf (fill no-data cells first)")
        rows["climate_map"] = maps
    batch = batch_rows(rows, num_samples)
    raw = {name: _broadcast(value, batch) for name, value in rows.items()}
    cond: dict[str, torch.Tensor] = {}
    if ("climate" in raw or "climate_map" in raw) and normalizer is None:
        raise ValueError(
            "climate: this checkpoint keeps no climate normalisation (it was not trained with "
            "SatelliteDataModule), so physical climate values cannot be converted"
        )
    if "climate" in raw:
        cond["climate"] = torch.from_numpy(normalizer.transform(raw["climate"]))
    if "landcover" in raw:
        cond["landcover"] = torch.from_numpy(raw["landcover"])
    if "month" in raw:
        cond["month"] = torch.from_numpy(month_encoding(raw["month"]))
    if "location" in raw:
        lat, lon = raw.pop("location").T
        raw["lat"], raw["lon"] = lat, lon
        cond["location"] = torch.from_numpy(location_encoding(lat, lon))
    if "previous" in raw:
        cond["previous"] = torch.from_numpy(raw["previous"])
    if "lag" in raw:
        cond["lag"] = torch.from_numpy(raw["lag"])
    if "climate_map" in raw:
        moved = np.moveaxis(raw["climate_map"], 1, -1)  # normalise per channel
        cond["climate_map"] = torch.from_numpy(
            np.ascontiguousarray(np.moveaxis(normalizer.transform(moved), -1, 1))
        )
    return cond, raw, batch
