"""The user surfaces end to end: configs parse, `sciflow fit` trains, checkpoints reload."""

import importlib
import re
from pathlib import Path

import pytest
import torch
import yaml

import sciflow
from sciflow.cli import main
from sciflow.training import TrainingTask

ROOT = Path(__file__).resolve().parents[2]
# Training configs (`sciflow fit`); other yaml files under configs/ (e.g. the medical SynthProg
# generator's parameters) are read and tested by their own domain.
CONFIGS = sorted(
    p
    for p in (ROOT / "configs").rglob("*.yaml")
    if "class_path" in (yaml.safe_load(p.read_text()).get("model") or {})
)
# Override configs (an ablation, another seed) name their base in their usage line:
# `sciflow fit --config BASE --config THIS`.
USAGE = re.compile(r"sciflow fit --config (\S+) --config (\S+)")
OVERRIDES = sorted(
    (ROOT / m.group(1), p)
    for p in (ROOT / "configs").rglob("*.yaml")
    for m in USAGE.finditer(p.read_text())
    if ROOT / m.group(2) == p
)
SHORT_RUN = {
    "trainer.max_epochs": "1",
    "trainer.limit_train_batches": "4",
    "trainer.limit_val_batches": "1",
    "trainer.enable_progress_bar": "false",
    "data.init_args.num_train": "1024",
}


def run_cli(command: str, config, options: dict) -> None:
    """``sciflow COMMAND --config CONFIG --key value ...`` in-process."""
    args = [command, "--config", str(config)]
    for key, value in options.items():
        args += [f"--{key}", str(value)]
    main(args)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    module, _, name = printed["model"]["class_path"].rpartition(".")
    assert issubclass(getattr(importlib.import_module(module), name), TrainingTask)


def _leaves(tree: dict, prefix: tuple = ()):
    """(path, value) of every non-dict, non-list value of a nested mapping."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, (*prefix, key))
        elif not isinstance(value, list):
            yield (*prefix, key), value


@pytest.mark.parametrize("base, override", OVERRIDES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_override_config_parses_on_its_base_and_takes_effect(base, override, capsys):
    assert base in CONFIGS, f"{override}: its usage line names {base}, not a training config"
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(base), "--config", str(override), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    for path, value in _leaves(yaml.safe_load(override.read_text())):
        got = printed
        for key in path:
            got = got[key]
        assert got == value, f"{override}: {'.'.join(path)} is {got!r}, expected {value!r}"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_trains_a_short_epoch_with_validation_sampling(config, tmp_path):
    engine = yaml.safe_load(config.read_text())["model"]["init_args"].get("engine")
    if engine is None:
        pytest.skip("no engine (a direct forecaster, e.g. medical): its domain's tests train it")
    parts = engine.get("init_args", {}).get("components", {}).values()
    if any(part.get("init_args", {}).get("layout") in ("padded", "indexed") for part in parts):
        pytest.skip(
            "padded or indexed parts: validation sampling metrics need dense parts "
            "(val_num_samples 0); the domain's own tests train these configs"
        )
    data = yaml.safe_load(config.read_text()).get("data", {}).get("class_path", "")
    if not data.startswith("sciflow."):
        pytest.skip("domain data (e.g. satellite tiles): the domain's own tests train it")
    run_cli(
        "fit",
        str(config),
        {
            **SHORT_RUN,
            "trainer.default_root_dir": str(tmp_path),
            "trainer.check_val_every_n_epoch": "1",
            "model.init_args.val_num_samples": "64",
        },
    )
    metrics = next(tmp_path.rglob("metrics.csv")).read_text()
    assert "val/loss" in metrics and ("val/w2" in metrics or "val/tv_" in metrics)
    assert list(tmp_path.rglob("*.ckpt")), "a checkpoint is written"


def test_malformed_config_names_the_bad_key(tmp_path, capsys):
    config = yaml.safe_load((ROOT / "configs/toy/se3_mixture.yaml").read_text())
    config["model"]["init_args"]["lr_schedule"] = "triangular"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(bad)])
    assert exit_info.value.code != 0
    assert "lr_schedule" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    run_cli(
        "fit",
        str(ROOT / "configs/toy/se3_mixture.yaml"),
        {
            **SHORT_RUN,
            "trainer.default_root_dir": str(run),
            "model.init_args.val_num_samples": "64",
        },
    )
    checkpoints = list(run.rglob("last.ckpt"))
    assert len(checkpoints) == 1
    assert list(run.rglob("config.yaml")), "the resolved config is saved beside the run"
    return checkpoints[0]


def test_fast_dev_run_of_the_smoke_config(tmp_path):
    run_cli(
        "fit",
        str(ROOT / "configs/toy/smoke.yaml"),
        {"trainer.default_root_dir": str(tmp_path), "trainer.fast_dev_run": "1"},
    )


def test_checkpoint_round_trips_through_load_sampler(trained_checkpoint):
    sampler = sciflow.load_sampler(trained_checkpoint)
    first = sampler.sample(num_samples=32, num_steps=8, seed=11)
    again = sciflow.load_sampler(trained_checkpoint).sample(num_samples=32, num_steps=8, seed=11)
    other = sampler.sample(num_samples=32, num_steps=8, seed=12)
    for name in ("rot", "trans"):
        assert torch.equal(first.samples[name], again.samples[name])
        assert not torch.equal(first.samples[name], other.samples[name])
    assert first.samples["rot"].norm(dim=-1).sub(1).abs().max() < 1e-5
    # EMA and raw weights are both stored and differ after training.
    raw = sciflow.load_sampler(trained_checkpoint, use_ema=False).sample(32, num_steps=8, seed=11)
    assert not torch.equal(raw.samples["trans"], first.samples["trans"])


def test_sample_command_writes_npz(trained_checkpoint, tmp_path):
    import numpy as np

    main(
        [
            "sample",
            "--checkpoint",
            str(trained_checkpoint),
            "--num-samples",
            "10",
            "--steps",
            "4",
            "--solver",
            "rk4",
            "--out",
            str(tmp_path),
        ]
    )
    data = np.load(tmp_path / "samples.npz")
    assert data["rot"].shape == (10, 4) and data["trans"].shape == (10, 3)


def test_sample_command_reports_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "--checkpoint", str(tmp_path / "missing.ckpt")])
    assert exit_info.value.code == 2
    assert "missing.ckpt" in capsys.readouterr().err


def test_unknown_solver_is_a_clear_error(trained_checkpoint):
    with pytest.raises(ValueError, match="method"):
        sciflow.load_sampler(trained_checkpoint).sample(4, solver="leapfrog")


def test_training_resumes_from_last_checkpoint(trained_checkpoint, tmp_path):
    state = torch.load(trained_checkpoint, weights_only=False)
    assert state["global_step"] == 4 and state["sciflow"]["domain"] == "toy"
    run_cli(
        "fit",
        str(ROOT / "configs/toy/se3_mixture.yaml"),
        {
            **SHORT_RUN,
            "trainer.default_root_dir": str(tmp_path),
            "trainer.max_epochs": "2",
            "ckpt_path": str(trained_checkpoint),
        },
    )
    resumed = torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=False)
    assert resumed["global_step"] == 2 * state["global_step"]
    # Training wall time is kept in checkpoints and adds up over resumed runs.
    first = state["sciflow"]["train_seconds"]
    assert 0 < first < resumed["sciflow"]["train_seconds"]
    loaded = sciflow.load_sampler(trained_checkpoint).task
    assert loaded.train_seconds == first and loaded.trained_steps == state["global_step"]


def test_domains_command_lists_the_plugins(capsys):
    main(["domains"])
    out = capsys.readouterr().out
    for name in ("toy", "protein", "crystal", "singlecell", "satellite", "medical"):
        assert name in out


def test_test_subcommand_reports_loss_and_w2(trained_checkpoint, tmp_path):
    import csv

    run_cli(
        "test",
        str(ROOT / "configs/toy/se3_mixture.yaml"),
        {
            "trainer.default_root_dir": str(tmp_path),
            "trainer.limit_test_batches": "2",
            "trainer.enable_progress_bar": "false",
            "model.init_args.val_num_samples": "64",
            "ckpt_path": str(trained_checkpoint),
        },
    )
    rows = list(csv.DictReader(next(tmp_path.rglob("metrics.csv")).open()))
    logged = {k for row in rows for k, v in row.items() if v}
    assert {"test/loss", "test/loss_rot", "test/loss_trans", "test/w2", "test/mmd"} <= logged


def test_bayesian_flow_config_trains_and_reloads(tmp_path):
    run_cli(
        "fit",
        str(ROOT / "configs/toy/bfn_mixed.yaml"),
        {
            **SHORT_RUN,
            "trainer.default_root_dir": str(tmp_path),
            "trainer.check_val_every_n_epoch": "1",
            "model.init_args.val_num_samples": "64",
        },
    )
    checkpoint = next(tmp_path.rglob("last.ckpt"))
    sampler = sciflow.load_sampler(checkpoint)
    first = sampler.sample(num_samples=16, seed=4)
    again = sciflow.load_sampler(checkpoint).sample(num_samples=16, seed=4, solver="vanilla")
    assert first.num_function_evals == 51  # n = 50 updates + the final prediction
    assert first.samples["label"].dtype == torch.int64 and first.samples["label"].shape == (16,)
    assert first.samples["angle"].shape == (16, 1) and first.samples["position"].shape == (16, 2)
    for name in first.samples:
        assert torch.equal(first.samples[name], again.samples[name])
    with pytest.raises(ValueError, match="num_steps"):
        sampler.sample(num_samples=4, num_steps=10)  # the von Mises schedule is tied to n = 50
    rows = (next(tmp_path.rglob("metrics.csv"))).read_text()
    assert "val/tv_label" in rows and "val/w2" in rows
