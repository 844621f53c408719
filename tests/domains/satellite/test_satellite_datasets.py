"""Reading the EcoMapper layout: records, land cover, climate fields, error messages."""

from __future__ import annotations

import json

import pytest
from sciflow_domains.satellite.datasets import (
    LANDCOVER_CLASSES,
    landcover_id,
    location_records,
    read_record,
    scan_ecomapper,
)


def test_scan_reads_every_month_with_its_fields(ecomapper_root, layout):
    records = scan_ecomapper(ecomapper_root)
    assert len(records) == 36
    assert {r.location_id for r in records} == set(layout.LOCATIONS)
    by_key = {r.key: r for r in records}
    for location, (period, landcover, centre, _) in layout.LOCATIONS.items():
        rec = by_key[(location, int(period[:4]), 7)]
        assert (rec.lat, rec.lon) == tuple(centre)
        assert rec.landcover == landcover_id(landcover)
        assert rec.date == f"{period[:4]}-07"
        t, p, r = layout.climate_of(location, 7)
        assert (rec.climate.temperature, rec.climate.precipitation) == pytest.approx((t, p))
        assert rec.climate.radiation == pytest.approx(r)
        assert rec.image_path.is_file()
    assert by_key[("10", 2019, 7)].climate.labels == ("C", "mm", "kWh/m2")
    assert by_key[("10", 2019, 7)].address == "Somewhere"


def test_test_batch_series_has_no_climate(ecomapper_root):
    series = location_records("40", ecomapper_root)
    assert [r.date for r in series][:2] == ["2017-01", "2017-02"] and len(series) == 14
    assert all(r.climate is None for r in series)
    assert series[13].month_index - series[0].month_index == 13


def test_landcover_names_and_aliases():
    assert len(LANDCOVER_CLASSES) == 17
    assert landcover_id("Barren or Sparsely Vegetated") == LANDCOVER_CLASSES.index("Barren")
    assert landcover_id("Evergreen Needleleaf Forest") == 0
    assert landcover_id("savannas") == landcover_id("Savanna") == 8
    assert landcover_id("Cropland/Natural Vegetation Mosaic") == 13
    with pytest.raises(ValueError, match="unknown land cover 'Moon dust'"):
        landcover_id("Moon dust")


def _edit(path, **changes):
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (dict(center_coordinates=None), r"field 'center_coordinates' is missing"),
        (dict(type=None), r"field 'type' is missing"),
        (dict(date="2019-13"), r"field 'date' must be 'YYYY-MM', got '2019-13'"),
        (dict(cloud_coverage=1.5), r"field 'cloud_coverage' must be a number in \[0.0, 1.0\]"),
        (dict(center_coordinates=[95.0, 3.0]), r"center_coordinates\[0\] \(lat\).*got 95.0"),
        (dict(type="Lava"), r"field 'type': unknown land cover 'Lava'"),
    ],
)
def test_record_errors_name_file_field_and_value(tmp_path, layout, changes, match):
    path = _edit(layout.write_month(tmp_path, "10", 2019, 5), **changes)
    with pytest.raises(ValueError, match=match) as info:
        read_record(path)
    assert str(path) in str(info.value)


def test_unparseable_climate_string_names_the_field(tmp_path, layout):
    path = layout.write_month(tmp_path, "10", 2019, 5)
    text = "The average temperature over the last month was warm with lots of rain"
    _edit(path, caption_info={"climate_str_1": text})
    with pytest.raises(ValueError, match=r"field 'caption_info.climate_str_1'.*no temperature"):
        read_record(path)


def test_incomplete_climate_values_and_required_climate(tmp_path, layout):
    path = _edit(layout.write_month(tmp_path, "20", 2019, 5), average_rad=None)
    with pytest.raises(ValueError, match=r"climate field\(s\) \['average_rad'\] missing"):
        read_record(path)
    bare = _edit(layout.write_month(tmp_path, "30", 2021, 5), caption_info=None)
    assert read_record(bare).climate is None
    with pytest.raises(ValueError, match="no climate"):
        read_record(bare, require_climate=True)


def test_missing_image_and_duplicate_months(tmp_path, layout):
    path = layout.write_month(tmp_path, "10", 2019, 5)
    path.with_suffix(".png").unlink()
    with pytest.raises(FileNotFoundError, match="tile image"):
        read_record(path)
    root = tmp_path / "dup"
    layout.write_month(root, "10", 2019, 5)
    copy = root / "2017-2018" / "10"
    copy.mkdir(parents=True)
    for suffix in (".json", ".png"):
        src = root / "2019-2020" / "10" / f"10_2019-05{suffix}"
        (copy / src.name).write_bytes(src.read_bytes())
    with pytest.raises(ValueError, match="location 10 2019-05 is also in"):
        scan_ecomapper(root)


def test_missing_root_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="SCIFLOW_DATA_DIR"):
        scan_ecomapper(tmp_path / "nothing")
