"""Shared fixtures of the crystal tests: temporary parse caches, CSV writers, real-data paths."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from sciflow_domains.crystal.data import find_split


def _write_cdvae_csv(path: Path, rows: list[dict[str, object]], columns: list[str]) -> Path:
    """Write ``rows`` as a CDVAE-style CSV (leading unnamed index column, then ``columns``),
    gzip-compressed when ``path`` ends in ``.gz``."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["", *columns])
    for k, row in enumerate(rows):
        writer.writerow([k, *(row.get(c, "") for c in columns)])
    data = buffer.getvalue().encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch) -> Path:
    """Parsed-data caches of this session go to one temporary folder, not ~/.cache."""
    folder = tmp_path_factory.getbasetemp() / "crystal_cache"
    monkeypatch.setenv("SCIFLOW_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def write_csv() -> Callable[[Path, list[dict], list[str]], Path]:
    """``write_csv(path, rows, columns)`` writes a CDVAE-format CSV (``.gz`` compresses)."""
    return _write_cdvae_csv


@pytest.fixture
def real_split() -> Callable[[str, str], Path]:
    """``real_split(name, split)``: the real file under $SCIFLOW_DATA_DIR, else skip the test."""

    def locate(name: str, split: str) -> Path:
        try:
            return find_split(name, split)
        except FileNotFoundError as err:
            hint = "set SCIFLOW_DATA_DIR to the folder holding crystal/"
            pytest.skip(f"real crystal data absent ({hint}): {err}")

    return locate
