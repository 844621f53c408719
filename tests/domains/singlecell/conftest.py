"""Shared fixtures of the single-cell tests: small synthetic AnnData, the real CyTOF file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sciflow_domains.singlecell.data import default_bodenmiller_path


def _make_adata(
    num_populations: int = 6,
    cells: int = 40,
    genes: int = 30,
    treatments: tuple[str, ...] = ("drug",),
    seed: int = 0,
):
    """Poisson counts: populations ``p0``…, conditions ``ctrl`` + ``treatments``, ``cells`` cells
    per (population, condition), rates depending on population and condition; a ``counts``
    layer (copy of X) and an ``X_emb`` obsm (5-D)."""
    import anndata

    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 2.0, size=genes)
    blocks, pops, conds = [], [], []
    for p in range(num_populations):
        pop_factor = rng.gamma(4.0, 0.25, size=genes)
        for c, cond in enumerate(("ctrl", *treatments)):
            shift = np.ones(genes)
            shift[c * 3 : c * 3 + 3] = 4.0  # each treatment raises its own three genes
            blocks.append(rng.poisson(base * pop_factor * shift, size=(cells, genes)))
            pops += [f"p{p}"] * cells
            conds += [cond] * cells
    x = np.concatenate(blocks).astype(np.float32)
    obs = pd.DataFrame(
        {
            "population": pd.Categorical(pops),
            "condition": pd.Categorical(conds),
            "batch": "b0",
        },
        index=[f"cell{i}" for i in range(len(x))],
    )
    adata = anndata.AnnData(x, obs=obs)
    adata.var_names = [f"g{i}" for i in range(genes)]
    adata.layers["counts"] = x.copy()
    adata.obsm["X_emb"] = rng.normal(size=(len(x), 5)).astype(np.float32)
    return adata


@pytest.fixture
def make_adata() -> Callable:
    """``make_adata(num_populations=6, cells=40, genes=30, treatments=("drug",), seed=0)``."""
    return _make_adata


@pytest.fixture(scope="session")
def bodenmiller_path() -> Path:
    """The Bodenmiller 2012 BCR-XL h5ad under $SCIFLOW_DATA_DIR; skips when absent."""
    path = default_bodenmiller_path()
    if not path.is_file():
        pytest.skip(
            f"real single-cell data not found at {path} "
            "(set SCIFLOW_DATA_DIR to the folder holding singlecell/ to run the real-data tests)"
        )
    return path
