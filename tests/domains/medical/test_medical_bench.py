"""The medical forecasting benchmark end to end on a tiny generated SynthProg cohort, with the
non-learned baselines and a fake sampler standing in for a trained checkpoint."""

import importlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from sciflow_domains.medical.metrics_lesion import lesion_rule
from sciflow_domains.medical.synthprog import SynthProgConfig, generate

import sciflow.api
from sciflow.evaluation.bench import load_spec, run_benchmark

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "medical"


@pytest.fixture(scope="module")
def helpers():
    """The benchmark's helper modules (imported the way forecast.py imports them)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    names = ("forecast", "forecast_calibration", "forecast_cases", "forecast_models")
    return SimpleNamespace(**{n: importlib.import_module(n) for n in names})


class FakeSampler:
    """A stand-in for ``MedicalSampler``: the input plus seeded noise, 4 network calls."""

    model_kind = "imageflownet_sde"

    def forecast(self, images, dt, *, num_steps=None, num_samples=1, seed=None):
        gen = torch.Generator().manual_seed(int(seed))
        noise = 0.03 * torch.randn(len(images), num_samples, *images.shape[1:], generator=gen)
        return SimpleNamespace(images=(images[:, None] + noise).clamp(0, 1), nfe=4)


@pytest.fixture
def tiny(tmp_path):
    """Data arguments of a 10-subject, 32 px SynthProg-GA cohort on the built-in background."""
    config = tmp_path / "synthprog.yaml"
    config.write_text("background: builtin\n")
    data = {
        "dataset": "synthprog_ga",
        "config": str(config),
        "n_subjects": 10,
        "seed": 0,
        "resolution": 32,
    }
    cohort = generate(SynthProgConfig.from_yaml(config, n_subjects=10, resolution=32), seed=0)
    return SimpleNamespace(data=data, cohort=cohort, tmp=tmp_path)


def save_checkpoint(path: Path, train_seconds: float, **datamodule) -> str:
    torch.save(
        {"sciflow": {"train_seconds": train_seconds}, "datamodule_hyper_parameters": datamodule},
        path,
    )
    return str(path)


def test_benchmark_runs_end_to_end_with_baselines_and_a_fake_sampler(tiny, monkeypatch):
    monkeypatch.setattr(sciflow.api, "load_sampler", lambda path: FakeSampler())
    checkpoint = save_checkpoint(tiny.tmp / "fake.ckpt", 90.0, **tiny.data)
    spec = tiny.tmp / "spec.yaml"
    params = {
        "name": "tiny",
        "title": "tiny",
        "data": tiny.data,
        "seeds": [0, 1],
        "gap_bins": [0, 6, 12],
        "panels": 2,
        "calibration": {"cases": 3, "model_samples": 4, "true_samples": 6, "levels": [0.5]},
        "models": {
            "fake": {"checkpoint": checkpoint},
            "absent": {"checkpoint": str(tiny.tmp / "absent.ckpt")},
        },
    }
    spec.write_text(
        yaml.safe_dump({"name": "tiny", "script": str(BENCH / "forecast.py"), "params": params})
    )
    out = tiny.tmp / "out"
    payload = json.loads(run_benchmark(spec, out).read_text())
    results = payload["results"]
    assert (out / "tiny.md").is_file() and (out / "tiny_horizon.png").is_file()
    assert len(payload["plots"]) == 3 and all((out / p).is_file() for p in payload["plots"])
    assert set(results["models"]) == {"copy_forward", "linear", "fake"}
    assert "not found" in results["skipped"]["absent"]
    # the cases are every ordered visit pair of the stored test subjects
    cohort = tiny.cohort
    test = np.flatnonzero(cohort.split == "test")
    pairs = [
        (s, j, k)
        for s in test
        for j in range(cohort.n_visits[s])
        for k in range(j + 1, cohort.n_visits[s])
    ]
    assert results["dataset"]["cases"] == len(pairs)
    copy = results["models"]["copy_forward"]
    mae = np.mean([np.abs(cohort.images[s, j] - cohort.images[s, k]).mean() for s, j, k in pairs])
    assert copy["summary"]["overall"]["mae"]["mean"] == pytest.approx(mae, rel=1e-5)
    assert copy["change_mae_vs_copy_forward"]["mean"] == 0.0
    fake = results["models"]["fake"]
    assert (fake["runs"], fake["seeds"], fake["kind"]) == (1, 2, "imageflownet_sde")
    assert fake["timing"]["train_minutes"] == [1.5] and fake["timing"]["nfe_per_call"] == 4
    pooled_mae = fake["summary"]["overall"]["mae"]
    assert pooled_mae["n"] == 2 and pooled_mae["std"] > 0  # two sampling seeds differ
    assert list(fake["summary"]["by_gap"]["change_mae"]) == ["0–6", "6–12", "≥12"]
    calibration = results["calibration"]
    assert set(calibration) == {"true law (oracle)", "copy_forward", "linear", "fake"}
    # a deterministic forecast is a point: its central interval covers (almost) nothing
    assert calibration["copy_forward"]["coverage"]["0.5"] < 0.05
    assert calibration["true law (oracle)"]["coverage"]["0.5"] > 0.3
    markdown = (out / "tiny.md").read_text()
    assert "change MAE vs copy-forward" in markdown and "absent: skipped" in markdown


def test_leave_one_patient_out_folds_use_the_checkpoint_that_held_the_patient_out(
    tiny, helpers, monkeypatch
):
    monkeypatch.setattr(helpers.forecast, "load_sampler", lambda path: FakeSampler())
    patients = [
        p for p, s in zip(tiny.cohort.subject_ids, tiny.cohort.split, strict=True) if s == "test"
    ]
    first, second = patients[:2]
    fold = save_checkpoint(tiny.tmp / "fold.ckpt", 60.0, **tiny.data, test_patients=[first])
    params = {
        "name": "lopo",
        "data": tiny.data,
        "seeds": [0],
        "gap_bins": [0, 12],
        "panels": 1,
        "calibration": {"enabled": False},
        "baselines": ["copy_forward"],
        "models": {"lopo": {"folds": {first: fold, second: str(tiny.tmp / "missing.ckpt")}}},
    }
    report = helpers.forecast.run(params, tiny.tmp / "lopo")
    lopo = report.results["models"]["lopo"]
    assert lopo["patients"] == [first] and not lopo["complete"]
    assert report.results["calibration"] is None
    assert any("not evaluated" in n for n in report.results["notes"])
    # a fold whose checkpoint trained on its patient is refused
    leaky = save_checkpoint(tiny.tmp / "leaky.ckpt", 60.0, **tiny.data, test_patients=[second])
    params["models"] = {"lopo": {"folds": {first: leaky}}}
    with pytest.raises(ValueError, match="did not hold it out"):
        helpers.forecast.run(params, tiny.tmp / "leaky")


def test_checkpoints_are_checked_against_the_benchmark_data(tiny, helpers):
    models = helpers.forecast_models
    dataset = tiny.cohort.to_longitudinal()
    test = {
        p for p, s in zip(tiny.cohort.subject_ids, tiny.cohort.split, strict=True) if s == "test"
    }
    info = models.CheckpointInfo(10.0, dict(tiny.data))
    assert models.check_data("a.ckpt", info, tiny.data) is None
    assert models.held_out_patients(info.datamodule, dataset) == test
    other = models.CheckpointInfo(10.0, {**tiny.data, "seed": 1})
    with pytest.raises(ValueError, match=r"trained on other data .*seed"):
        models.check_data("b.ckpt", other, tiny.data)
    unchecked = models.check_data("c.ckpt", models.CheckpointInfo(None, None), tiny.data)
    assert "not checked" in unchecked
    # a single checkpoint serves only the evaluated patients it held out
    patients = sorted(test | {tiny.cohort.subject_ids[0]})
    plan = models.plan_model("m", {"checkpoint": __file__}, patients)
    models.assign_checkpoints(plan, {__file__: info}, tiny.data, dataset)
    assert set(plan.runs[0].checkpoints) == test and "held-out patients only" in plan.notes[0]
    with pytest.raises(ValueError, match="exactly one of"):
        models.plan_model("m", {"checkpoint": "a", "folds": {"p": "b"}}, patients)


def test_calibration_refuses_levels_its_samples_cannot_resolve(tiny, helpers):
    cases = helpers.forecast_cases.build_cases(
        tiny.cohort.to_longitudinal(), tiny.cohort.subject_ids[:2], 32
    )
    assert len(cases) == sum(n * (n - 1) // 2 for n in tiny.cohort.n_visits[:2])
    with pytest.raises(ValueError, match="needs model_samples >= 19"):
        helpers.forecast_calibration.calibrate(
            {}, tiny.cohort, cases, lesion_rule("ga"), {"model_samples": 4, "levels": [0.9]}
        )


@pytest.mark.parametrize("name", ["synthprog.yaml", "ms_pairs.yaml"])
def test_benchmark_specs_parse(name, helpers):
    spec = load_spec(BENCH / name)
    params = spec["params"]
    assert spec["script_path"].name == "forecast.py" and params["name"] == spec["name"]
    assert set(params["data"]) <= {"dataset", "config", "n_subjects", "seed", "resolution"}
    for model, entry in params["models"].items():
        plan = helpers.forecast_models.plan_model(model, entry, ["patient01", "ga-0000"])
        assert plan.name == model


@pytest.mark.data
def test_real_ms_pairs_with_the_baselines(ms_root, helpers, tmp_path):
    spec = load_spec(BENCH / "ms_pairs.yaml")
    params = {**spec["params"], "models": {}, "test_patients": ["patient12"], "panels": 1}
    report = helpers.forecast.run(params, tmp_path)
    results = report.results
    assert results["dataset"]["mask_meaning"] == "change" and results["calibration"] is None
    cases = helpers.forecast_cases.build_cases(
        helpers.forecast_cases.load_data(params["data"])[0], ["patient12"], 64
    )
    changed = cases.change.reshape(len(cases), -1).any(axis=1)
    assert results["dataset"]["cases"] == len(cases) and 0 < changed.sum() < len(cases)
    copy = results["models"]["copy_forward"]["summary"]["overall"]
    # copy-forward predicts no change: Dice 1 on unchanged slices, 0 on the others
    assert copy["dice"]["mean"] == pytest.approx(1 - changed.mean())
    assert copy["dice_present"]["mean"] == 0.0
    assert results["models"]["copy_forward"]["summary"]["defined"]["hd95"] == (~changed).sum()
    assert results["rule_ceiling"]["dice_present"]["mean"] > 0.0  # the true image, same rule
