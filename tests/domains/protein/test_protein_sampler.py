"""Protein sampling: mixed lengths in one batch, PDB export and re-reading, seeds, reflow
requests and reflow pairs of mixed lengths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sciflow_domains.protein.io import read_structure
from sciflow_domains.protein.nets import FrameTransformer
from sciflow_domains.protein.sampler import ProteinSampler, ProteinSamples

from sciflow.engine import Engine, FlowComponent
from sciflow.manifolds import Euclidean, UnitQuaternion
from sciflow.reflow import ReflowPairs, generate_pairs
from sciflow.reflow.datamodule import ReflowDataModule
from sciflow.training import GenerativeTask


def _task(seed: int = 0) -> GenerativeTask:
    torch.manual_seed(seed)
    engine = Engine(
        {
            "rot": FlowComponent(UnitQuaternion(), prediction="x1", layout="padded"),
            "trans": FlowComponent(Euclidean(3), prediction="x1", layout="padded"),
        },
        t_max=0.99,
        self_conditioning=0.5,
    )
    task = GenerativeTask(
        engine,
        lambda e: FrameTransformer(e, hidden=16, depth=1, pair_dim=8, trans_scale=1.0,
                                   self_conditioning=True),
        ema_decay=0.0,
    )  # fmt: skip
    with torch.no_grad():  # a non-trivial update so that samples move away from the noise
        task.network.head[-1].weight.normal_(0.0, 0.2)
    return task


def test_mixed_lengths_in_one_batch_and_pdb_round_trip(tmp_path):
    sampler = ProteinSampler(_task())
    res = sampler.sample(lengths=[5, 9, 7], num_steps=4, seed=1)
    assert isinstance(res, ProteinSamples)
    assert res.samples["rot"].shape == (3, 9, 4) and res.samples["trans"].shape == (3, 9, 3)
    assert res.context["mask"].sum(1).tolist() == [5, 9, 7]
    backbones = res.to_backbones()
    assert [len(b) for b in backbones] == [5, 9, 7]
    atoms = res.atoms()
    # translations come back in Å: Cα equals 10 × the model's translation
    torch.testing.assert_close(atoms[..., 1, :].float(), 10 * res.samples["trans"], atol=1e-5,
                               rtol=0)  # fmt: skip
    paths = res.write_pdbs(tmp_path)
    assert [p.name for p in paths] == ["sample_000_len5.pdb", "sample_001_len9.pdb",
                                       "sample_002_len7.pdb"]  # fmt: skip
    for path, backbone in zip(paths, backbones, strict=True):
        (read,) = read_structure(path)
        np.testing.assert_allclose(read.coords, backbone.coords, atol=6e-4)
        assert read.sequence == "G" * len(backbone)


def test_seed_fixes_the_samples_and_noise_is_kept():
    sampler = ProteinSampler(_task())
    a = sampler.sample(lengths=[6, 4], num_steps=3, seed=7)
    b = sampler.sample(lengths=[6, 4], num_steps=3, seed=7)
    c = sampler.sample(lengths=[6, 4], num_steps=3, seed=8)
    assert torch.equal(a.samples["trans"], b.samples["trans"])
    assert not torch.equal(a.samples["trans"], c.samples["trans"])
    assert a.noise is not None and a.noise["rot"].shape == (2, 6, 4)
    assert len(a.to_backbones("noise")) == 2


def test_bad_requests_raise():
    sampler = ProteinSampler(_task())
    with pytest.raises(ValueError, match="lengths"):
        sampler.sample(num_samples=3)
    with pytest.raises(ValueError, match="num_samples=3 but 2 lengths"):
        sampler.sample(lengths=[4, 5], num_samples=3)
    with pytest.raises(ValueError, match="positive"):
        sampler.sample(lengths=[4, 0])


def test_reflow_requests_one_length_per_batch():
    requests = ProteinSampler(_task()).reflow_requests(70, 32, seed=3, length_range=(10, 20))
    assert [len(r["lengths"]) for r in requests] == [32, 32, 6]
    for r in requests:
        assert len(set(r["lengths"])) == 1 and 10 <= r["lengths"][0] <= 20
    assert len({r["seed"] for r in requests}) == len(requests)


def test_reflow_pairs_of_mixed_lengths_train(tmp_path):
    task = _task()
    sampler = ProteinSampler(task)
    requests = [{"lengths": [5] * 3, "seed": 0, "num_steps": 3},
                {"lengths": [8] * 2, "seed": 1, "num_steps": 3}]  # fmt: skip
    pairs = generate_pairs(sampler, requests, progress=False)
    path = pairs.save(tmp_path / "pairs.npz")
    loaded = ReflowPairs.load(path)
    assert len(loaded) == 5 and loaded.mask.sum(1).tolist() == [5, 5, 5, 8, 8]
    # padding repeats a valid point: every stored rotation is a unit quaternion
    torch.testing.assert_close(loaded.x0["rot"].norm(dim=-1), torch.ones(5, 8))
    # re-solving from the stored noise reproduces the stored sample
    again = task.engine.sample(
        sampler.network, 3, context={"mask": loaded.mask[:3, :5]}, num_steps=3,
        x0={k: v[:3, :5] for k, v in loaded.x0.items()},
    ).x  # fmt: skip
    torch.testing.assert_close(again["trans"], loaded.x1["trans"][:3, :5])
    data = ReflowDataModule(str(path), batch_size=2, val_fraction=0.2)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["x0"]["rot"].shape == batch["rot"].shape and batch["mask"].dtype == torch.bool
    loss = task.engine.loss(task.network, batch)
    assert torch.isfinite(loss.total)
