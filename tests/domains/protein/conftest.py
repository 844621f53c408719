"""Shared fixtures of the protein tests."""

from pathlib import Path

import pytest
from sciflow_domains.protein.data import default_npz_path


@pytest.fixture(scope="session")
def real_npz() -> Path:
    """The bundled real backbones under $SCIFLOW_DATA_DIR/protein; skips when absent."""
    path = default_npz_path()
    if not path.is_file():
        pytest.skip(f"real protein data not found at {path} (set SCIFLOW_DATA_DIR)")
    return path
