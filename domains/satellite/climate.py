"""Monthly climate values: units, EcoMapper climate strings, and sampling of gridded products.

A climate value is one of three quantities, always held in its canonical unit:

==============  =============  ====================================================
quantity        canonical      accepted units (converted on reading)
==============  =============  ====================================================
temperature     degC           degC/C/°C, K
precipitation   mm/day         mm/day, kg m-2 s-1, mm/month (÷ days of the month)
radiation       MJ/m2/day      MJ/m2/day, kWh/m2/day, W/m2 (daily mean flux)
==============  =============  ====================================================

Every value is checked against a plausible range (:data:`PLAUSIBLE`) after conversion, so a
wrong unit (kelvin stated as degC, a flux stated as a daily total) fails loudly.

EcoMapper writes its units loosely. Its strings say ``... 19.03 C ... 5.29 mm ... 19.75 kWh/m2``
(some prompt templates say ``W/m2``). The numbers are NASA POWER monthly means: ``mm`` is a daily
precipitation rate (0-8 in the example set), and the radiation values (1.6-29) are impossible as
kWh/m2/day (top-of-atmosphere insolation never exceeds ~12) or as a mean W/m2 but fit MJ/m2/day.
:data:`ECOMAPPER_LABELS` records that reading; :class:`Climate` keeps the labels as written.

Gridded products (:class:`ClimateGrid`) come from NetCDF or GRIB through xarray
(:func:`open_xarray`) or from GeoTIFF through rasterio (:func:`open_geotiff`). Grids must be on
geographic latitude/longitude (EPSG:4326); a projected CRS is refused rather than silently
misread. :meth:`ClimateGrid.sample` reads the nearest cell at a point and month;
:meth:`ClimateGrid.cut` samples one value per pixel of a tile footprint (a climate *map*).
"""

from __future__ import annotations

import calendar
import numbers
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import xarray as xr

FIELDS = ("temperature", "precipitation", "radiation")
CANONICAL_UNITS = {"temperature": "degC", "precipitation": "mm/day", "radiation": "MJ/m2/day"}
#: Inclusive range of plausible monthly means in canonical units.
PLAUSIBLE = {"temperature": (-90.0, 60.0), "precipitation": (0.0, 150.0), "radiation": (0.0, 45.0)}

# unit → (quantity, factor, offset): canonical = value * factor + offset. "mm/month" is special.
_UNITS = {
    "degC": ("temperature", 1.0, 0.0),
    "K": ("temperature", 1.0, -273.15),
    "mm/day": ("precipitation", 1.0, 0.0),
    "kg m-2 s-1": ("precipitation", 86400.0, 0.0),
    "mm/month": ("precipitation", float("nan"), 0.0),
    "MJ/m2/day": ("radiation", 1.0, 0.0),
    "kWh/m2/day": ("radiation", 3.6, 0.0),
    "W/m2": ("radiation", 0.0864, 0.0),
}
_ALIASES = {
    "c": "degC", "°c": "degC", "degc": "degC", "deg_c": "degC", "celsius": "degC",
    "degree_celsius": "degC", "degrees_celsius": "degC", "k": "K", "kelvin": "K",
    "mm/day": "mm/day", "mm/d": "mm/day", "mmd-1": "mm/day", "mmday-1": "mm/day",
    "kgm-2s-1": "kg m-2 s-1", "kg/m2/s": "kg m-2 s-1", "kgm**-2s**-1": "kg m-2 s-1",
    "mm/month": "mm/month", "mmmonth-1": "mm/month",
    "mj/m2/day": "MJ/m2/day", "mjm-2day-1": "MJ/m2/day", "mjm-2d-1": "MJ/m2/day",
    "kwh/m2/day": "kWh/m2/day", "kwhm-2day-1": "kWh/m2/day",
    "w/m2": "W/m2", "wm-2": "W/m2", "wm**-2": "W/m2",
}  # fmt: skip
#: How the unit labels of EcoMapper strings and records are read (see the module docstring).
ECOMAPPER_LABELS = {
    "temperature": {"C": "degC", "°C": "degC"},
    "precipitation": {"mm": "mm/day"},
    "radiation": {"kWh/m2": "MJ/m2/day", "W/m2": "MJ/m2/day"},
}


def canonical_unit(unit: str, source: str = "units") -> str:
    """The key of the unit table for a spelling (``"W m-2"`` → ``"W/m2"``), else ValueError."""
    key = re.sub(r"\s+", "", str(unit)).lower()
    if key not in _ALIASES:
        known = sorted(set(_ALIASES.values()))
        raise ValueError(f"{source}: unknown unit {unit!r}; known: {known}")
    return _ALIASES[key]


def days_in_month(month: int, year: int | None = None) -> float:
    """Days of ``month`` in ``year``; without a year February counts 28.25."""
    if year is None:
        return 28.25 if month == 2 else float(calendar.monthrange(2001, month)[1])
    return float(calendar.monthrange(year, month)[1])


def to_canonical(
    values,
    unit: str,
    quantity: str,
    month: int | None = None,
    year: int | None = None,
    source: str = "value",
):
    """``values`` in ``unit`` → the canonical unit of ``quantity``, range-checked.

    ``month`` (and ``year``) are needed for ``mm/month``. ``source`` names the values in errors
    (a file and field). Returns a float for scalar input, else an ndarray.
    """
    if quantity not in CANONICAL_UNITS:
        raise ValueError(f"quantity: expected one of {FIELDS}, got {quantity!r}")
    key = canonical_unit(unit, source)
    kind, factor, offset = _UNITS[key]
    if kind != quantity:
        raise ValueError(f"{source}: unit {unit!r} measures {kind}, not {quantity}")
    if key == "mm/month":
        if month is None:
            raise ValueError(f"{source}: unit 'mm/month' needs the month to convert to mm/day")
        factor = 1.0 / days_in_month(month, year)
    out = np.asarray(values, dtype=np.float64) * factor + offset
    lo, hi = PLAUSIBLE[quantity]
    bad = np.isfinite(out) & ((out < lo) | (out > hi))
    if bad.any():
        given = float(np.broadcast_to(np.asarray(values, np.float64), out.shape)[bad][0])
        raise ValueError(
            f"{source}: {quantity} {given:g} {unit} is {out[bad][0]:.4g} "
            f"{CANONICAL_UNITS[quantity]}, outside the plausible range [{lo}, {hi}]; check the unit"
        )
    return float(out) if out.ndim == 0 else out


# -- point values -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Climate:
    """Monthly means in canonical units; ``labels`` are the units as written in the source."""

    temperature: float
    precipitation: float
    radiation: float
    labels: tuple[str, str, str] = ("degC", "mm/day", "MJ/m2/day")

    def as_array(self) -> np.ndarray:
        """(3,) float32: temperature degC, precipitation mm/day, radiation MJ/m2/day."""
        return np.array([getattr(self, f) for f in FIELDS], dtype=np.float32)


def _ecomapper_value(value, label: str, quantity: str, source: str) -> float:
    for kind, labels in ECOMAPPER_LABELS.items():
        if label in labels and kind != quantity:
            raise ValueError(f"{source}: unit {label!r} measures {kind}, not {quantity}")
    unit = ECOMAPPER_LABELS[quantity].get(label, label)
    return to_canonical(value, unit, quantity, source=source)


def climate_from_values(values: dict, labels: dict, source: str = "record") -> Climate:
    """A :class:`Climate` from numbers keyed by quantity, with EcoMapper unit labels.

    values: quantity → number; labels: quantity → unit label (read through
    :data:`ECOMAPPER_LABELS`, else as a unit name).
    """
    out = {}
    for quantity in FIELDS:
        value = values.get(quantity)
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            raise ValueError(f"{source}: {quantity} must be a finite number, got {value!r}")
        out[quantity] = _ecomapper_value(value, labels[quantity], quantity, f"{source} {quantity}")
    return Climate(**out, labels=tuple(labels[q] for q in FIELDS))


_NUMBER_UNIT = r"[^0-9+\-]*?(?P<value>[-+]?\d+(?:\.\d+)?)\s*(?P<unit>[^\s,;]+)"


def parse_climate_string(text: str, source: str = "climate string") -> Climate:
    """Temperature, precipitation and radiation from an EcoMapper climate sentence.

    Each quantity is the first number (with the unit token after it) following its keyword
    (``temperature``, ``precipitation``, ``radiation``), so all of EcoMapper's templates parse::

        "The average temperature over the last month was 19.03 C with an average precipitation
         of 5.29 mm and an average daily solar radiation of 19.75 kWh/m2"
        "Average values for the last month: temperature: 19.03 C, precipitation: 5.29 mm, ..."

    Raises ValueError naming ``source``, the quantity and the text when one cannot be found.
    """
    if not isinstance(text, str):
        raise ValueError(f"{source}: expected a climate sentence (str), got {text!r}")
    values, labels = {}, {}
    for quantity in FIELDS:
        match = re.search(rf"{quantity}\b{_NUMBER_UNIT}", text, flags=re.IGNORECASE)
        if match is None:
            raise ValueError(f"{source}: no {quantity} value with a unit in {text!r}")
        values[quantity] = float(match["value"])
        labels[quantity] = match["unit"].rstrip(".")
    return climate_from_values(values, labels, source)


# -- gridded products -------------------------------------------------------------------------
class _Footprint(Protocol):
    def lonlat(self) -> tuple[np.ndarray, np.ndarray]: ...


_LAT_NAMES, _LON_NAMES = ("lat", "latitude"), ("lon", "longitude")


def _select_month(da: xr.DataArray, month, year, source: str) -> xr.DataArray:
    """The values of ``month`` (of ``year``, else of every year; mean over matching time steps)."""
    if month is not None:
        if not isinstance(month, numbers.Integral) or not 1 <= month <= 12:
            raise ValueError(f"month: expected an int in 1..12, got {month!r}")
        month = int(month)
    if "time" in da.dims:
        if month is None:
            raise ValueError(f"month: {source} has a time axis; pass month (and year)")
        when = (da["time"].dt.month == month).to_numpy()
        if year is not None:
            when &= (da["time"].dt.year == year).to_numpy()
        if not when.any():
            times = da["time"].to_numpy()
            raise ValueError(
                f"month/year: {year}-{month:02d} not in {source} (time {times[0]} .. {times[-1]})"
            )
        return da.isel(time=when).mean("time", skipna=False)
    if "month" in da.dims:
        if month is None or month not in da["month"].to_numpy():
            months = da["month"].to_numpy().tolist()
            raise ValueError(f"month: {source} holds months {months}, got {month!r}")
        return da.sel(month=month)
    return da


@dataclass
class ClimateGrid:
    """One climate variable on a regular latitude/longitude grid.

    Attributes:
        data: dims (lat, lon), (time, lat, lon) or (month, lat, lon), values in ``units`` (NaN =
            no data); lat/lon coordinates are cell centres in degrees.
        quantity: one of :data:`FIELDS`. units: the file's unit (a key of the unit table).
        source: the file and variable, for messages.
    """

    data: xr.DataArray
    quantity: str
    units: str
    source: str

    def _wrap(self, lon):
        """Longitudes into the grid's convention (0..360 when it uses it, else -180..180)."""
        lon = np.asarray(lon, dtype=np.float64)
        if float(self.data["lon"].max()) > 180.0:
            return np.mod(lon, 360.0)
        return np.mod(lon + 180.0, 360.0) - 180.0

    def _inside(self, lat, lon) -> np.ndarray:
        """Whether points fall within the grid's cells (half a cell beyond the outer centres)."""
        inside = np.ones(np.shape(lat), dtype=bool)
        for name, value in (("lat", lat), ("lon", lon)):
            coord = self.data[name].to_numpy()
            half = abs(float(coord[1] - coord[0])) / 2 if coord.size > 1 else 0.0
            span = float(coord.max() - coord.min()) + 2 * half
            if name == "lon" and span >= 360.0 - 1e-6:
                continue  # a global grid wraps
            inside &= (value >= coord.min() - half) & (value <= coord.max() + half)
        return inside

    def _convert(self, values, month: int | None, year: int | None, where: str):
        return to_canonical(values, self.units, self.quantity, month, year, where)

    def sample(
        self, lat: float, lon: float, month: int | None = None, year: int | None = None
    ) -> float:
        """The value of the grid cell nearest to (lat, lon) in ``month``, canonical units.

        A grid with a time axis needs ``month`` (``year`` optional: without it every matching
        month is averaged); a (month, lat, lon) climatology needs ``month``; a 2-D grid ignores
        them. Raises ValueError for a point outside the grid or a no-data cell.
        """
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 360.0):
            raise ValueError(
                f"lat/lon: expected degrees in [-90, 90] x [-180, 360], got {lat, lon}"
            )
        lon_w = float(self._wrap(lon))
        if not self._inside(np.float64(lat), np.float64(lon_w)):
            raise ValueError(f"lat/lon: point {lat, lon} lies outside {self.source}")
        point = self.data.sel(lat=lat, lon=lon_w, method="nearest")
        value = float(_select_month(point, month, year, self.source))
        where = f"{self.source} at lat={lat}, lon={lon}, month={month}"
        if not np.isfinite(value):
            raise ValueError(f"{where}: no data in the nearest cell")
        return self._convert(value, month, year, where)

    def cut(self, footprint: _Footprint, month: int | None = None, year: int | None = None):
        """A climate map on a tile's pixels: (H, W) DataArray (dims y, x), canonical units.

        ``footprint`` gives each pixel centre's longitude and latitude (``footprint.lonlat()``,
        e.g. :func:`sciflow_domains.satellite.io.tile_footprint`); each pixel takes its nearest
        grid cell. Pixels outside the grid or on no-data cells are NaN; a window with no data at
        all raises ValueError.
        """
        lon, lat = footprint.lonlat()
        lon_w = self._wrap(lon)
        field = _select_month(self.data, month, year, self.source)
        values = field.sel(
            lat=xr.DataArray(lat, dims=("y", "x")),
            lon=xr.DataArray(lon_w, dims=("y", "x")),
            method="nearest",
        ).to_numpy()
        values = np.where(self._inside(lat, lon_w), values, np.nan)
        where = f"{self.source} window around lat={lat.mean():.4f}, lon={lon.mean():.4f}"
        if not np.isfinite(values).any():
            raise ValueError(f"{where}, month={month}: nodata-only window (no grid value inside)")
        return xr.DataArray(
            self._convert(values, month, year, where),
            dims=("y", "x"),
            coords={"lat": (("y", "x"), lat), "lon": (("y", "x"), lon)},
            attrs={"units": CANONICAL_UNITS[self.quantity], "quantity": self.quantity},
        )


def grid_from_dataarray(
    da: xr.DataArray, quantity: str, units: str | None = None, source: str = "grid"
) -> ClimateGrid:
    """A :class:`ClimateGrid` from a DataArray with lat/latitude and lon/longitude dims.

    ``units`` states the unit when the array has no ``units`` attribute; when both exist they
    must agree. An array with a ``crs`` attribute other than EPSG:4326 is refused.
    """
    if quantity not in CANONICAL_UNITS:
        raise ValueError(f"quantity: expected one of {FIELDS}, got {quantity!r}")
    rename = {n: "lat" for n in _LAT_NAMES[1:] if n in da.dims}
    rename |= {n: "lon" for n in _LON_NAMES[1:] if n in da.dims}
    da = da.rename(rename)
    extra = set(da.dims) - {"lat", "lon", "time", "month"}
    if "lat" not in da.dims or "lon" not in da.dims or extra:
        raise ValueError(
            f"{source}: expected dims (lat, lon) plus optional time or month, got {da.dims}"
        )
    crs = da.attrs.get("crs")
    if crs is not None and str(crs).upper() not in ("EPSG:4326", "OGC:CRS84"):
        raise ValueError(f"{source}: CRS {crs!r} is not geographic lat/lon (EPSG:4326)")
    declared = da.attrs.get("units")
    if declared is None and units is None:
        raise ValueError(f"units: {source} declares no units; pass units=")
    if declared is not None and units is not None:
        if canonical_unit(declared) != canonical_unit(units):
            raise ValueError(f"units: {source} says {declared!r}, but units={units!r} was passed")
    unit = canonical_unit(units if units is not None else declared)
    if _UNITS[unit][0] != quantity:
        raise ValueError(f"units: {source} is in {unit} ({_UNITS[unit][0]}), not {quantity}")
    return ClimateGrid(da.sortby("lat").sortby("lon"), quantity, unit, source)


def open_xarray(
    path: str | os.PathLike,
    variable: str,
    quantity: str,
    units: str | None = None,
    engine: str | None = None,
) -> ClimateGrid:
    """``variable`` of a NetCDF or GRIB file (engine ``cfgrib`` for ``.grib``/``.grb``/``.grib2``).

    Reading NetCDF-4 needs h5netcdf (or netCDF4), GRIB needs cfgrib + eccodes, non-standard
    calendars (CMIP ``365_day``) need cftime.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"climate file not found: {path}")
    kwargs = {}
    if engine is None and path.suffix.lower() in (".grib", ".grb", ".grib2", ".grb2"):
        engine, kwargs = "cfgrib", {"backend_kwargs": {"indexpath": ""}}
    try:
        ds = xr.open_dataset(path, engine=engine, **kwargs)
    except (ValueError, ImportError) as err:
        raise ValueError(
            f"{path}: xarray could not open it ({err}); NetCDF-4 needs h5netcdf, GRIB needs "
            "cfgrib and eccodes, CMIP calendars need cftime"
        ) from err
    if variable not in ds.data_vars:
        raise ValueError(f"variable: {variable!r} not in {path}; it has {sorted(ds.data_vars)}")
    da = ds[variable].load()
    ds.close()
    return grid_from_dataarray(da, quantity, units, f"{path}:{variable}")


def open_geotiff(
    path: str | os.PathLike,
    quantity: str,
    units: str,
    months: Sequence[int] | None = None,
) -> ClimateGrid:
    """A GeoTIFF climate grid in EPSG:4326 (north-up); nodata cells become NaN.

    GeoTIFFs rarely state units, so ``units`` is required (checked against a ``units`` band
    tag when present). ``months``: the calendar month of each band (a monthly climatology);
    None reads band 1 as a grid valid in every month.
    """
    import rasterio

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"climate GeoTIFF not found: {path}")
    with rasterio.open(path) as src:
        if src.crs is None or src.crs.to_epsg() != 4326:
            raise ValueError(f"{path}: CRS {src.crs} is not EPSG:4326 (geographic lat/lon)")
        t = src.transform
        if t.b != 0 or t.d != 0:
            raise ValueError(f"{path}: rotated transform {tuple(t)[:6]} is not supported")
        bands = list(range(1, src.count + 1)) if months is not None else [1]
        if months is not None and len(months) != src.count:
            raise ValueError(f"months: {path} has {src.count} bands, got {len(months)} months")
        data = src.read(bands, masked=True).astype(np.float64).filled(np.nan)
        tagged = src.tags(1).get("units") or src.units[0]
    lon = t.c + t.a * (np.arange(data.shape[2]) + 0.5)
    lat = t.f + t.e * (np.arange(data.shape[1]) + 0.5)
    attrs = {"crs": "EPSG:4326", "units": tagged} if tagged else {"crs": "EPSG:4326"}
    if months is None:
        da = xr.DataArray(data[0], dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    else:
        coords = {"month": list(months), "lat": lat, "lon": lon}
        da = xr.DataArray(data, dims=("month", "lat", "lon"), coords=coords)
    da.attrs.update(attrs)
    return grid_from_dataarray(da, quantity, units, str(path))
