"""The medical workflow end to end: `sciflow fit` on the smoke config (and each model kind),
`sciflow.load_sampler` → forecast / trajectory → PNG panels and NIfTI that keep the affine."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from sciflow_domains.medical.io import read_nifti
from sciflow_domains.medical.sampler import MedicalSampler

import sciflow
from sciflow.cli import main

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "configs" / "medical" / "smoke.yaml"
AFFINE = np.array(
    [[-0.9, 0.02, 0.0, 90.0], [0.0, 0.9, 0.01, -120.0], [0.0, 0.0, 3.0, 40.0], [0, 0, 0, 1]]
)


def fit(config: Path, run: Path) -> Path:
    """Run ``sciflow fit`` in-process; return the checkpoint it wrote."""
    main(["fit", "--config", str(config), "--trainer.default_root_dir", str(run)])
    checkpoints = sorted(run.rglob("*.ckpt"))
    assert len(checkpoints) == 1
    return checkpoints[0]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("smoke")
    return fit(SMOKE, run)


@pytest.fixture(scope="module")
def sampler(smoke_run) -> MedicalSampler:
    return sciflow.load_sampler(smoke_run)


def inputs(batch=3, seed=0) -> torch.Tensor:
    return torch.rand(batch, 1, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_smoke_fit_logs_validation_and_keeps_the_data_description(smoke_run, sampler):
    rows = list(csv.DictReader(next(smoke_run.parents[2].rglob("metrics.csv")).open()))
    logged = {k for row in rows for k, v in row.items() if v}
    assert {"train/loss_forecast", "val/forecast_mae", "val/copy_forward_mae"} <= logged
    assert isinstance(sampler, MedicalSampler) and sampler.model_kind == "imageflownet_ode"
    assert sampler.data_info == {
        "dataset": "synthprog_ga",
        "resolution": 32,
        "channels": 1,
        "time_unit": "months",
        "visits_per_item": 2,
    }
    assert sampler.task.train_seconds > 0
    state = torch.load(smoke_run, weights_only=False)
    assert state["sciflow"]["domain"] == "medical"


def test_forecast_shapes_range_nfe_and_deterministic_repeats(smoke_run, sampler):
    out = sampler.forecast(inputs(), [1.0, 6.0, 30.0], num_samples=2, seed=0)
    assert out.images.shape == (3, 2, 1, 32, 32)
    assert out.images.min() >= 0 and out.images.max() <= 1
    assert out.nfe == 1 * 4 + 1  # one RK4 step (4 field evaluations) + the autoencoder pass
    assert torch.equal(out.images[:, 0], out.images[:, 1])  # an ODE repeats its one forecast
    again = sciflow.load_sampler(smoke_run).forecast(inputs(), [1.0, 6.0, 30.0])
    assert torch.equal(again.images[:, 0], out.images[:, 0])
    one_gap = sampler.forecast(inputs(), 6.0)
    assert torch.equal(one_gap.images[1], out.images[1, :1])


def test_trajectory_starts_at_the_reconstruction_and_ends_at_the_forecast(sampler):
    x = inputs()
    path = sampler.trajectory(x, [0.0, 12.0, 24.0])
    assert path.images.shape == (3, 3, 1, 32, 32) and path.dt.tolist() == [0.0, 12.0, 24.0]
    with torch.no_grad():
        network = sampler.network
        reconstruction = network.unet.decode(network.unet.encode(x)).clamp(0, 1)
    assert torch.equal(path.images[:, 0], reconstruction)
    end = sampler.forecast(x, 24.0).images[:, 0]
    torch.testing.assert_close(path.images[:, -1], end, rtol=0, atol=1e-4)  # rk4 segments


def test_panels_and_nifti_round_trip_keep_the_affine(sampler, tmp_path):
    x, truth = inputs(2), inputs(2, seed=1)
    out = sampler.forecast(x, [3.0, 9.0])
    panels = out.write_panels(tmp_path / "panels", truths=truth)
    assert [p.name for p in panels] == ["panel_000.png", "panel_001.png"]
    with Image.open(panels[0]) as image:
        assert image.size == (4 * 64 + 3 * 4, 64 + 14)  # four 2x-zoomed panels, gaps, titles
    assert len(out.write_panels(tmp_path / "no_truth")) == 2
    per_item = np.stack([AFFINE, AFFINE + np.diag([0.0, 0.0, 1.0, 0.0])])
    for affine in (AFFINE, per_item):
        paths = out.write_nifti(tmp_path / "nifti", affine=affine)
        for k, path in enumerate(paths):
            data, saved = read_nifti(path)
            np.testing.assert_array_equal(data, out.images[k, 0, 0].numpy())
            np.testing.assert_allclose(saved, affine if affine.ndim == 2 else affine[k], atol=1e-5)
    assert not list((tmp_path / "nifti").glob(".*"))  # no temporary files left behind
    with pytest.raises(ValueError, match=r"affine: expected \(4, 4\) or \(2, 4, 4\)"):
        out.write_nifti(tmp_path / "bad", affine=np.eye(3))
    with pytest.raises(ValueError, match=r"truths: expected \(2, C, R, R\)"):
        out.write_panels(tmp_path / "bad", truths=truth[:1])


def test_bad_requests_are_named(sampler):
    with pytest.raises(ValueError, match=r"images: expected \(B, 1, 32, 32\)"):
        sampler.forecast(torch.rand(2, 1, 64, 64), 1.0)
    with pytest.raises(ValueError, match=r"images: expected finite intensities in \[0, 1\]"):
        sampler.forecast(2 * inputs(), 1.0)
    with pytest.raises(ValueError, match="dt: expected finite months >= 0"):
        sampler.forecast(inputs(), [1.0, -1.0, 2.0])
    with pytest.raises(ValueError, match=r"dt: expected \(3,\) months"):
        sampler.forecast(inputs(), [1.0, 2.0])
    with pytest.raises(ValueError, match="num_samples"):
        sampler.forecast(inputs(), 1.0, num_samples=0)
    with pytest.raises(ValueError, match="dt_grid"):
        sampler.trajectory(inputs(), [6.0, 3.0])
    with pytest.raises(TypeError, match="forecast"):
        sampler.sample(num_samples=4)


KINDS = {
    "imageflownet_sde": {
        "class_path": "sciflow_domains.medical.nets_ode.ImageFlowNet",
        "init_args": {"stochastic": True, "solver": "euler", "num_steps": 2, "sigma_init": 0.5},
    },
    "latent_fm": {
        "class_path": "sciflow_domains.medical.nets_fm.LatentFlowMatching",
        "init_args": {"num_steps": 2, "source_noise": 0.3},
    },
    "unet": {
        "class_path": "sciflow_domains.medical.nets_unet.TimeConditionedUNet",
        "init_args": {},
    },
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_model_kind_fits_reloads_and_forecasts(kind, tmp_path):
    config = yaml.safe_load(SMOKE.read_text())
    network = KINDS[kind]
    shared = {"in_channels": 1, "image_size": 32, "base_channels": 8, "channel_mults": [1, 2]}
    config["model"]["init_args"]["network"] = {
        "class_path": network["class_path"],
        "init_args": {**shared, **network["init_args"]},
    }
    config["trainer"]["max_steps"] = 2
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(config))
    sampler = sciflow.load_sampler(fit(path, tmp_path / "run"))
    assert sampler.model_kind == kind
    first = sampler.forecast(inputs(), [2.0, 8.0, 20.0], num_samples=3, seed=7)
    again = sampler.forecast(inputs(), [2.0, 8.0, 20.0], num_samples=3, seed=7)
    assert first.images.shape == (3, 3, 1, 32, 32)
    assert torch.equal(first.images, again.images)
    futures_differ = not torch.equal(first.images[:, 0], first.images[:, 1])
    assert futures_differ == (kind != "unet")  # the SDE and noisy latent FM draw futures


def test_real_ms_pairs_fit_and_forecast(ms_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SCIFLOW_DATA_DIR", str(ms_root.parents[1]))
    config = yaml.safe_load(SMOKE.read_text())
    config["data"]["init_args"] = {
        "dataset": "ms_flair_pairs",
        "resolution": 32,
        "batch_size": 4,
        "test_patients": ["patient01"],
        "val_patients": ["patient03"],
    }
    path = tmp_path / "ms.yaml"
    path.write_text(yaml.safe_dump(config))
    sampler = sciflow.load_sampler(fit(path, tmp_path / "run"))
    assert sampler.data_info["dataset"] == "ms_flair_pairs"
    out = sampler.forecast(inputs(2), [2.7, 22.0])
    assert out.images.shape == (2, 1, 1, 32, 32)
