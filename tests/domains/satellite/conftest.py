"""Fixtures of the satellite tests: a tiny generated EcoMapper layout, the real example set."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

#: location id → (period folder, land cover as written, [lat, lon], how the climate is stored)
LOCATIONS = {
    "10": ("2019-2020", "Croplands", [48.25, 26.36], "sentence"),
    "20": ("2019-2020", "Savannas", [-23.11, -63.56], "values"),
    "30": ("2021-2022", "Barren or Sparsely Vegetated", [21.19, 7.87], "short"),
}
TILE_PX = 32
CLOUDY = {("10", 3), ("20", 7)}  # (location, month) with cloud_coverage 0.9


def tile_pixels(location: str, month: int) -> np.ndarray:
    """(TILE_PX, TILE_PX, 3) uint8: red = 10·month, green = location id / 10 · 40, blue ramp."""
    image = np.zeros((TILE_PX, TILE_PX, 3), dtype=np.uint8)
    image[..., 0] = 10 * month
    image[..., 1] = int(location) // 10 * 40
    image[..., 2] = np.arange(TILE_PX, dtype=np.uint8)[None, :] * 4
    return image


def climate_of(location: str, month: int) -> tuple[float, float, float]:
    """Deterministic (T degC, P mm/day, R MJ/m2/day) of a fixture month."""
    return -5.0 + 2.5 * month + int(location) / 10, 0.5 * month, 5.0 + month


def write_month(root: Path, location: str, year: int, month: int) -> Path:
    period, landcover, centre, style = LOCATIONS[location]
    folder = root / period / location
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{location}_{year}-{month:02d}"
    Image.fromarray(tile_pixels(location, month)).save(stem.with_suffix(".png"))
    t, p, r = climate_of(location, month)
    meta = {
        "type": landcover,
        "country_code": "null",
        "date": f"{year}-{month:02d}",
        "center_coordinates": centre,
        "cloud_coverage": 0.9 if (location, month) in CLOUDY else 0.01 * month,
    }
    if style == "sentence":
        meta["caption_info"] = {
            "location_address": "Somewhere",
            "climate_str_1": f"The average temperature over the last month was {t} C with an "
            f"average precipitation of {p} mm and an average daily solar radiation of {r} kWh/m2",
        }
    elif style == "short":
        meta["caption_info"] = {
            "climate_str_1": f"Average values for the last month: temperature: {t} C, "
            f"precipitation: {p} mm, solar radiation: {r} kWh/m2"
        }
    else:
        meta |= {"average_temp": t, "average_prep": p, "average_rad": r}
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(meta))
    return json_path


@pytest.fixture
def layout() -> SimpleNamespace:
    """The fixture layout's helpers: LOCATIONS, TILE_PX, CLOUDY, tile_pixels, climate_of,
    write_month."""
    return SimpleNamespace(
        LOCATIONS=LOCATIONS,
        TILE_PX=TILE_PX,
        CLOUDY=CLOUDY,
        tile_pixels=tile_pixels,
        climate_of=climate_of,
        write_month=write_month,
    )


@pytest.fixture
def ecomapper_root(tmp_path: Path) -> Path:
    """Three locations x 12 months (2019 or 2021) plus a climate-less ``Test-Batch/40`` series."""
    root = tmp_path / "ecomapper"
    for location, (period, *_) in LOCATIONS.items():
        for month in range(1, 13):
            write_month(root, location, int(period[:4]), month)
    series = root / "Test-Batch" / "40"
    series.mkdir(parents=True)
    for i in range(14):
        year, month = 2017 + i // 12, i % 12 + 1
        stem = series / f"40_{year}-{month:02d}"
        Image.fromarray(tile_pixels("40", month)).save(stem.with_suffix(".png"))
        meta = {
            "type": "Woody Savannas",
            "date": f"{year}-{month:02d}",
            "center_coordinates": [6.63, 39.10],
            "cloud_coverage": 0.0,
        }
        stem.with_suffix(".json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real EcoMapper example set under $SCIFLOW_DATA_DIR; skips when absent."""
    if not os.environ.get("SCIFLOW_DATA_DIR"):
        pytest.skip("SCIFLOW_DATA_DIR is unset; the real EcoMapper example set is not available")
    from sciflow_domains.satellite.datasets import default_root

    root = default_root()
    if not root.is_dir():
        pytest.skip("climate/ecomapper_example not found under SCIFLOW_DATA_DIR")
    return root


@pytest.fixture(scope="session")
def real_climate_dir() -> Path:
    """$SCIFLOW_DATA_DIR/climate (WorldClim, ERA5, CMIP5 samples); skips when absent."""
    from sciflow.data.registry import data_dir

    if not os.environ.get("SCIFLOW_DATA_DIR") or not (data_dir() / "climate").is_dir():
        pytest.skip("SCIFLOW_DATA_DIR/climate not available (set SCIFLOW_DATA_DIR)")
    return data_dir() / "climate"
