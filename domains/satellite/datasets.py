"""The EcoMapper folder layout: tile records, land-cover classes, scanning, location series.

Layout (the example set under ``$SCIFLOW_DATA_DIR/climate/ecomapper_example``; the full dataset
from mediaTUM has the same per-location folders)::

    <root>/<period>/<location_id>/<location_id>_<YYYY-MM>.json   metadata of one month
    <root>/<period>/<location_id>/<location_id>_<YYYY-MM>.png    512 px Sentinel-2 RGB tile

JSON fields read (others are ignored):

=====================  =================================================================
``type``               land cover, an IGBP class name (:data:`LANDCOVER_CLASSES`)
``date``               ``"YYYY-MM"`` (or ``"YYYY-MM-DD"``)
``center_coordinates`` ``[lat, lon]``, WGS84 degrees
``cloud_coverage``     fraction of cloudy pixels, 0..1
climate                ``average_temp``/``average_prep``/``average_rad`` numbers when present,
                       else the sentence at ``climate_key`` (default
                       ``caption_info.climate_str_1``); see :mod:`.climate` for units
=====================  =================================================================

``Test-Batch`` folders carry no climate: their records have ``climate=None``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sciflow_domains.satellite.climate import Climate, climate_from_values, parse_climate_string

from sciflow.data.registry import data_dir

#: The example set relative to ``$SCIFLOW_DATA_DIR``.
ECOMAPPER_EXAMPLE = "climate/ecomapper_example"
#: The 72-month test location of the example set (folder ``Test-Batch/4451``).
EXAMPLE_SERIES_LOCATION = "4451"

#: IGBP land-cover classes (MODIS MCD12Q1 type 1) in their official order; id = MODIS value - 1.
LANDCOVER_CLASSES = (
    "Evergreen Needleleaf Forests",
    "Evergreen Broadleaf Forests",
    "Deciduous Needleleaf Forests",
    "Deciduous Broadleaf Forests",
    "Mixed Forests",
    "Closed Shrublands",
    "Open Shrublands",
    "Woody Savannas",
    "Savannas",
    "Grasslands",
    "Permanent Wetlands",
    "Croplands",
    "Urban and Built-up Lands",
    "Cropland/Natural Vegetation Mosaics",
    "Permanent Snow and Ice",
    "Barren",
    "Water Bodies",
)
_LANDCOVER_ALIASES = {
    "barren or sparsely vegetated": "Barren",
    "urban and built-up": "Urban and Built-up Lands",
    "water": "Water Bodies",
}
_DEFAULT_CLIMATE_KEY = "caption_info.climate_str_1"
#: Numeric climate fields of EcoMapper's full-dataset records, with their unit labels.
_VALUE_KEYS = {
    "temperature": "average_temp",
    "precipitation": "average_prep",
    "radiation": "average_rad",
}
_VALUE_LABELS = {"temperature": "C", "precipitation": "mm", "radiation": "kWh/m2"}
_DATE = re.compile(r"(\d{4})-(\d{2})(?:-\d{2})?")


def _landcover_key(name: str) -> str:
    """Lower case, singular words: "Savannas" and "savanna" share a key."""
    words = re.split(r"[\s/]+", name.strip().lower())
    return " ".join(w[:-1] if w.endswith("s") and len(w) > 3 else w for w in words)


_LANDCOVER_IDS = {_landcover_key(n): i for i, n in enumerate(LANDCOVER_CLASSES)}
_LANDCOVER_IDS |= {
    _landcover_key(a): LANDCOVER_CLASSES.index(n) for a, n in _LANDCOVER_ALIASES.items()
}


def landcover_id(name: str, source: str = "type") -> int:
    """Index of an IGBP class name in :data:`LANDCOVER_CLASSES` (plural/singular and EcoMapper's
    spellings accepted); an unknown name raises ValueError naming ``source``."""
    key = _landcover_key(name) if isinstance(name, str) else None
    if key not in _LANDCOVER_IDS:
        raise ValueError(f"{source}: unknown land cover {name!r}; known: {list(LANDCOVER_CLASSES)}")
    return _LANDCOVER_IDS[key]


@dataclass(frozen=True)
class TileRecord:
    """One monthly tile of one location.

    ``landcover`` is the id into :data:`LANDCOVER_CLASSES`; ``cloud`` the cloudy fraction (0..1);
    ``climate`` None when the record has none; ``address`` the place name when given.
    """

    location_id: str
    year: int
    month: int
    lat: float
    lon: float
    landcover: int
    cloud: float
    climate: Climate | None
    image_path: Path
    json_path: Path
    address: str | None = None

    @property
    def date(self) -> str:
        """``"YYYY-MM"``."""
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def month_index(self) -> int:
        """Months since year 0: differences are lags in months."""
        return self.year * 12 + self.month - 1

    @property
    def key(self) -> tuple[str, int, int]:
        return self.location_id, self.year, self.month


def _lookup(meta: dict, dotted: str):
    value = meta
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _number(value, field: str, source: Path, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ValueError(
            f"{source}: field {field!r} must be a number in [{lo}, {hi}], got {value!r}"
        )
    return float(value)


def _climate(meta: dict, path: Path, climate_key: str) -> Climate | None:
    present = [k for k in _VALUE_KEYS.values() if k in meta]
    if present:
        missing = sorted(set(_VALUE_KEYS.values()) - set(present))
        if missing:
            raise ValueError(f"{path}: climate field(s) {missing} missing (have {present})")
        values = {q: meta[k] for q, k in _VALUE_KEYS.items()}
        return climate_from_values(values, _VALUE_LABELS, str(path))
    text = _lookup(meta, climate_key)
    if text is None:
        return None
    return parse_climate_string(text, f"{path} field {climate_key!r}")


def read_record(
    json_path: str | os.PathLike,
    location_id: str | None = None,
    climate_key: str = _DEFAULT_CLIMATE_KEY,
    require_climate: bool = False,
) -> TileRecord:
    """Parse one metadata JSON (fields in the module docstring) into a :class:`TileRecord`.

    ``location_id`` defaults to the parent folder's name; the image is the same path with
    ``.png``. Raises ValueError naming the file, the field and the value for a missing or
    malformed field (and for missing climate with ``require_climate``), FileNotFoundError for a
    missing PNG.
    """
    path = Path(json_path)
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    for field in ("type", "date", "center_coordinates", "cloud_coverage"):
        if field not in meta:
            raise ValueError(f"{path}: field {field!r} is missing (fields: {sorted(meta)})")
    date = meta["date"]
    match = _DATE.fullmatch(date) if isinstance(date, str) else None
    if match is None or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"{path}: field 'date' must be 'YYYY-MM', got {date!r}")
    centre = meta["center_coordinates"]
    if not (isinstance(centre, list) and len(centre) == 2):
        raise ValueError(f"{path}: field 'center_coordinates' must be [lat, lon], got {centre!r}")
    lat = _number(centre[0], "center_coordinates[0] (lat)", path, -90.0, 90.0)
    lon = _number(centre[1], "center_coordinates[1] (lon)", path, -180.0, 180.0)
    climate = _climate(meta, path, climate_key)
    if climate is None and require_climate:
        raise ValueError(
            f"{path}: no climate (neither average_temp/_prep/_rad nor field {climate_key!r})"
        )
    image = path.with_suffix(".png")
    if not image.is_file():
        raise FileNotFoundError(f"{path}: its tile image {image} is missing")
    address = _lookup(meta, "caption_info.location_address")
    return TileRecord(
        location_id=str(location_id if location_id is not None else path.parent.name),
        year=int(match[1]),
        month=int(match[2]),
        lat=lat,
        lon=lon,
        landcover=landcover_id(meta["type"], f"{path}: field 'type'"),
        cloud=_number(meta["cloud_coverage"], "cloud_coverage", path, 0.0, 1.0),
        climate=climate,
        image_path=image,
        json_path=path,
        address=address if isinstance(address, str) else None,
    )


def default_root() -> Path:
    """``$SCIFLOW_DATA_DIR/climate/ecomapper_example``."""
    return data_dir() / ECOMAPPER_EXAMPLE


def resolve_root(root: str | os.PathLike | None) -> Path:
    """``root``, or :func:`default_root`; FileNotFoundError with a hint when it is missing."""
    path = default_root() if root is None else Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"EcoMapper folder not found: {path}; set SCIFLOW_DATA_DIR to the folder holding "
            f"{ECOMAPPER_EXAMPLE}/ or pass root="
        )
    return path


def scan_ecomapper(
    root: str | os.PathLike | None = None,
    exclude: tuple[str, ...] | list[str] = ("Test-Batch",),
    require_climate: bool = True,
    climate_key: str = _DEFAULT_CLIMATE_KEY,
) -> list[TileRecord]:
    """Every ``<period>/<location_id>/*.json`` record under ``root`` (periods in ``exclude``
    skipped), sorted by location and date.

    Raises ValueError when a (location, month) appears twice or a location's land cover or
    centre changes between months.
    """
    root = resolve_root(root)
    records = []
    for period in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in exclude):
        for path in sorted(period.glob("*/*.json")):
            records.append(read_record(path, None, climate_key, require_climate))
    if not records:
        raise FileNotFoundError(f"no <period>/<location>/*.json records under {root}")
    return _check_locations(records)


def _check_locations(records: list[TileRecord]) -> list[TileRecord]:
    records = sorted(records, key=lambda r: (r.location_id, r.year, r.month))
    first: dict[str, TileRecord] = {}
    seen: dict[tuple, Path] = {}
    for rec in records:
        if rec.key in seen:
            raise ValueError(f"{rec.json_path}: location {rec.location_id} {rec.date} is also "
                             f"in {seen[rec.key]}")  # fmt: skip
        seen[rec.key] = rec.json_path
        ref = first.setdefault(rec.location_id, rec)
        if ref.landcover != rec.landcover or abs(ref.lat - rec.lat) + abs(ref.lon - rec.lon) > 1e-6:
            raise ValueError(
                f"{rec.json_path}: location {rec.location_id} has land cover/centre "
                f"{LANDCOVER_CLASSES[rec.landcover]!r} ({rec.lat}, {rec.lon}), but "
                f"{ref.json_path} says {LANDCOVER_CLASSES[ref.landcover]!r} ({ref.lat}, {ref.lon})"
            )
    return records


def location_records(
    location_id: str, root: str | os.PathLike | None = None, climate_key=_DEFAULT_CLIMATE_KEY
) -> list[TileRecord]:
    """All months of one location (any period folder, Test-Batch included), sorted by date."""
    root = resolve_root(root)
    paths = sorted(root.glob(f"*/{location_id}/*.json"))
    if not paths:
        raise FileNotFoundError(f"location_id: no folder */{location_id}/ with JSON under {root}")
    return _check_locations([read_record(p, str(location_id), climate_key) for p in paths])
