"""Longitudinal data: validation errors, visit tuples, patient splits, batches, datamodule."""

import numpy as np
import pytest
import torch
from sciflow_domains.medical.data import (
    LongitudinalDataModule,
    LongitudinalDataset,
    Series,
    Visit,
    VisitTupleDataset,
    assign_splits,
    visit_tuples,
)


def _series(patient, times, shape=(1, 8, 8), masks=True, name=""):
    rng = np.random.default_rng(len(patient) + len(times))
    visits = tuple(
        Visit(
            rng.random(shape, dtype=np.float32),
            t,
            (rng.random(shape[1:]) > 0.7).astype(np.uint8) if masks else None,
        )
        for t in times
    )
    return Series(patient, visits, name=name)


def test_non_increasing_times_raise_with_the_offending_visit():
    with pytest.raises(ValueError, match=r"strictly increasing, but visit 2 at t=3 follows t=5"):
        _series("p", [0.0, 5.0, 3.0], name="p/z=1")
    with pytest.raises(ValueError, match="strictly increasing"):
        _series("p", [1.0, 1.0])


def test_mismatched_shapes_and_affines_between_visits_raise():
    a = Visit(np.zeros((1, 8, 8), np.float32), 0.0)
    b = Visit(np.zeros((1, 8, 9), np.float32), 1.0)
    with pytest.raises(ValueError, match=r"visit 1 has image shape \(1, 8, 9\), visit 0 has"):
        Series("p", (a, b))
    shifted = np.eye(4)
    shifted[0, 3] = 2.0
    c = Visit(np.zeros((1, 4, 4, 4), np.float32), 0.0, affine=np.eye(4))
    d = Visit(np.zeros((1, 4, 4, 4), np.float32), 1.0, affine=shifted)
    with pytest.raises(ValueError, match="visit 1 affine differs from visit 0"):
        Series("p", (c, d))
    e = Visit(np.zeros((1, 4, 4, 4), np.float32), 1.0)
    with pytest.raises(ValueError, match="affine differs"):
        Series("p", (c, e))


def test_visit_validation_names_the_argument():
    with pytest.raises(ValueError, match=r"mask: expected the image's spatial shape \(8, 8\)"):
        Visit(np.zeros((1, 8, 8), np.float32), 0.0, mask=np.zeros((8, 7), np.uint8))
    with pytest.raises(ValueError, match=r"image: expected intensities in \[0, 1\]"):
        Visit(np.full((1, 4, 4), 2.0, np.float32), 0.0)
    with pytest.raises(ValueError, match="channel axis"):
        Visit(np.zeros((4, 4), np.float32), 0.0)
    with pytest.raises(ValueError, match="visits is empty"):
        Series("p", ())


def test_visit_tuples_enumerate_ordered_pairs_and_triples():
    series = [_series("a", [0, 1, 3, 7]), _series("b", [0, 2])]
    pairs = visit_tuples(series, 2)
    assert len(pairs) == 6 + 1
    assert np.all(pairs[:, 1] < pairs[:, 2])
    assert len(visit_tuples(series, 3)) == 4
    short = visit_tuples(series, 2, max_gap=2.0)
    assert {tuple(r) for r in short} == {(0, 0, 1), (0, 1, 2), (1, 0, 1)}


def test_splits_are_by_patient_never_by_series():
    series = [_series(f"p{p}", [0, 1], name=f"p{p}/z={z}") for p in range(10) for z in range(3)]
    data = LongitudinalDataset(series)
    assignment = assign_splits(data.patients, (0.6, 0.2, 0.2), seed=3)
    assert sorted(assignment.values()).count("train") == 6
    parts = data.split_by_patient(assignment)
    owners = {name: set(part.patients) for name, part in parts.items()}
    assert owners["train"].isdisjoint(owners["val"]) and owners["val"].isdisjoint(owners["test"])
    assert owners["train"] | owners["val"] | owners["test"] == set(data.patients)
    assert all(len(part) == 3 * len(part.patients) for part in parts.values())
    assert set(assign_splits([f"q{i}" for i in range(4)]).values()) == {"train", "val", "test"}
    with pytest.raises(ValueError, match="missing"):
        data.split_by_patient({"p0": "train"})


def test_visit_tuple_batches_have_the_documented_format():
    data = LongitudinalDataset([_series("a", [0, 1.5, 4]), _series("b", [2, 3], masks=False)])
    dataset = VisitTupleDataset(data, size=2, resolution=4)
    assert len(dataset) == 4
    batch = dataset[[0, 1, 2, 3]]
    assert batch["x0"].shape == batch["x1"].shape == (4, 1, 4, 4)
    assert batch["mask1"].shape == (4, 1, 4, 4) and batch["x0"].dtype == torch.float32
    torch.testing.assert_close(batch["dt"], torch.tensor([1.5, 4.0, 2.5, 1.0]))
    torch.testing.assert_close(batch["dt"], batch["t1"] - batch["t0"])
    assert batch["patient"].tolist() == [0, 0, 0, 1]
    assert batch["has_mask1"].tolist() == [True, True, True, False]
    assert batch["mask1"][3].sum() == 0 and set(batch["mask0"].unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="slice volumes first"):
        volume = Visit(np.zeros((1, 4, 4, 4), np.float32), 0.0)
        VisitTupleDataset(LongitudinalDataset([Series("v", (volume,))]))


def test_datamodule_serves_synthprog_pairs_and_triples():
    module = LongitudinalDataModule(
        dataset="synthprog_ms", n_subjects=10, resolution=32, batch_size=4, seed=1
    )
    module.setup()
    batch = next(iter(module.train_dataloader()))
    assert batch["x0"].shape == (4, 1, 32, 32) and batch["mask1"].shape == (4, 1, 32, 32)
    assert torch.all(batch["dt"] > 0) and batch["has_mask1"].all()
    assert 0.0 <= batch["x1"].min() and batch["x1"].max() <= 1.0
    patients = {
        split: {module.patients[i] for i in part.patient.tolist()}
        for split, part in module.splits.items()
    }
    assert patients["train"].isdisjoint(patients["test"] | patients["val"])
    triples = LongitudinalDataModule(
        dataset="synthprog_ga", n_subjects=4, resolution=32, visits_per_item=3, batch_size=2
    )
    triples.setup()
    batch = next(iter(triples.train_dataloader()))
    assert torch.all(batch["t0"] < batch["t1"]) and torch.all(batch["t1"] < batch["t2"])
    torch.testing.assert_close(batch["dt"], batch["t2"] - batch["t0"])


def test_datamodule_holds_out_named_patients_and_resizes():
    series = [_series(f"p{p}", [0, 1, 2], shape=(1, 16, 16)) for p in range(4)]
    module = LongitudinalDataModule.from_dataset(
        LongitudinalDataset(series, name="toy"), resolution=8, batch_size=2, test_patients=["p2"]
    )
    module.setup()
    assert len(module.splits["val"]) == 0
    test_patients = {module.patients[i] for i in module.splits["test"].patient.tolist()}
    assert test_patients == {"p2"}
    batch = next(iter(module.test_dataloader()))
    assert batch["x0"].shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="unknown patient"):
        LongitudinalDataModule.from_dataset(
            LongitudinalDataset(series), test_patients=["nobody"]
        ).setup()
