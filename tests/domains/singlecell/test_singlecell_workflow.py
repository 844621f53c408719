"""Population flows through the CLI: fit on letters and on AnnData, reload the checkpoint as a
`SingleCellSampler`, push whole control populations forward, and write AnnData that keeps the
source cells' obs metadata."""

from __future__ import annotations

from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sciflow_domains.singlecell.letters import LettersConfig, make_letters
from sciflow_domains.singlecell.sampler import PopulationSamples, SingleCellSampler

from sciflow.api import load_sampler
from sciflow.cli import main

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "configs" / "singlecell" / "smoke.yaml"


def _fit(config: dict, tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path), "--trainer.default_root_dir", str(tmp_path / "run")])
    return next((tmp_path / "run").rglob("*.ckpt"))


def test_letters_fit_then_sample_a_population(tmp_path):
    config = yaml.safe_load(SMOKE.read_text())
    sampler = load_sampler(_fit(config, tmp_path))
    assert isinstance(sampler, SingleCellSampler)
    assert sampler.info["populations"][:2] == ["A00", "A01"]
    letters = LettersConfig(**config["data"]["init_args"]["letters"])
    pair = make_letters(letters).splits["test"][0]
    res = sampler.sample(source={pair.population: pair.source}, num_steps=5, seed=3)
    assert isinstance(res, PopulationSamples)
    assert res.samples["x"].shape == pair.source.shape
    assert torch.equal(res.source, torch.from_numpy(pair.source))
    assert res.populations == [pair.population] and res.condition == "denoise"
    again = sampler.sample(source={pair.population: pair.source}, num_steps=5, seed=3)
    assert torch.equal(res.samples["x"], again.samples["x"])
    written = res.write(tmp_path / "out")
    assert [p.name for p in written] == ["samples.npz", "predicted.h5ad"]
    assert np.load(written[0])["x"].shape == pair.source.shape
    with pytest.raises(ValueError, match=r"expected \(cells >= 1, 2\)"):
        sampler.sample(source=np.zeros((5, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="not one of the model's conditions"):
        sampler.sample(source=pair.source, condition="drug")
    with pytest.raises(TypeError, match="source: expected an AnnData"):
        sampler.sample(source=[1, 2])


def test_anndata_fit_sample_and_round_trip_keeps_obs(tmp_path, make_adata):
    adata = make_adata(num_populations=5, cells=40, genes=12, treatments=("drug", "dmso"))
    adata.write_h5ad(tmp_path / "cells.h5ad")
    config = yaml.safe_load(SMOKE.read_text())
    config["model"]["init_args"]["engine"]["init_args"]["components"]["x"]["init_args"][
        "manifold"]["init_args"]["dim"] = 4  # fmt: skip
    config["model"]["init_args"]["network"]["init_args"].update(
        mode="cgfm", num_conditions=2, num_train_populations=4
    )
    config["data"]["init_args"] = {
        "path": str(tmp_path / "cells.h5ad"),
        "population_key": "population",
        "condition_key": "condition",
        "control": "ctrl",
        "preprocess": {"normalize_total": True, "log1p": True, "n_pcs": 4},
        "test_populations": ["p4"],
        "min_cells": 10,
        "cells_per_population": 16,
        "populations_per_batch": 4,
    }
    sampler = load_sampler(_fit(config, tmp_path))
    assert sampler.info["conditions"] == ["dmso", "drug"]
    assert sampler.info["features"] == ["PC1", "PC2", "PC3", "PC4"]
    controls = adata[adata.obs["condition"] == "ctrl"].copy()
    res = sampler.sample(source=controls, condition="drug", num_steps=4)
    assert res.populations == ["p0", "p1", "p2", "p3", "p4"]
    predicted = res.to_anndata()
    assert predicted.shape == (controls.n_obs, 4)
    assert list(predicted.obs["source_cell"]) == list(controls.obs_names)
    assert set(predicted.obs["condition"]) == {"drug"}
    assert list(predicted.obs["batch"]) == list(controls.obs["batch"])
    assert list(predicted.obs["population"].astype(str)) == list(controls.obs["population"])
    path = res.write(tmp_path / "out")[1]
    again = anndata.read_h5ad(path)
    pd.testing.assert_frame_equal(again.obs.astype(str), predicted.obs.astype(str))
    assert np.array_equal(again.X, predicted.X)
    assert np.array_equal(again.layers["source"], predicted.layers["source"])
    original = res.to_anndata(original_scale=True)  # PCA reconstruction in log1p space
    assert original.shape == (controls.n_obs, 12)
    missing = controls[:, 1:].copy()
    with pytest.raises(ValueError, match="lacks 1 feature"):
        sampler.sample(source=missing, condition="drug")
    with pytest.raises(ValueError, match="population_key: obs column 'donor' not found"):
        sampler.sample(source=controls, condition="drug", population_key="donor")
    with pytest.raises(ValueError, match="several conditions"):
        sampler.sample(source=controls)


def test_fit_refuses_a_network_sized_for_other_data(tmp_path):
    config = yaml.safe_load(SMOKE.read_text())
    config["model"]["init_args"]["network"]["init_args"].update(
        mode="cgfm", num_train_populations=7
    )
    with pytest.raises(ValueError, match="num_train_populations: 6"):
        _fit(config, tmp_path)
