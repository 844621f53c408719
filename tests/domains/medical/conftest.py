"""Shared fixtures of the medical tests: small SynthProg configs, the real-data folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from sciflow_domains.medical.datasets import MS_PAIRS_FILE, ms_dir
from sciflow_domains.medical.synthprog import SynthProgConfig
from sciflow_domains.medical.synthprog.backgrounds import MNI_FILES, RETINA_FILE, backgrounds_dir


@pytest.fixture
def small_config():
    """``small_config(kind, **fields)``: a SynthProg config on the built-in background (so the
    tests run the same with or without $SCIFLOW_DATA_DIR), 6 subjects at 32 px by default."""

    def make(kind: str = "ga", **fields) -> SynthProgConfig:
        values = {"n_subjects": 6, "resolution": 32, "background": "builtin", **fields}
        return SynthProgConfig(kind=kind, **values)

    return make


@pytest.fixture
def no_data_dir(tmp_path, monkeypatch) -> Path:
    """Point SCIFLOW_DATA_DIR at an empty folder (as in CI without data)."""
    monkeypatch.setenv("SCIFLOW_DATA_DIR", str(tmp_path / "empty"))
    return tmp_path / "empty"


@pytest.fixture(scope="session")
def ms_root() -> Path:
    """The open MS data folder under $SCIFLOW_DATA_DIR; skips when absent."""
    folder = ms_dir()
    if not (folder / MS_PAIRS_FILE).is_file():
        pytest.skip(
            "real MS data not found (set SCIFLOW_DATA_DIR to the folder holding "
            "medical/open_ms_longitudinal to run the real-data tests)"
        )
    return folder


@pytest.fixture(scope="session")
def real_backgrounds() -> Path:
    """The real SynthProg backgrounds folder; skips when absent."""
    folder = backgrounds_dir()
    if not all((folder / f).is_file() for f in [RETINA_FILE, *MNI_FILES.values()]):
        pytest.skip(
            "real SynthProg backgrounds not found (set SCIFLOW_DATA_DIR to the folder holding "
            "medical/backgrounds to run this test)"
        )
    return folder
