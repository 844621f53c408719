"""The protein workflow through the CLI on real chains: fit, sample PDBs, draw filtered reflow
pairs, fine-tune from the checkpoint on them (ReQFlow), and sample the fine-tuned model."""

from __future__ import annotations

from pathlib import Path

import torch
from sciflow_domains.protein.io import read_structure
from sciflow_domains.protein.sampler import ProteinSampler

from sciflow.api import instantiate_model_config, load_sampler
from sciflow.cli import main
from sciflow.reflow import ReflowPairs

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "configs" / "protein" / "smoke.yaml"
QUALITY = "sciflow_domains.protein.quality:backbone_quality"


def _fit(root: Path, *extra: str) -> Path:
    main(["fit", "--config", str(SMOKE), "--trainer.default_root_dir", str(root), *extra])
    return next(root.rglob("last.ckpt"))


def test_fit_sample_reflow_finetune(real_npz, tmp_path):
    checkpoint = _fit(tmp_path / "qflow")

    sampler = load_sampler(checkpoint)
    assert isinstance(sampler, ProteinSampler)
    main(["sample", "--checkpoint", str(checkpoint), "--lengths", "20,32", "--steps", "3",
          "--out", str(tmp_path / "samples")])  # fmt: skip
    pdbs = sorted((tmp_path / "samples").glob("*.pdb"))
    assert [p.name for p in pdbs] == ["sample_000_len20.pdb", "sample_001_len32.pdb"]
    assert [len(read_structure(p)[0]) for p in pdbs] == [20, 32]

    pairs_path = tmp_path / "pairs.npz"
    main(["reflow", "--checkpoint", str(checkpoint), "--out", str(pairs_path), "--num-pairs",
          "8", "--batch-size", "4", "--steps", "3", "--score", QUALITY,
          "--keep-fraction", "0.5"])  # fmt: skip
    pairs = ReflowPairs.load(pairs_path)
    assert pairs.meta["generated"] == 8 and pairs.meta["kept"] == 4 == len(pairs)
    assert pairs.meta["min_kept_score"] >= pairs.meta["mean_score_generated"] - 1e-12

    # warm start: a fresh task loads the checkpoint's EMA weights into network and EMA
    state = torch.load(checkpoint, weights_only=False)
    task = instantiate_model_config(state["sciflow"]["model_config"])
    task.load_weights(str(checkpoint))
    for name, value in task.network.state_dict().items():
        torch.testing.assert_close(value, state["state_dict"][f"ema.module.{name}"])

    tuned = _fit(
        tmp_path / "reqflow",
        "--model.init_args.init_from", str(checkpoint),
        "--data", "sciflow.reflow.ReflowDataModule",
        "--data.path", str(pairs_path),
        "--data.batch_size", "2",
        "--data.val_fraction", "0.25",
    )  # fmt: skip
    result = load_sampler(tuned).sample(lengths=[16], num_steps=2)
    assert result.samples["trans"].shape == (1, 16, 3)
    assert torch.isfinite(result.samples["trans"]).all()
