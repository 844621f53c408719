"""Splits, conditions, climate normalisation and batches of the satellite data module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sciflow_domains.satellite.data import (
    ClimateNormalizer,
    SatelliteDataModule,
    load_series,
    location_encoding,
    month_encoding,
    split_by_location,
    split_temporal,
)
from sciflow_domains.satellite.datasets import LANDCOVER_CLASSES, landcover_id, scan_ecomapper


def test_condition_encodings():
    np.testing.assert_allclose(
        month_encoding([1, 4, 12]), [[0, 1], [1, 0], [-0.5, 0.866]], atol=1e-3
    )
    xyz = location_encoding([0.0, 90.0, -30.0], [90.0, 10.0, 180.0])
    np.testing.assert_allclose(xyz, [[0, 1, 0], [0, 0, 1], [-0.866, 0, -0.5]], atol=1e-3)
    assert np.linalg.norm(location_encoding(48.2, 26.4)) == pytest.approx(1.0)


def test_temporal_split_holds_out_calendar_months(ecomapper_root):
    records = scan_ecomapper(ecomapper_root)
    splits = split_temporal(records, test_months=[12, 6], val_months=[3])
    months = {s: {r.month for r in v} for s, v in splits.items()}
    assert months == {"train": set(range(1, 13)) - {3, 6, 12}, "val": {3}, "test": {6, 12}}
    keys = [set(r.key for r in v) for v in splits.values()]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert sum(len(v) for v in splits.values()) == len(records)
    with pytest.raises(ValueError, match=r"test_months/val_months: month\(s\) \[3\] in both"):
        split_temporal(records, test_months=[3], val_months=[3])
    with pytest.raises(ValueError, match="test_months: expected calendar months in 1..12"):
        split_temporal(records, test_months=[13])


def test_location_split_keeps_locations_whole(ecomapper_root):
    records = scan_ecomapper(ecomapper_root)
    for seed in range(4):
        splits = split_by_location(records, test_fraction=0.34, val_fraction=0.34, seed=seed)
        owners = {s: {r.location_id for r in v} for s, v in splits.items()}
        assert all(len(owners[s]) == 1 for s in owners)
        assert len(owners["train"] | owners["val"] | owners["test"]) == 3
    listed = split_by_location(records, test_locations=["20"], test_fraction=0.0)
    assert {r.location_id for r in listed["test"]} == {"20"} and not listed["val"]
    with pytest.raises(ValueError, match=r"test_locations: unknown location\(s\) \['99'\]"):
        split_by_location(records, test_locations=["99"])
    with pytest.raises(ValueError, match="no training location left"):
        split_by_location(records, test_locations=["10", "20"], val_locations=["30"])


def _module(root, **kwargs) -> SatelliteDataModule:
    args = dict(root=str(root), size=8, batch_size=5, max_cloud=0.5) | kwargs
    dm = SatelliteDataModule(**args)
    dm.setup()
    return dm


def test_batches_have_the_documented_format(ecomapper_root, layout):
    dm = _module(ecomapper_root, crops_per_side=2)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (5, 3, 8, 8) and batch["image"].dtype == torch.float32
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    cond = batch["cond"]
    assert cond["climate"].shape == (5, 3) and cond["climate"].dtype == torch.float32
    assert cond["landcover"].shape == (5,) and cond["landcover"].dtype == torch.long
    assert cond["month"].shape == (5, 2) and cond["location"].shape == (5, 3)
    assert "previous" not in batch and "lag" not in batch
    meta = batch["meta"]
    assert len(meta["location_id"]) == 5 and len(meta["date"]) == 5
    assert meta["gsd_m"][0].item() == pytest.approx(20.0 * 16 / 8)  # 16 px crops → 8 px
    # the image of a sample is its tile: red channel = 10·month (fixture), in [-1, 1]
    month = torch.tensor([int(d[5:]) for d in meta["date"]])
    expected_red = (10 * month).float() / 127.5 - 1
    torch.testing.assert_close(batch["image"][:, 0, 0, 0], expected_red)
    written = [layout.LOCATIONS[loc][1] for loc in meta["location_id"]]
    assert cond["landcover"].tolist() == [landcover_id(name) for name in written]
    # 36 tiles, 2 cloudy, December held out (3) → 31 tiles x 4 crops
    assert len(dm.dataset("train")) == 31 * 4 and len(dm.dataset("test")) == 3 * 4


def test_cloud_filter_and_train_only_normalisation(ecomapper_root, layout):
    dm = _module(ecomapper_root, max_cloud=0.5)
    kept = [r for s in dm.splits.values() for r in s]
    assert {(r.location_id, r.month) for r in kept}.isdisjoint(layout.CLOUDY)
    train = np.array([layout.climate_of(r.location_id, r.month) for r in dm.splits["train"]])
    np.testing.assert_allclose(dm.normalizer.mean, train.mean(axis=0))
    np.testing.assert_allclose(dm.normalizer.std, train.std(axis=0))
    everything = _module(ecomapper_root, max_cloud=1.0)
    assert len([r for s in everything.splits.values() for r in s]) == 36
    restored = ClimateNormalizer.from_dict(dm.normalizer.to_dict())
    np.testing.assert_allclose(restored.inverse(restored.transform(train)), train, rtol=1e-5)


def test_black_no_data_tiles_are_dropped(ecomapper_root):
    black = ecomapper_root / "2021-2022" / "30" / "30_2021-05.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(black)
    dm = _module(ecomapper_root, max_cloud=1.0)
    kept = {r.key for s in dm.splits.values() for r in s}
    assert ("30", 2021, 5) not in kept and len(kept) == 35
    assert dm.tiles.nodata[("30", 2021, 5)] == 1.0
    assert ("30", 2021, 5) in {
        r.key for r in _module(ecomapper_root, max_nodata=1.0).splits["train"]
    }


def test_previous_frames_come_from_the_past_of_allowed_splits(ecomapper_root):
    dm = _module(ecomapper_root, previous=True, max_lag=3, test_months=[5, 6], val_months=[4])
    splits = {s: {r.key for r in v} for s, v in dm.splits.items()}
    for name, allowed in (("train", ["train"]), ("val", ["train", "val"]), ("test", None)):
        dataset = dm.dataset(name)
        assert len(dataset)
        for rec, _, prev in dataset.items:
            assert prev.location_id == rec.location_id
            assert 1 <= rec.month_index - prev.month_index <= 3
            if allowed is not None:
                assert any(prev.key in splits[s] for s in allowed)
    batch = next(iter(dm.val_dataloader()))
    assert batch["previous"].shape == batch["image"].shape and batch["lag"].dtype == torch.long
    month = torch.tensor([int(d[5:]) for d in batch["meta"]["date"]])
    prev_red = (10 * (month - batch["lag"])).float() / 127.5 - 1
    torch.testing.assert_close(batch["previous"][:, 0, 0, 0], prev_red)


def test_series_of_a_location(ecomapper_root):
    dm = _module(ecomapper_root)
    series = dm.series("40")
    assert series["image"].shape == (14, 3, 8, 8) and len(series["dates"]) == 14
    assert not series["climate_valid"].any() and torch.isnan(series["cond"]["climate"]).all()
    assert series["cond"]["landcover"].unique().tolist() == [
        LANDCOVER_CLASSES.index("Woody Savannas")
    ]
    with_climate = load_series("10", ecomapper_root, size=8, normalizer=dm.normalizer)
    assert with_climate["climate_valid"].all() and with_climate["dates"][0] == "2019-01"
    with pytest.raises(FileNotFoundError, match="location_id: no folder"):
        load_series("77", ecomapper_root)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(split="random"), "split: expected one of"),
        (dict(size=0), "size: expected a positive int"),
        (dict(max_cloud=2.0), r"max_cloud: expected a fraction in \[0, 1\]"),
        (dict(tile_gsd_m=-1.0), "tile_gsd_m"),
    ],
)
def test_module_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SatelliteDataModule(**kwargs)


@pytest.mark.data
def test_real_example_set_loads(real_root):
    dm = SatelliteDataModule(root=str(real_root), size=32, previous=True)
    dm.setup()
    records = [r for s in dm.splits.values() for r in s]
    assert len({r.location_id for r in records}) == 6
    assert len({r.landcover for r in records}) == 6
    assert {r.month for r in dm.splits["test"]} == {12}
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (16, 3, 32, 32) and batch["previous"].shape == (16, 3, 32, 32)
    assert torch.isfinite(batch["cond"]["climate"]).all()
    series = dm.series()  # Test-Batch/4451: 72 months, no climate
    assert series["image"].shape == (72, 3, 32, 32)
    assert series["dates"][0] == "2017-01" and series["dates"][-1] == "2022-12"
