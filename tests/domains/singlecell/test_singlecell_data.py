"""AnnData population pairs: errors, population splits, train-only preprocessing, batches."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import torch
from sciflow_domains.singlecell.data import (
    STATE_KEY,
    PopulationBatchSampler,
    PopulationData,
    PopulationDataModule,
    PopulationPair,
    PopulationPairDataset,
    collate_populations,
    load_populations,
)
from sciflow_domains.singlecell.letters import LettersConfig
from sciflow_domains.singlecell.preprocess import PreprocessConfig, Preprocessor

from sciflow.engine import Engine, FlowComponent
from sciflow.manifolds.euclidean import Euclidean

KEYS = dict(population_key="population", condition_key="condition", control="ctrl")
SMALL_LETTERS = LettersConfig(
    train_letters="ABC", val_letters="X", test_letters="Y", num_rotations=2, num_heldout_rotations=2
)


def load(adata, **kwargs) -> PopulationData:
    return load_populations(adata, **{**KEYS, "min_cells": 10, **kwargs})


# --- errors ---------------------------------------------------------------------------------


def test_missing_obs_column_names_it_and_lists_the_available_ones(make_adata):
    adata = make_adata()
    with pytest.raises(ValueError, match=r"'donor' not found.*\['population', 'condition'"):
        load(adata, population_key="donor")
    with pytest.raises(ValueError, match="condition_key: obs column 'treatment' not found"):
        load(adata, condition_key="treatment")


def test_unknown_control_or_treatment_lists_the_labels_present(make_adata):
    adata = make_adata(treatments=("drug", "other"))
    with pytest.raises(ValueError, match=r"'Reference' not found.*\['ctrl', 'drug', 'other'\]"):
        load(adata, control="Reference")
    with pytest.raises(ValueError, match=r"unknown label\(s\) \['BCR-XL'\].*'drug', 'other'"):
        load(adata, treatments=["drug", "BCR-XL"])
    with pytest.raises(ValueError, match="the control label"):
        load(adata, treatments=["ctrl"])


def test_nan_and_inf_are_counted_by_population(make_adata):
    adata = make_adata()
    rows = np.nonzero((adata.obs["population"] == "p2").to_numpy())[0]
    adata.X[rows[0], 0] = np.nan
    adata.X[rows[0], 1] = np.nan
    adata.X[rows[5], 3] = np.inf
    adata.X[np.nonzero((adata.obs["population"] == "p4").to_numpy())[0][1], 2] = -np.inf
    with pytest.raises(
        ValueError, match=r"4 NaN/inf value\(s\) in 3 cell\(s\).*'p2' \(2 cell\(s\)\), 'p4' \(1"
    ):
        load(adata)


def test_nan_in_an_obsm_representation_is_reported(make_adata):
    adata = make_adata()
    adata.obsm["X_emb"][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"'X_emb' holds 1 NaN/inf value\(s\).*'p0'"):
        load(adata, rep="X_emb")


def test_small_groups_are_named(make_adata):
    adata = make_adata()
    drop = (adata.obs["population"] == "p3") & (adata.obs["condition"] == "drug")
    drop &= np.arange(adata.n_obs) % 40 >= 7  # keeps 7 treated cells of p3
    adata = adata[~drop.to_numpy()].copy()
    with pytest.raises(ValueError, match=r"min_cells=10.*'p3'/'drug' \(7\)"):
        load(adata)
    assert load(adata, min_cells=7).dim == 30


def test_population_without_control_or_treated_cells_is_named(make_adata):
    adata = make_adata()
    no_ctrl = (adata.obs["population"] == "p1") & (adata.obs["condition"] == "ctrl")
    with pytest.raises(ValueError, match=r"\['p1'\].*no control cells.*'condition' == 'ctrl'"):
        load(adata[~no_ctrl.to_numpy()].copy())
    no_drug = (adata.obs["population"] == "p5") & (adata.obs["condition"] == "drug")
    with pytest.raises(ValueError, match=r"\['p5'\].*none under the treatment\(s\) \['drug'\]"):
        load(adata[~no_drug.to_numpy()].copy())


def test_unknown_representation_lists_layers_and_obsm(make_adata):
    with pytest.raises(ValueError, match=r"'X_umap'.*\['counts'\].*\['X_emb'\]"):
        load(make_adata(), rep="X_umap")


def test_gene_steps_on_an_embedding_are_refused(make_adata):
    with pytest.raises(ValueError, match="need a gene matrix"):
        load(make_adata(), rep="X_emb", preprocess=PreprocessConfig(log1p=True))


def test_representations_layer_and_obsm(make_adata):
    adata = make_adata()
    adata.layers["counts"] = adata.X * 2
    data = load(adata, rep="counts", test_populations=["p0"])
    pair = data.splits["test"][0]
    rows = np.nonzero(adata.obs_names.isin(pair.source_names))[0]
    np.testing.assert_array_equal(pair.source, adata.X[rows] * 2)
    emb = load(adata, rep="X_emb")
    assert emb.features == ("X_emb_1", "X_emb_2", "X_emb_3", "X_emb_4", "X_emb_5")


# --- preprocessing --------------------------------------------------------------------------

RNA = PreprocessConfig(normalize_total=True, log1p=True, n_top_genes=10, n_pcs=3)


def test_preprocessing_is_fitted_on_training_populations_only(make_adata):
    adata = make_adata(genes=40)
    split = dict(test_populations=["p1", "p4"], val_populations=["p2"])
    before = load(adata, preprocess=RNA, **split)
    changed = adata.copy()
    held_out = changed.obs["population"].isin(["p1", "p2", "p4"]).to_numpy()
    rng = np.random.default_rng(1)
    changed.X[held_out] = rng.poisson(25.0, size=changed.X[held_out].shape)  # other counts
    after = load(changed, preprocess=RNA, **split)
    state, state_after = before.preprocessor.state(), after.preprocessor.state()
    assert state == state_after  # target_sum, HVG mask, PCA mean and components
    for a, b in zip(before.splits["train"], after.splits["train"], strict=True):
        np.testing.assert_array_equal(a.source, b.source)
        np.testing.assert_array_equal(a.target, b.target)
    assert not np.allclose(before.splits["test"][0].target, after.splits["test"][0].target)
    # the same change to a training population does move the fit (the check is sensitive)
    train_changed = adata.copy()
    rows = train_changed.obs["population"].isin(["p0"]).to_numpy()
    train_changed.X[rows] = rng.poisson(25.0, size=train_changed.X[rows].shape)
    moved = load(train_changed, preprocess=RNA, **split).preprocessor
    fitted = before.preprocessor
    same_pca = moved.components.shape == fitted.components.shape and np.allclose(
        moved.components, fitted.components
    )
    assert not (np.array_equal(moved.keep, fitted.keep) and same_pca)


def test_pca_projection_of_training_cells_matches_scanpy(make_adata):
    import scanpy as sc

    adata = make_adata(genes=40)
    pre = Preprocessor(RNA).fit(adata.X, adata.var_names)
    reference = adata.copy()
    sc.pp.normalize_total(reference, target_sum=pre.target_sum)
    sc.pp.log1p(reference)
    sc.pp.highly_variable_genes(reference, n_top_genes=10, flavor="seurat")
    np.testing.assert_array_equal(pre.keep, reference.var["highly_variable"].to_numpy())
    reference = reference[:, pre.keep].copy()
    sc.pp.pca(reference, n_comps=3, random_state=0)
    np.testing.assert_allclose(pre.transform(adata.X), reference.obsm["X_pca"], atol=1e-4)
    assert pre.features == ["PC1", "PC2", "PC3"]


def test_cytof_arcsinh_and_shared_scale_use_training_statistics(make_adata):
    adata = make_adata()
    data = load(adata, preprocess=PreprocessConfig.cytof(5.0), test_populations=["p5"])
    train_rows = ~adata.obs["population"].isin(["p5"]).to_numpy()
    z = np.arcsinh(adata.X / 5.0)
    mean, shared = z[train_rows].mean(0), z[train_rows].std(0).mean()
    pair = data.splits["test"][0]
    rows = np.nonzero(adata.obs_names.isin(pair.target_names))[0]
    np.testing.assert_allclose(pair.target, (z[rows] - mean) / shared, rtol=1e-4, atol=1e-5)
    pre = data.preprocessor
    np.testing.assert_allclose(pre.inverse_transform(pair.target), adata.X[rows], atol=1e-2)
    restored = Preprocessor.from_state(pre.state())
    np.testing.assert_array_equal(restored.transform(adata.X[rows]), pair.target)


def test_preprocess_config_validation():
    with pytest.raises(ValueError, match="scale"):
        PreprocessConfig(scale="minmax")
    with pytest.raises(ValueError, match="does not combine"):
        PreprocessConfig(arcsinh_cofactor=5.0, log1p=True)
    with pytest.raises(ValueError, match="n_pcs"):
        PreprocessConfig(n_pcs=0)


# --- datasets, batches, data module ---------------------------------------------------------


def _pair(name, n_source, n_target, paired=False, d=3, pid=0, offset=0.0):
    rng = np.random.default_rng(pid)
    source = rng.normal(size=(n_source, d)).astype(np.float32) + offset
    target = rng.normal(size=(n_target, d)).astype(np.float32) + offset + 10
    return PopulationPair(name, "drug", source, target, population_id=pid, paired=paired)


def test_batch_layout_is_exact():
    pairs = [_pair("a", 50, 60, pid=0), _pair("b", 70, 40, pid=1, offset=100.0)]
    pairs[1].condition_id = 2
    dataset = PopulationPairDataset(pairs, cells_per_population=8, seed=0)
    batch = collate_populations([dataset[(1, 0, 0)], dataset[(0, 0, 1)]])
    assert set(batch) == {"x", "index", "num_samples", "x0", "cond"} and STATE_KEY == "x"
    assert set(batch["cond"]) == {"source", "source_index", "condition", "population"}
    assert set(batch["x0"]) == {"x"}
    assert batch["x"].shape == batch["x0"]["x"].shape == (16, 3)
    assert batch["x"].dtype == torch.float32
    expected_index = torch.tensor([0] * 8 + [1] * 8)
    assert torch.equal(batch["index"], expected_index)
    assert torch.equal(batch["cond"]["source_index"], expected_index)
    assert batch["num_samples"] == 2
    assert batch["cond"]["source"] is batch["x0"]["x"]
    assert torch.equal(batch["cond"]["condition"], torch.tensor([2, 0]))
    assert torch.equal(batch["cond"]["population"], torch.tensor([1, 0]))
    # rows j*k..(j+1)*k-1 come from pair j: target cells as x, source cells as x0
    for rows, pair in ((slice(0, 8), pairs[1]), (slice(8, 16), pairs[0])):
        x, x0 = batch["x"][rows].numpy(), batch["x0"]["x"][rows].numpy()
        assert all((pair.target == r).all(1).any() for r in x)
        assert all((pair.source == r).all(1).any() for r in x0)
        assert len(np.unique(x, axis=0)) == 8  # without replacement


def test_subsamples_are_seeded_paired_and_with_replacement_only_when_small():
    paired = _pair("p", 30, 30, paired=True)
    dataset = PopulationPairDataset([paired, _pair("small", 5, 20)], cells_per_population=12)
    item = dataset[0]
    rows = [int(np.nonzero((paired.target == r).all(1))[0][0]) for r in item["target"].numpy()]
    np.testing.assert_array_equal(item["source"].numpy(), paired.source[rows])  # true pairs
    assert torch.equal(dataset[(0, 3, 1)]["target"], dataset[(0, 3, 1)]["target"])
    assert not torch.equal(dataset[(0, 3, 1)]["target"], dataset[(0, 4, 1)]["target"])
    small = dataset[1]
    assert small["source"].shape == (12, 3)
    assert len(np.unique(small["source"].numpy(), axis=0)) <= 5
    with pytest.raises(ValueError, match="cells_per_population"):
        PopulationPairDataset([paired], cells_per_population=0)


def test_ot_coupling_is_the_optimal_permutation_of_the_same_draw():
    pairs = [_pair("a", 30, 40)]
    given = PopulationPairDataset(pairs, cells_per_population=6, coupling="given")[(0, 1, 2)]
    ot = PopulationPairDataset(pairs, cells_per_population=6, coupling="ot")[(0, 1, 2)]
    source, target = given["source"].double(), given["target"].double()
    assert torch.equal(ot["source"], given["source"])
    perm = [int(np.nonzero((given["target"] == r).all(1))[0][0]) for r in ot["target"]]
    assert sorted(perm) == list(range(6))  # the same target cells, reordered
    costs = [
        ((source - target[list(p)]) ** 2).sum().item() for p in itertools.permutations(range(6))
    ]
    assert np.isclose(((source - ot["target"].double()) ** 2).sum().item(), min(costs))
    with pytest.raises(ValueError, match="coupling"):
        PopulationDataModule(coupling="sinkhorn")


def test_batch_sampler_visits_every_pair_and_is_seeded():
    sampler = PopulationBatchSampler(10, batch_size=4, shuffle=True, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 and all(len(b) == 4 for b in batches)
    assert {key[0] for b in batches for key in b} == set(range(10))
    assert len({key[2] for b in batches for key in b}) == 12  # distinct draws
    assert list(sampler) == batches
    sampler.set_epoch(1)
    assert list(sampler) != batches and all(key[1] == 1 for key in next(iter(sampler)))
    ordered = list(PopulationBatchSampler(10, batch_size=4, shuffle=False))
    assert [len(b) for b in ordered] == [4, 4, 2]
    assert [key for b in ordered for key in b] == [(i, 0, 0) for i in range(10)]
    assert len(PopulationBatchSampler(3, 4, shuffle=True, num_batches=5)) == 5


def test_datamodule_on_letters_yields_the_layout_and_is_reproducible():
    kwargs = dict(letters=SMALL_LETTERS, cells_per_population=16, populations_per_batch=4, seed=2)
    dm = PopulationDataModule(**kwargs)
    dm.setup()
    sizes = (dm.dim, dm.num_conditions, dm.num_populations, dm.num_train_populations)
    assert sizes == (2, 1, 10, 6)
    batches = list(dm.train_dataloader())
    assert len(batches) == 2
    batch = batches[0]
    assert batch["x"].shape == (64, 2) and batch["num_samples"] == 4
    assert torch.equal(batch["index"], torch.arange(4).repeat_interleave(16))
    assert (batch["cond"]["population"] < 6).all()
    assert torch.equal(batch["cond"]["condition"], torch.zeros(4, dtype=torch.long))
    # letters pairs are true pairs: source = target + N(0, 0.5²) row by row
    noise = batch["x0"]["x"] - batch["x"]
    assert 0.35 < noise.std().item() < 0.65
    again = PopulationDataModule(**kwargs)
    again.setup()
    assert torch.equal(next(iter(again.train_dataloader()))["x"], batch["x"])
    val = list(dm.val_dataloader())
    assert [b["num_samples"] for b in val] == [2]
    assert torch.equal(list(dm.val_dataloader())[0]["x"], val[0]["x"])  # fixed draws
    assert (val[0]["cond"]["population"] >= 6).all()
    test = next(iter(dm.test_dataloader()))
    assert set(test["cond"]["population"].tolist()) == {8, 9}
    no_val = PopulationDataModule(letters=LettersConfig(train_letters="AB", val_letters=""))
    no_val.setup()
    assert no_val.val_dataloader() == []


def test_engine_trains_from_the_source_cells_in_x0():
    """The engine starts the path at x0["x"] (the source cells): a network that outputs the
    pair's true displacement x1 − x0 has zero loss, which it would not from Gaussian draws."""
    pairs = [_pair("a", 40, 40, paired=True, pid=0), _pair("b", 40, 40, paired=True, pid=1)]
    batch = collate_populations([PopulationPairDataset(pairs, 10)[i] for i in (0, 1)])
    engine = Engine({"x": FlowComponent(Euclidean(3), layout="indexed")})
    displacement = batch["x"] - batch["x0"]["x"]

    def network(x_t, t, context):
        assert "x0" not in context and context["cond"]["source"].shape == (20, 3)
        return {"x": displacement}

    loss = engine.loss(network, batch, generator=torch.Generator().manual_seed(0))
    assert loss.total.item() < 1e-10
    gaussian = {k: v for k, v in batch.items() if k != "x0"}
    assert engine.loss(network, gaussian).total.item() > 1.0


def test_datamodule_argument_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="letters: only used without a path"):
        PopulationDataModule(path="x.h5ad", letters=LettersConfig())
    with pytest.raises(ValueError, match="populations_per_batch"):
        PopulationDataModule(populations_per_batch=0)
    monkeypatch.setenv("SCIFLOW_DATA_DIR", str(tmp_path))
    dm = PopulationDataModule(path="missing/file.h5ad")
    with pytest.raises(FileNotFoundError, match="SCIFLOW_DATA_DIR"):
        dm.setup()


def test_datamodule_reads_an_h5ad_relative_to_the_data_dir(make_adata, tmp_path, monkeypatch):
    monkeypatch.setenv("SCIFLOW_DATA_DIR", str(tmp_path))
    (tmp_path / "singlecell").mkdir()
    make_adata().write_h5ad(tmp_path / "singlecell" / "toy.h5ad")
    dm = PopulationDataModule(
        path="toy.h5ad",
        population_key="population",
        control="ctrl",
        min_cells=10,
        test_populations=["p0", "p1"],
        cells_per_population=32,
        populations_per_batch=3,
        preprocess=PreprocessConfig(log1p=True, n_pcs=4),
    )
    dm.setup()
    assert dm.data.features == ("PC1", "PC2", "PC3", "PC4")
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == batch["cond"]["source"].shape == (96, 4)
    assert torch.isfinite(batch["x"]).all()
    assert {p.population for p in dm.data.splits["test"]} == {"p0", "p1"}


# --- real data ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bodenmiller(bodenmiller_path):
    import anndata

    start = time.perf_counter()
    adata = anndata.read_h5ad(bodenmiller_path)
    data = load_populations(
        adata,
        population_key="patient",
        condition_key="condition",
        control="Reference",
        preprocess=PreprocessConfig.cytof(5.0, scale="none"),
        test_fraction=0.25,
        seed=0,
    )
    return adata, data, time.perf_counter() - start


@pytest.mark.data
def test_bodenmiller_loads_as_eight_patients_split_by_patient(bodenmiller):
    adata, data, seconds = bodenmiller
    assert seconds < 30
    assert len(data.populations) == 8 and data.dim == 24
    assert data.conditions == ("BCR-XL",) and data.control == "Reference"
    assert data.features == tuple(adata.var_names)
    split = {s: {p.population for p in pairs} for s, pairs in data.splits.items()}
    assert len(split["test"]) == 2 and len(split["train"]) == 6 and not split["val"]
    assert not split["train"] & split["test"]
    assert split["train"] | split["test"] == {f"patient{i}" for i in range(1, 9)}
    first = next(p for pairs in data.splits.values() for p in pairs if p.population == "patient1")
    assert (len(first.source), len(first.target)) == (2739, 2838)
    rows = np.nonzero(adata.obs_names.isin(first.source_names))[0]
    np.testing.assert_allclose(first.source, np.arcsinh(adata.X[rows] / 5), rtol=1e-6)
    assert set(adata.obs["condition"].iloc[rows]) == {"Reference"}


@pytest.mark.data
def test_bodenmiller_datamodule_batches(bodenmiller_path):
    dm = PopulationDataModule(
        path=str(bodenmiller_path),
        preprocess=PreprocessConfig.cytof(),
        test_populations=["patient7", "patient8"],
        cells_per_population=64,
        populations_per_batch=3,
    )
    dm.setup()
    assert dm.num_train_populations == 6 and dm.dim == 24
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == batch["x0"]["x"].shape == (192, 24)
    assert (batch["cond"]["population"] < 6).all()
    test_ids = {p.population_id for p in dm.data.splits["test"]}
    assert test_ids == {6, 7}
