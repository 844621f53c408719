"""The real open MS data (skipped without $SCIFLOW_DATA_DIR) and the download registrations."""

import numpy as np
import pytest
from sciflow_domains.medical.data import DAYS_PER_MONTH, LongitudinalDataModule
from sciflow_domains.medical.datasets import (
    DATASETS,
    dataset_specs,
    load_dataset,
    load_ms_pairs,
    load_ms_volumes,
)

from sciflow.data import get_dataset


def test_ms_slice_pairs_load_as_two_visit_series(ms_root):
    data = load_ms_pairs()
    assert len(data) == 163
    assert data.patients == ("patient01", "patient03", "patient12", "patient19")
    assert data.mask_meaning == "change"
    counts = [sum(s.patient == p for s in data.series) for p in data.patients]
    assert counts == [39, 36, 41, 47]
    first = data.series[0]
    assert first.visits[0].image.shape == (1, 128, 128) and first.visits[0].mask is None
    assert first.visits[1].time == pytest.approx(203 / DAYS_PER_MONTH)
    assert sum(int(s.visits[1].mask.sum()) for s in data.series) > 0


def test_ms_datamodule_leaves_one_patient_out(ms_root):
    module = LongitudinalDataModule(dataset="ms_flair_pairs", test_patients=["patient12"])
    module.setup()
    batch = next(iter(module.test_dataloader()))
    assert batch["x0"].shape == (16, 1, 64, 64)
    assert set(batch["patient"].tolist()) == {module.patients.index("patient12")}
    assert batch["has_mask1"].all() and not batch["has_mask0"].any()
    np.testing.assert_allclose(batch["dt"].numpy(), 81 / DAYS_PER_MONTH, rtol=1e-6)
    assert len(module.splits["train"]) == 163 - 41


def test_raw_flair_resampling_reproduces_the_derived_volumes(ms_root):
    data = load_ms_volumes(patients=("patient12",))
    series = data.series[0]
    with np.load(ms_root / "derived" / "ms_flair_pairs_common_space_uint8.npz") as npz:
        reference = [npz["patient12_study1"], npz["patient12_study2"]]
        affine, brain = npz["patient12_affine"], npz["patient12_brainmask"] > 0
    for visit, ref in zip(series.visits, reference, strict=True):
        np.testing.assert_allclose(visit.affine, affine, atol=1e-4)
        np.testing.assert_allclose(visit.image[0][brain], ref[brain] / 255.0, atol=1 / 255 + 1e-4)
    assert series.visits[1].mask.any()
    assert series.visits[1].time == pytest.approx(81 / DAYS_PER_MONTH)


def test_download_registrations_are_complete():
    specs = {spec.name: spec for spec in dataset_specs()}
    assert set(specs) == {"backgrounds", "open_ms_longitudinal"}
    assert len(specs["backgrounds"].files) == 4 and len(specs["open_ms_longitudinal"].files) == 24
    assert get_dataset("backgrounds") == specs["backgrounds"]  # registered on import
    for remote in specs["open_ms_longitudinal"].files:
        assert "65704901f60650824565aa5a4818611aa89716f4" in remote.url
        assert ("coregistered/" in remote.url) == remote.relative_path.startswith("common_space")


def test_load_dataset_rejects_unknown_names():
    with pytest.raises(ValueError, match="name: expected one of"):
        load_dataset("imagenet")
    assert "synthprog_ga" in DATASETS
