"""Tile images in and out: PNG reading and cropping, georeferenced GeoTIFF, xarray time series.

Georeferencing. EcoMapper records only a tile's centre (WGS84 latitude, longitude) and no
footprint; the ground sampling distance (GSD, metres per pixel) is an input. A footprint
(:func:`tile_footprint`) is a square of ``width x height`` pixels of ``gsd_m`` metres centred on
that point in the **local WGS84 UTM zone** (EPSG:326NN north of the equator, 327NN south; the
standard 6-degree zones, without the Norway/Svalbard exceptions). UTM rather than EPSG:4326
because the GSD is metric: in UTM the pixels are square metres with a distortion below 0.1 %
inside a zone, while EPSG:4326 pixels would be a latitude-dependent number of degrees, not
square on the ground. Above 84° N or below 80° S UTM is undefined and a ValueError is raised.

Images are (C, H, W): uint8, or floats in [-1, 1] (model space, see :func:`to_uint8`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.warp import transform as warp_points
from sciflow_domains.satellite.climate import CANONICAL_UNITS, FIELDS

BAND_NAMES = ("red", "green", "blue")


# -- images -----------------------------------------------------------------------------------
def read_tile(path: str | os.PathLike) -> np.ndarray:
    """An RGB PNG (or any image PIL reads) as (H, W, 3) uint8."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tile image not found: {path}")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def square_crops(image: np.ndarray, size: int, crops_per_side: int = 1) -> np.ndarray:
    """Cut the central square of an (H, W, 3) uint8 tile into k x k crops, each area-averaged to
    ``size`` px: → (k*k, 3, size, size) uint8, crops in row-major order (north-west first)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image: expected (H, W, 3) uint8, got {image.shape} {image.dtype}")
    k = crops_per_side
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"crops_per_side: expected a positive int, got {k!r}")
    side = min(image.shape[:2]) // k * k
    if side < k * size:
        raise ValueError(
            f"size: {k}x{k} crops of {size} px need a tile of at least {k * size} px, "
            f"got {image.shape[:2]}"
        )
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    step = side // k
    crops = []
    for r in range(k):
        for c in range(k):
            y, x = top + r * step, left + c * step
            crop = Image.fromarray(image[y : y + step, x : x + step])
            crops.append(np.asarray(crop.resize((size, size), Image.Resampling.BOX)))
    return np.stack(crops).transpose(0, 3, 1, 2).copy()


def to_uint8(image) -> np.ndarray:
    """(C, H, W) uint8 from uint8, or from floats in [-1, 1] (clipped, rounded)."""
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if array.ndim != 3:
        raise ValueError(f"image: expected (C, H, W), got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"image: expected uint8 or floats in [-1, 1], got {array.dtype}")
    return np.round((np.clip(array, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def write_png(path: str | os.PathLike, image) -> Path:
    """Write a (3, H, W) image (uint8 or [-1, 1] floats) as an RGB PNG; returns the path."""
    array = to_uint8(image)
    if array.shape[0] != 3:
        raise ValueError(f"image: expected 3 channels (RGB), got {array.shape[0]}")
    path = Path(path)
    Image.fromarray(array.transpose(1, 2, 0)).save(path)
    return path


# -- georeferencing ---------------------------------------------------------------------------
def utm_crs(lat: float, lon: float) -> CRS:
    """The WGS84 UTM zone CRS of a point (EPSG:326NN north, 327NN south)."""
    if not (-80.0 <= lat <= 84.0):
        raise ValueError(f"lat: UTM covers -80..84 degrees, got {lat!r}")
    if not (-180.0 <= lon <= 180.0):
        raise ValueError(f"lon: expected degrees in [-180, 180], got {lon!r}")
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


@dataclass(frozen=True)
class Footprint:
    """Where a tile's pixels lie: ``crs`` (UTM), north-up affine ``transform`` (pixel corner →
    metres), ``width`` x ``height`` pixels."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre easting (W,) and northing (H,) in metres."""
        t = self.transform
        return t.c + t.a * (np.arange(self.width) + 0.5), t.f + t.e * (np.arange(self.height) + 0.5)

    def lonlat(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre longitude and latitude, each (H, W) degrees."""
        x, y = np.meshgrid(*self.xy())
        lon, lat = warp_points(self.crs, "EPSG:4326", x.ravel(), y.ravel())
        shape = (self.height, self.width)
        return np.reshape(lon, shape), np.reshape(lat, shape)


def tile_footprint(lat: float, lon: float, width: int, height: int, gsd_m: float) -> Footprint:
    """The UTM footprint of a ``width`` x ``height`` tile of ``gsd_m`` m pixels centred at
    (lat, lon) degrees (see the module docstring)."""
    if not gsd_m > 0:
        raise ValueError(f"gsd_m: expected a positive number of metres, got {gsd_m!r}")
    crs = utm_crs(lat, lon)
    (east,), (north,) = warp_points("EPSG:4326", crs, [lon], [lat])
    origin = Affine.translation(east - width * gsd_m / 2, north + height * gsd_m / 2)
    return Footprint(crs, origin @ Affine.scale(gsd_m, -gsd_m), width, height)


def crop_centres(
    lat: float, lon: float, tile_px: int, gsd_m: float, crops_per_side: int
) -> np.ndarray:
    """(k*k, 2) latitude, longitude of the crops of :func:`square_crops` of a ``tile_px`` tile."""
    k = crops_per_side
    step = tile_px // k
    coarse = tile_footprint(lat, lon, k, k, gsd_m * step)
    lon_c, lat_c = coarse.lonlat()
    return np.stack([lat_c.ravel(), lon_c.ravel()], axis=1)


def write_geotiff(
    path: str | os.PathLike,
    image,
    lat: float,
    lon: float,
    gsd_m: float,
    tags: dict | None = None,
) -> Footprint:
    """Write a (C, H, W) image (uint8 or [-1, 1] floats) as a georeferenced uint8 GeoTIFF.

    The footprint is :func:`tile_footprint` of the centre (lat, lon) and ``gsd_m``; band
    descriptions are red/green/blue for 3 bands. ``tags`` (e.g. the date) are stored with the
    centre and GSD. Returns the footprint.
    """
    import rasterio

    array = to_uint8(image)
    bands, height, width = array.shape
    footprint = tile_footprint(lat, lon, width, height, gsd_m)
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=bands,
        dtype="uint8",
        crs=footprint.crs,
        transform=footprint.transform,
        photometric="RGB" if bands == 3 else "MINISBLACK",
    )
    with rasterio.open(Path(path), "w", **profile) as dst:
        dst.write(array)
        meta = {"centre_lat": lat, "centre_lon": lon, "gsd_m": gsd_m, **(tags or {})}
        dst.update_tags(**{k: str(v) for k, v in meta.items()})
        if bands == 3:
            dst.descriptions = BAND_NAMES
    return footprint


def series_to_xarray(
    images,
    dates: Sequence[str],
    lat: float,
    lon: float,
    gsd_m: float,
    climate: np.ndarray | None = None,
) -> xr.Dataset:
    """A time series of one tile as an xarray Dataset.

    Args:
        images: (T, 3, H, W) uint8 or [-1, 1] floats. dates: T ``"YYYY-MM"`` strings.
        lat, lon, gsd_m: the tile centre and pixel size (footprint as :func:`tile_footprint`).
        climate: optional (T, 3) temperature, precipitation, radiation in canonical units.

    Returns a Dataset with ``image`` (time, y, x, band) uint8, coordinates ``time``
    (datetime64, first day of each month), ``y``/``x`` (UTM pixel-centre northing/easting, m)
    and ``band`` (red, green, blue), the CRS in ``attrs["crs"]``, and with ``climate`` one
    (time,) variable per field carrying its ``units``.
    """
    frames = np.stack([to_uint8(frame) for frame in images])
    if len(frames) != len(dates) or frames.shape[1] != 3:
        raise ValueError(
            f"images/dates: expected (T, 3, H, W) images and T dates, got {frames.shape} and "
            f"{len(dates)} dates"
        )
    footprint = tile_footprint(lat, lon, frames.shape[3], frames.shape[2], gsd_m)
    x, y = footprint.xy()
    coords = {
        "time": np.array([f"{d[:7]}-01" for d in dates], dtype="datetime64[ns]"),
        "y": y,
        "x": x,
        "band": list(BAND_NAMES),
    }
    data = {"image": (("time", "y", "x", "band"), frames.transpose(0, 2, 3, 1))}
    if climate is not None:
        climate = np.asarray(climate, dtype=np.float64)
        if climate.shape != (len(dates), len(FIELDS)):
            raise ValueError(f"climate: expected ({len(dates)}, 3), got {climate.shape}")
        for i, name in enumerate(FIELDS):
            data[name] = xr.Variable("time", climate[:, i], {"units": CANONICAL_UNITS[name]})
    attrs = {"crs": footprint.crs.to_string(), "centre_lat": lat, "centre_lon": lon, "gsd_m": gsd_m}
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    ds["x"].attrs["units"] = ds["y"].attrs["units"] = "m"
    return ds
