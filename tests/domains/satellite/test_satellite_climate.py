"""Climate values: strings, units, sampling and map cuts of generated NetCDF and GeoTIFF grids."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr
from rasterio.transform import Affine
from sciflow_domains.satellite.climate import (
    canonical_unit,
    grid_from_dataarray,
    open_geotiff,
    open_xarray,
    parse_climate_string,
    to_canonical,
)
from sciflow_domains.satellite.io import tile_footprint


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "The average temperature over the last month was -15.82 C with an average "
            "precipitation of 1.43 mm and an average daily solar radiation of 8.19 kWh/m2",
            (-15.82, 1.43, 8.19),
        ),
        (
            "Average values for the last month: temperature: 19.03 C, precipitation: 5.29 mm, "
            "solar radiation: 19.75 kWh/m2",
            (19.03, 5.29, 19.75),
        ),
        (
            " The average temperature over the last month was 3 C. with an average "
            "precipitation 0 mm, and an average daily solar radiation of 21 W/m2.",
            (3.0, 0.0, 21.0),
        ),
        (
            "temperature 280.15 K, precipitation 2 mm/day, radiation 2.4 kWh/m2/day",
            (7.0, 2.0, 8.64),
        ),
    ],
)
def test_parse_climate_strings(text, expected):
    climate = parse_climate_string(text)
    np.testing.assert_allclose(climate.as_array(), expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("temperature 20 C, precipitation 3 mm", "no radiation value"),
        ("temperature 20 F, precipitation 3 mm, radiation 10 kWh/m2", "unknown unit 'F'"),
        ("temperature 20 C, precipitation 3 kWh/m2, radiation 10 kWh/m2", "measures radiation"),
        ("temperature 20 C, precipitation -3 mm, radiation 10 kWh/m2", "outside the plausible"),
    ],
)
def test_parse_errors_name_the_problem(text, match):
    with pytest.raises(ValueError, match=match) as info:
        parse_climate_string(text, source="tile.json field 'x'")
    assert "tile.json field 'x'" in str(info.value)


def test_unit_conversions_and_checks():
    assert canonical_unit("kg m-2 s-1") == canonical_unit("kg/m2/s") == "kg m-2 s-1"
    assert to_canonical(293.15, "K", "temperature") == pytest.approx(20.0)
    assert to_canonical(1e-5, "kg m-2 s-1", "precipitation") == pytest.approx(0.864)
    assert to_canonical(62.0, "mm/month", "precipitation", month=1) == pytest.approx(2.0)
    assert to_canonical(56.0, "mm/month", "precipitation", month=2, year=2019) == pytest.approx(2.0)
    assert to_canonical(5.0, "kWh/m2/day", "radiation") == pytest.approx(18.0)
    with pytest.raises(ValueError, match="needs the month"):
        to_canonical(62.0, "mm/month", "precipitation")
    with pytest.raises(ValueError, match=r"t2m: temperature 283 degC is 283 degC, outside"):
        to_canonical(283.0, "degC", "temperature", source="t2m")


def _grid_dataset() -> xr.Dataset:
    """tas (K) on a 2-degree global grid, lon 0..358, 24 monthly steps; value encodes the cell."""
    lat = np.arange(-89.0, 90.0, 2.0)
    lon = np.arange(0.0, 360.0, 2.0)
    time = pd.date_range("2019-01-01", periods=24, freq="MS") + pd.Timedelta(days=14)
    i, j = np.meshgrid(np.arange(lat.size), np.arange(lon.size), indexing="ij")
    base = 250.0 + 0.5 * i + 0.01 * j
    values = base[None] + np.arange(24)[:, None, None] * 0.1
    values[:, 10, 10] = np.nan  # one no-data cell
    tas = xr.DataArray(values.astype(np.float32), dims=("time", "lat", "lon"))
    tas.attrs["units"] = "K"
    return xr.Dataset({"tas": tas}, coords={"time": time, "lat": lat, "lon": lon})


@pytest.fixture
def netcdf_grid(tmp_path):
    if importlib.util.find_spec("h5netcdf") is None and importlib.util.find_spec("scipy") is None:
        pytest.skip("no NetCDF writer (h5netcdf or scipy) installed")
    path = tmp_path / "tas.nc"
    engine = "h5netcdf" if importlib.util.find_spec("h5netcdf") else "scipy"
    _grid_dataset().to_netcdf(path, engine=engine)
    return path


def test_netcdf_sample_equals_the_grid_value(netcdf_grid):
    grid = open_xarray(netcdf_grid, "tas", "temperature")
    ds = _grid_dataset()
    # (48.25 N, 26.36 E) lies in the cell centred at (49, 26): lat index 69, lon index 13
    expected = float(ds.tas.isel(lat=69, lon=13).sel(time="2020-07").squeeze()) - 273.15
    assert grid.sample(48.25, 26.36, month=7, year=2020) == pytest.approx(expected, abs=1e-4)
    # (-22.9, -63.56): cell (-23, 296), lat index 33, lon index 148 (-63.56 wraps to 296.44)
    cell = ds.tas.isel(lat=33, lon=148)
    mean_july = float(cell.sel(time=cell.time.dt.month == 7).mean()) - 273.15
    assert grid.sample(-22.9, -63.56, month=7) == pytest.approx(mean_july, abs=1e-4)
    with pytest.raises(ValueError, match="no data in the nearest cell"):
        grid.sample(-69.0, 20.0, month=1, year=2019)
    with pytest.raises(ValueError, match=r"month/year: 2018-07 not in"):
        grid.sample(0.0, 0.0, month=7, year=2018)
    with pytest.raises(ValueError, match="has a time axis; pass month"):
        grid.sample(0.0, 0.0)


def test_units_stated_and_declared_must_agree(netcdf_grid):
    with pytest.raises(ValueError, match=r"says 'K', but units='degC'"):
        open_xarray(netcdf_grid, "tas", "temperature", units="degC")
    with pytest.raises(ValueError, match=r"is in K \(temperature\), not precipitation"):
        open_xarray(netcdf_grid, "tas", "precipitation")
    with pytest.raises(ValueError, match=r"variable: 'pr' not in"):
        open_xarray(netcdf_grid, "pr", "precipitation")
    bare = xr.DataArray(
        np.zeros((2, 2)), dims=("lat", "lon"), coords={"lat": [0, 1], "lon": [0, 1]}
    )
    with pytest.raises(ValueError, match="declares no units; pass units="):
        grid_from_dataarray(bare, "temperature")


def _write_geotiff(path, data, crs="EPSG:4326", transform=None, nodata=-9999.0):
    transform = transform or Affine(0.5, 0.0, -180.0, 0.0, -0.5, 90.0)
    profile = dict(driver="GTiff", width=data.shape[-1], height=data.shape[-2], count=len(data),
                   dtype="float32", crs=crs, transform=transform, nodata=nodata)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.float32))
    return path


def test_geotiff_sample_and_cut(tmp_path):
    rows, cols = np.meshgrid(np.arange(360), np.arange(720), indexing="ij")
    data = np.stack([31.0 * (rows + cols / 1000.0), 28.0 * (rows + cols / 1000.0)])
    data[:, 100:110, 200:210] = -9999.0  # a no-data block around lat 40..35 N, lon 80..75 W
    path = _write_geotiff(tmp_path / "prec.tif", data)
    grid = open_geotiff(path, "precipitation", "mm/month", months=[1, 2])
    # (48.25 N, 26.36 E): row (90 - 48.25) / 0.5 = 83, col (26.36 + 180) / 0.5 = 412
    assert grid.sample(48.25, 26.36, month=1) == pytest.approx(83.412)  # 31·(…)/31 days
    assert grid.sample(48.25, 26.36, month=2) == pytest.approx(83.412 * 28 / 28.25)
    with pytest.raises(ValueError, match=r"holds months \[1, 2\], got 3"):
        grid.sample(48.25, 26.36, month=3)
    footprint = tile_footprint(48.25, 26.36, 8, 8, 100.0)  # 800 m: inside one 0.5° cell
    cut = grid.cut(footprint, month=1)
    assert cut.dims == ("y", "x") and cut.shape == (8, 8) and cut.attrs["units"] == "mm/day"
    np.testing.assert_allclose(cut.to_numpy(), 83.412)
    assert float(cut["lat"].mean()) == pytest.approx(48.25, abs=1e-3)
    with pytest.raises(ValueError, match="nodata-only window"):
        grid.cut(tile_footprint(37.5, -77.5, 8, 8, 1000.0), month=1)


def test_wrong_crs_and_outside_points(tmp_path):
    utm = Affine(100.0, 0.0, 300000.0, 0.0, -100.0, 5700000.0)
    path = _write_geotiff(tmp_path / "utm.tif", np.ones((1, 4, 4)), "EPSG:32611", utm)
    with pytest.raises(ValueError, match=r"CRS EPSG:32611 is not EPSG:4326"):
        open_geotiff(path, "temperature", "degC")
    europe = Affine(1.0, 0.0, 0.0, 0.0, -1.0, 60.0)
    path = _write_geotiff(tmp_path / "eu.tif", np.full((1, 10, 10), 5.0), transform=europe)
    grid = open_geotiff(path, "temperature", "degC")
    assert grid.sample(55.5, 5.5) == 5.0
    with pytest.raises(ValueError, match="lies outside"):
        grid.sample(45.0, 5.5)


def test_real_worldclim_and_era5(real_climate_dir):
    bio1 = open_geotiff(real_climate_dir / "worldclim/wc2.1_10m_bio_1.tif", "temperature", "degC")
    assert bio1.sample(51.421, -119.561) == pytest.approx(2.744, abs=1e-3)  # data README value
    if importlib.util.find_spec("cfgrib") is None:
        pytest.skip("cfgrib not installed: GRIB reading untested")
    era5 = open_xarray(real_climate_dir / "era5_xarray_data/era5-2mt-2019-03-uk.grib", "t2m",
                       "temperature")  # fmt: skip
    value = era5.sample(52.2, 0.1, month=3, year=2019)
    assert 0.0 < value < 15.0  # March mean 2 m temperature near Cambridge, degC
