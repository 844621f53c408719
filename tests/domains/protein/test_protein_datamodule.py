"""ProteinDataModule: token-budget batches, scaled translations, chain split, configs that train."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sciflow_domains.protein.datamodule import ProteinDataModule, token_budget_batches
from sciflow_domains.protein.frames import backbone_from_frames

from sciflow.api import instantiate_model_config
from sciflow.cli import main
from sciflow.geometry.quaternion import exp, multiply, rotate

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "configs" / "protein" / "smoke.yaml"
LENGTHS = (12, 20, 31, 45, 50, 64, 70, 90)


def _chain(length: int, seed: int) -> np.ndarray:
    """(L, 4, 3) backbone atoms of a helix-like walk of ideal frames, far from the origin."""
    g = torch.Generator().manual_seed(seed)
    turns = exp(0.3 + 0.1 * torch.randn(length, 3, generator=g))
    quats = [torch.tensor([1.0, 0.0, 0.0, 0.0])]
    for turn in turns[1:]:
        quats.append(multiply(quats[-1], turn))
    quats = torch.stack(quats)
    trans = torch.cumsum(rotate(quats, torch.tensor([3.8, 0.0, 0.0]).expand(length, 3)), 0)
    return backbone_from_frames(quats, trans + 50.0).numpy().astype(np.float32)


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory) -> Path:
    """A bundled-format npz (coords, chain_offsets, res_id; no chains.csv) of 8 chains."""
    coords = [_chain(n, seed) for seed, n in enumerate(LENGTHS)]
    path = tmp_path_factory.mktemp("protein") / "backbones.npz"
    offsets = np.concatenate([[0], np.cumsum(LENGTHS)]).astype(np.int64)
    res_id = np.concatenate([np.arange(1, n + 1) for n in LENGTHS]).astype(np.int32)
    np.savez(path, coords=np.concatenate(coords), chain_offsets=offsets, res_id=res_id)
    return path


def _module(path, **kwargs) -> ProteinDataModule:
    options = {"min_length": 16, "max_length": 48, "max_tokens": 100, "val_fraction": 0.25}
    options["max_breaks"] = 1000  # the synthetic walks do not keep C-N bonds
    module = ProteinDataModule(str(path), **{**options, **kwargs})
    module.setup("fit")
    return module


def test_token_budget_batches_group_by_length():
    batches = token_budget_batches([5, 30, 10, 30, 12, 5], max_tokens=30)
    assert batches == [[0, 5, 2], [4], [1], [3]]
    with pytest.raises(ValueError, match="max_tokens"):
        token_budget_batches([40], max_tokens=30)


def test_batches_respect_budget_masks_and_scaled_centred_translations(tiny_npz):
    module = _module(tiny_npz)
    assert len(module.splits["train"]) + len(module.splits["val"]) == 7  # 12 is too short
    seen = 0
    for batch in module.train_dataloader():
        b, n = batch["mask"].shape
        assert (
            b * n <= 100 and batch["rot"].shape == (b, n, 4) and batch["trans"].shape == (b, n, 3)
        )
        lengths = batch["mask"].sum(1)
        assert lengths.max() == n and (lengths <= 48).all()
        assert torch.equal(batch["mask"], torch.arange(n) < lengths[:, None])
        w = batch["mask"].unsqueeze(-1).float()
        centroid = (batch["trans"] * w).sum(1) / w.sum(1)
        assert centroid.abs().max() < 1e-5
        assert torch.allclose(batch["rot"].norm(dim=-1), torch.ones(b, n), atol=1e-5)
        seen += b
    assert seen == len(module.splits["train"])
    raw = _module(tiny_npz, trans_scale=1.0)
    scaled, plain = next(iter(module.val_dataloader())), next(iter(raw.val_dataloader()))
    assert torch.allclose(scaled["trans"] * 10.0, plain["trans"], atol=1e-4)
    assert plain["trans"].abs().max() > 5.0  # Å before scaling, about 1 after


def test_split_is_by_chain_and_deterministic(tiny_npz):
    def chain_set(module, split):  # uncropped lengths are unique, so they name the chains
        return {len(frames["rot"]) for frames in module.splits[split]}

    first, again, other = (
        _module(tiny_npz, max_length=90, max_tokens=200, seed=seed) for seed in (0, 0, 3)
    )
    assert not chain_set(first, "train") & chain_set(first, "val")
    assert len(first.splits["val"]) == 2
    for split in ("train", "val"):
        assert chain_set(first, split) == chain_set(again, split)
    cropped = _module(tiny_npz)
    epoch = [torch.cat([b["rot"].flatten() for b in cropped.train_dataloader()]) for _ in "ab"]
    assert torch.equal(epoch[0], epoch[1])  # same seed and epoch: same crops and order
    sampler = _module(tiny_npz, max_tokens=48).train_dataloader().sampler  # one chain a batch
    orders = [list(sampler), list(sampler)]
    sampler.set_epoch(1)
    assert orders[0] == orders[1] and list(sampler) != orders[0]
    assert chain_set(first, "val") != chain_set(other, "val")


def test_num_chains_and_missing_file(tiny_npz, tmp_path):
    assert len(_module(tiny_npz, num_chains=4, val_fraction=0.5).splits["train"]) == 2
    missing = tmp_path / "nowhere" / "backbones.npz"
    with pytest.raises(FileNotFoundError, match="SCIFLOW_DATA_DIR") as info:
        ProteinDataModule(str(missing)).setup("fit")
    assert str(missing) in str(info.value) and "registered" in str(info.value)


def test_smoke_config_fast_dev_run_on_tiny_npz(tiny_npz, tmp_path):
    main(
        [
            "fit",
            "--config",
            str(SMOKE),
            "--trainer.fast_dev_run",
            "1",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--data.init_args.path",
            str(tiny_npz),
            "--data.init_args.min_length",
            "16",
            "--data.init_args.max_breaks",
            "1000",
        ]
    )


def test_smoke_config_trains_on_real_data_and_reloads(real_npz, tmp_path):
    main(["fit", "--config", str(SMOKE), "--trainer.default_root_dir", str(tmp_path)])
    checkpoint = next(tmp_path.rglob("last.ckpt"))
    state = torch.load(checkpoint, weights_only=False)
    task = instantiate_model_config(state["sciflow"]["model_config"])
    task.load_state_dict(state["state_dict"])
    mask = torch.ones(2, 16, dtype=torch.bool)
    rot = task.engine.sample(task.network, 2, context={"mask": mask}, num_steps=5).x["rot"]
    assert rot.shape == (2, 16, 4) and torch.isfinite(rot).all()
    assert rot.norm(dim=-1).sub(1).abs().max() < 1e-5
