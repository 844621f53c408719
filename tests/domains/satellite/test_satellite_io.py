"""Tile files: PNG crops, GeoTIFF georeferencing re-read by rasterio, the xarray series."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.warp import transform as warp_points
from sciflow_domains.satellite.io import (
    crop_centres,
    read_tile,
    series_to_xarray,
    square_crops,
    tile_footprint,
    to_uint8,
    utm_crs,
    write_geotiff,
    write_png,
)


def test_square_crops_area_average_in_row_major_order():
    image = np.zeros((10, 8, 3), dtype=np.uint8)  # the central 8x8 square is rows 1..8
    image[1:5, 0:4] = 40  # north-west quadrant
    image[5:9, 4:8] = 200  # south-east quadrant
    crops = square_crops(image, size=2, crops_per_side=2)
    assert crops.shape == (4, 3, 2, 2) and crops.dtype == np.uint8
    assert (crops[0] == 40).all() and (crops[3] == 200).all() and (crops[1] == 0).all()
    assert (square_crops(image, size=1)[0] == round((16 * 40 + 16 * 200) / 64)).all()
    with pytest.raises(ValueError, match="need a tile of at least 16 px"):
        square_crops(image, size=8, crops_per_side=2)


def test_png_round_trip_from_model_space(tmp_path):
    image = torch.linspace(-1, 1, 3 * 4 * 5).reshape(3, 4, 5)
    path = write_png(tmp_path / "x.png", image)
    back = read_tile(path)
    assert back.shape == (4, 5, 3)
    np.testing.assert_array_equal(back.transpose(2, 0, 1), to_uint8(image))
    assert to_uint8(image)[0, 0, 0] == 0 and to_uint8(image)[-1, -1, -1] == 255
    with pytest.raises(TypeError, match="uint8 or floats"):
        to_uint8(np.zeros((3, 2, 2), dtype=np.int32))


@pytest.mark.parametrize(
    ("lat", "lon", "epsg"),
    [(48.25, 26.36, 32635), (-23.11, -63.56, 32720), (0.71, 22.26, 32634), (1.0, 179.9, 32660)],
)
def test_utm_zone(lat, lon, epsg):
    assert utm_crs(lat, lon).to_epsg() == epsg


def test_geotiff_has_the_footprint_transform_and_crs(tmp_path):
    lat, lon, gsd = -23.114, -63.557, 20.0
    image = np.random.default_rng(0).integers(0, 256, size=(3, 16, 16), dtype=np.uint8)
    footprint = write_geotiff(tmp_path / "t.tif", image, lat, lon, gsd, {"date": "2021-07"})
    with rasterio.open(tmp_path / "t.tif") as src:
        assert src.crs.to_epsg() == 32720
        assert src.transform == footprint.transform
        assert (src.transform.a, src.transform.e) == (gsd, -gsd)
        np.testing.assert_array_equal(src.read(), image)
        assert src.descriptions == ("red", "green", "blue")
        assert src.tags()["date"] == "2021-07" and float(src.tags()["gsd_m"]) == gsd
        # the raster's centre is the requested point
        centre_x, centre_y = src.xy(8, 8, offset="ul")
        (c_lon,), (c_lat,) = warp_points(src.crs, "EPSG:4326", [centre_x], [centre_y])
        assert (c_lat, c_lon) == pytest.approx((lat, lon), abs=1e-9)
        assert src.bounds.right - src.bounds.left == pytest.approx(16 * gsd)


def test_crop_centres_follow_the_footprint():
    centres = crop_centres(48.25, 26.36, tile_px=512, gsd_m=20.0, crops_per_side=2)
    assert centres.shape == (4, 2)
    assert centres[:, 0].mean() == pytest.approx(48.25, abs=1e-4)
    assert centres[0, 0] > centres[2, 0] and centres[1, 1] > centres[0, 1]  # NW first, row-major
    # neighbouring 256 px crops of 20 m are 5.12 km apart: ≈ 0.046 degrees of latitude
    assert centres[0, 0] - centres[2, 0] == pytest.approx(5120 / 111_200, rel=0.01)


def test_series_to_xarray_dims_and_coordinates():
    images = np.zeros((3, 3, 4, 4), dtype=np.uint8)
    images[1, 0] = 7
    climate = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    ds = series_to_xarray(images, ["2019-01", "2019-02", "2019-03"], 0.71, 22.26, 20.0, climate)
    assert ds["image"].dims == ("time", "y", "x", "band")
    assert ds["image"].shape == (3, 4, 4, 3)
    assert int(ds["image"].sel(time="2019-02", band="red").max()) == 7
    assert ds.attrs["crs"] == "EPSG:32634"
    assert float(ds["temperature"][2]) == 7.0 and ds["radiation"].attrs["units"] == "MJ/m2/day"
    footprint = tile_footprint(0.71, 22.26, 4, 4, 20.0)
    np.testing.assert_allclose(ds["x"], footprint.xy()[0])
    assert float(ds["y"][0] - ds["y"][1]) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="T dates"):
        series_to_xarray(images, ["2019-01"], 0.71, 22.26, 20.0)


def test_georeferencing_errors():
    with pytest.raises(ValueError, match="lat: UTM covers -80..84 degrees, got 86.0"):
        utm_crs(86.0, 10.0)
    with pytest.raises(ValueError, match="gsd_m: expected a positive number of metres, got 0"):
        tile_footprint(10.0, 10.0, 4, 4, 0)
    with pytest.raises(ValueError, match=r"image: expected \(H, W, 3\) uint8"):
        square_crops(np.asarray(Image.new("L", (4, 4))), 2)
