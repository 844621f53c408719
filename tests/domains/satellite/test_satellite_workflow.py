"""Satellite models through the CLI: fit the smoke config on a generated EcoMapper layout,
reload as `SatelliteSampler`, sample with guidance, write PNG/GeoTIFF, sweep a climate value,
train the climate-map branch on the conditional model and roll out the time-series model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from PIL import Image
from sciflow_domains.satellite.io import tile_footprint, to_uint8, utm_crs
from sciflow_domains.satellite.nets import SatelliteFlowNet, TimeSeriesFlowNet
from sciflow_domains.satellite.sampler import SatelliteSampler
from sciflow_domains.satellite.task import DATA_INFO_KEY, SatelliteTask

from sciflow.api import load_sampler
from sciflow.cli import main
from sciflow.engine import Engine, FlowComponent
from sciflow.manifolds import Euclidean

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "configs" / "satellite" / "smoke.yaml"
#: location id → (land cover, [lat, lon], base colour)
PLACES = {
    "1": ("Croplands", [48.25, 26.36], (90, 140, 60)),
    "2": ("Barren", [21.19, 7.87], (200, 170, 120)),
    "3": ("Evergreen Needleleaf Forests", [61.5, 24.1], (40, 70, 50)),
}
SIZE = 16
COND = dict(climate=[[12.0, 2.0, 15.0]], landcover="Croplands", month=6, location=[[48.25, 26.36]])


def write_layout(root: Path) -> Path:
    """Three places x 12 months of 32 px tiles (colour by place, brightness by month) with
    numeric climate in the records."""
    rng = np.random.default_rng(0)
    for location, (landcover, centre, colour) in PLACES.items():
        folder = root / "2019-2020" / location
        folder.mkdir(parents=True)
        for month in range(1, 13):
            pixels = np.clip(
                np.array(colour) * (0.7 + 0.05 * month) + rng.normal(0, 10, (32, 32, 3)), 1, 255
            ).astype(np.uint8)
            stem = folder / f"{location}_2019-{month:02d}"
            Image.fromarray(pixels).save(stem.with_suffix(".png"))
            meta = {
                "type": landcover,
                "date": f"2019-{month:02d}",
                "center_coordinates": centre,
                "cloud_coverage": 0.0,
                "average_temp": -5.0 + 2.0 * month,
                "average_prep": 0.3 * month,
                "average_rad": 4.0 + month,
            }
            stem.with_suffix(".json").write_text(json.dumps(meta))
    return root


def fit(tmp: Path, root: Path, network: dict | None = None, **options) -> Path:
    """Fit the smoke config (network class/arguments updated) in-process; the checkpoint."""
    config = yaml.safe_load(SMOKE.read_text())
    if network is not None:
        config["model"]["init_args"]["network"].update(network)
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ["fit", "--config", str(path), "--data.init_args.root", str(root)]
    args += ["--trainer.default_root_dir", str(tmp / "run")]
    for key, value in options.items():
        args += [f"--{key}", str(value)]
    main(args)
    return next((tmp / "run").rglob("*.ckpt"))


@pytest.fixture(scope="module")
def layout_root(tmp_path_factory) -> Path:
    return write_layout(tmp_path_factory.mktemp("ecomapper"))


@pytest.fixture(scope="module")
def conditional_ckpt(tmp_path_factory, layout_root) -> Path:
    return fit(tmp_path_factory.mktemp("conditional"), layout_root)


@pytest.fixture(scope="module")
def sampler(conditional_ckpt) -> SatelliteSampler:
    return load_sampler(conditional_ckpt)


def test_checkpoint_keeps_the_data_description(sampler, conditional_ckpt):
    assert isinstance(sampler, SatelliteSampler) and sampler.model_kind == "conditional"
    info = torch.load(conditional_ckpt, weights_only=False)[DATA_INFO_KEY]
    assert info == sampler.info
    assert info["image_size"] == SIZE and info["crops_per_side"] == 2
    assert info["gsd_m"] == pytest.approx(20.0 * 16 / SIZE)  # 16 px crops of 20 m pixels
    assert info["fields"] == ["climate", "landcover", "month", "location"]
    assert set(info["locations"]) == set(PLACES) and info["test_months"] == [12]
    assert info["normalizer"]["units"] == ["degC", "mm/day", "MJ/m2/day"]


def test_sampling_is_seeded_and_guidance_zero_is_the_unconditional_model(sampler):
    first = sampler.sample(**COND, num_samples=3, num_steps=4, seed=7)
    again = sampler.sample(**COND, num_samples=3, num_steps=4, seed=7)
    other = sampler.sample(**COND, num_samples=3, num_steps=4, seed=8)
    assert first.images.shape == (3, 3, SIZE, SIZE)
    assert first.images.abs().max() <= 1.0 and first.to_uint8().shape == (3, SIZE, SIZE, 3)
    assert torch.equal(first.images, again.images)
    assert not torch.equal(first.images, other.images)
    zero = sampler.sample(**COND, num_samples=3, num_steps=4, seed=7, guidance_scale=0.0)
    unconditional = sampler.sample(num_samples=3, num_steps=4, seed=7)
    assert torch.equal(zero.images, unconditional.images)
    assert not torch.equal(zero.images, first.images)
    by_id = sampler.sample(**{**COND, "landcover": 11}, num_samples=3, num_steps=4, seed=7)
    assert torch.equal(by_id.images, first.images)  # "Croplands" is IGBP id 11


def test_png_and_geotiff_are_written_and_georeferenced(sampler, tmp_path):
    res = sampler.sample(**COND, num_samples=2, num_steps=3, seed=1)
    pngs = res.write_png(tmp_path / "png")
    assert [p.name for p in pngs] == ["sample_0000.png", "sample_0001.png"]
    assert np.array_equal(np.asarray(Image.open(pngs[1])), res.to_uint8()[1])
    tifs = res.write_geotiff(tmp_path / "tif")
    lat, lon = COND["location"][0]
    footprint = tile_footprint(lat, lon, SIZE, SIZE, sampler.info["gsd_m"])
    with rasterio.open(tifs[0]) as src:
        assert src.crs == utm_crs(lat, lon) and src.crs.to_epsg() == 32635
        assert src.transform.almost_equals(footprint.transform)
        assert np.array_equal(src.read(), to_uint8(res.images[0]))
        assert src.tags()["landcover"] == "11"
    written = res.write(tmp_path / "all")
    assert {p.suffix for p in written} == {".npz", ".png", ".tif"}
    with pytest.raises(ValueError, match="lat, lon, gsd_m"):
        sampler.sample(num_samples=1, num_steps=2, seed=0).write_geotiff(tmp_path / "none")


def test_what_if_holds_the_noise_fixed(sampler):
    base = sampler.sample(**COND, num_samples=2, num_steps=3, seed=4)
    sweep = sampler.what_if(
        "precipitation", [2.0, 2.0, 8.0], **COND, num_samples=2, num_steps=3, seed=4
    )
    assert sweep.shape == (3, 2, 3, SIZE, SIZE)
    assert torch.equal(sweep[0], base.images) and torch.equal(sweep[1], base.images)
    assert not torch.equal(sweep[2], base.images)
    with pytest.raises(ValueError, match="field: expected one of"):
        sampler.what_if("humidity", [1.0], **COND)


def test_bad_conditions_are_named(sampler):
    with pytest.raises(ValueError, match="landcover: unknown land cover 'Jungle'"):
        sampler.sample(landcover="Jungle", num_steps=2)
    with pytest.raises(ValueError, match="row counts disagree"):
        sampler.sample(climate=np.zeros((2, 3)), month=[1, 2, 3], num_steps=2)
    with pytest.raises(ValueError, match="month: expected calendar months 1..12"):
        sampler.sample(month=13, num_steps=2)
    with pytest.raises(ValueError, match="previous, lag: only the time-series model"):
        sampler.sample(previous=torch.zeros(1, 3, SIZE, SIZE), lag=1, num_steps=2)
    with pytest.raises(ValueError, match="num_samples: give num_samples"):
        sampler.sample(num_steps=2)


def test_sample_command_writes_npz_and_png(conditional_ckpt, tmp_path):
    main(["sample", "--checkpoint", str(conditional_ckpt), "--num-samples", "2", "--steps", "2",
          "--out", str(tmp_path)])  # fmt: skip
    assert np.load(tmp_path / "samples.npz")["image"].shape == (2, 3, SIZE, SIZE)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["sample_0000.png", "sample_0001.png"]


def test_climate_map_branch_trains_on_the_frozen_conditional_model(
    tmp_path, layout_root, conditional_ckpt, sampler
):
    network = {
        "class_path": "sciflow_domains.satellite.nets.ClimateMapFlowNet",
        "init_args": {**yaml.safe_load(SMOKE.read_text())["model"]["init_args"]["network"][
            "init_args"], "freeze_base": True},
    }  # fmt: skip
    ckpt = fit(tmp_path, layout_root, network, **{"model.init_args.init_from": conditional_ckpt})
    mapped = load_sampler(ckpt)
    assert mapped.model_kind == "climate_map"
    base = torch.load(conditional_ckpt, weights_only=False)["state_dict"]
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    for key, value in base.items():
        if key.startswith("ema.module.") and "n_averaged" not in key:
            assert torch.equal(state[key.replace("ema.module.", "network.")], value), key
    assert any(state[k].abs().sum() > 0 for k in state if "network.control.zero_convs" in k)
    # The null term of guidance is exactly the base model; the map changes the conditional one.
    zero = mapped.sample(**COND, num_samples=2, num_steps=3, seed=2, guidance_scale=0.0)
    reference = sampler.sample(**COND, num_samples=2, num_steps=3, seed=2, guidance_scale=0.0)
    assert torch.equal(zero.images, reference.images)
    climate_map = np.broadcast_to(np.array([12.0, 2.0, 15.0])[:, None, None], (3, SIZE, SIZE))
    given = mapped.sample(**COND, climate_map=climate_map, num_samples=2, num_steps=3, seed=2)
    implied = mapped.sample(**COND, num_samples=2, num_steps=3, seed=2)
    assert torch.allclose(given.images, implied.images, atol=1e-5)
    alone = mapped.sample(climate_map=climate_map, num_samples=2, num_steps=3, seed=2)
    assert not torch.equal(alone.images, sampler.sample(num_samples=2, num_steps=3, seed=2).images)
    with pytest.raises(ValueError, match="climate_map: only the climate-map model"):
        sampler.sample(**COND, climate_map=climate_map, num_steps=2)


def test_timeseries_model_rolls_out_a_year_as_xarray(tmp_path, layout_root):
    network = {"class_path": "sciflow_domains.satellite.nets.TimeSeriesFlowNet"}
    with pytest.raises(ValueError, match="data.previous: the timeseries network needs previous"):
        fit(tmp_path / "refused", layout_root, network)
    ckpt = fit(tmp_path, layout_root, network, **{"data.init_args.previous": "true"})
    series = load_sampler(ckpt)
    assert series.model_kind == "timeseries" and series.info["previous"]
    first = torch.rand(3, SIZE, SIZE) * 2 - 1
    climate = np.tile([[5.0, 1.0, 10.0]], (4, 1))
    kwargs = dict(location=(48.25, 26.36), landcover="Croplands", num_steps=2, seed=3)
    ds = series.rollout(first, "2019-11", months=4, climate=climate, **kwargs)
    assert ds["image"].dims == ("time", "y", "x", "band") and ds.sizes["time"] == 4
    assert ds["image"].shape == (4, SIZE, SIZE, 3)
    assert [str(t)[:7] for t in ds["time"].values] == ["2019-12", "2020-01", "2020-02", "2020-03"]
    assert ds["precipitation"].attrs["units"] == "mm/day"
    again = series.rollout(first, "2019-11", months=4, climate=climate, **kwargs)
    assert np.array_equal(ds["image"].values, again["image"].values)
    reference = torch.rand(4, 3, SIZE, SIZE) * 2 - 1
    forced = series.rollout(first, "2019-11", months=4, climate=climate, reference=reference,
                            **kwargs)  # fmt: skip
    assert np.array_equal(forced["image"].values[0], ds["image"].values[0])  # same first step
    assert not np.array_equal(forced["image"].values[1:], ds["image"].values[1:])
    one = series.sample(**COND, previous=first, lag=2, num_steps=2, seed=0)
    assert one.images.shape == (1, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match="previous: the time-series model needs"):
        series.sample(**COND, num_steps=2)


def test_unconditional_model_and_size_check(tmp_path, layout_root):
    with pytest.raises(ValueError, match="data.size: the data gives 32 px tiles"):
        options = {"data.init_args.size": "32", "data.init_args.crops_per_side": "1"}
        fit(tmp_path / "refused", layout_root, None, **options)
    ckpt = fit(tmp_path, layout_root, {"init_args": {"fields": [], "base_channels": 8,
               "channel_mults": [1, 2]}})  # fmt: skip
    plain = load_sampler(ckpt)
    assert plain.model_kind == "unconditional"
    with_conditions = plain.sample(**COND, num_samples=2, num_steps=3, seed=5)
    without = plain.sample(num_samples=2, num_steps=3, seed=5)
    assert torch.equal(with_conditions.images, without.images)


def test_task_arguments_are_checked():
    engine = Engine({"image": FlowComponent(Euclidean(SIZE), event_shape=(3, SIZE))})
    with pytest.raises(ValueError, match="val_num_samples: validation sampling draws without"):
        SatelliteTask(engine, TimeSeriesFlowNet, val_num_samples=4)
    with pytest.raises(ValueError, match="field_drop_prob: expected a float in"):
        SatelliteTask(engine, SatelliteFlowNet, field_drop_prob=1.0)


@pytest.mark.data
def test_smoke_config_on_the_real_example_set(real_root, tmp_path):
    ckpt = fit(tmp_path, real_root, None, **{"trainer.max_steps": "2"})
    res = load_sampler(ckpt).sample(
        climate=[[20.0, 3.0, 22.0]], landcover="Woody Savannas", month=5, num_steps=2, seed=0
    )
    assert res.images.shape == (1, 3, SIZE, SIZE) and torch.isfinite(res.images).all()
