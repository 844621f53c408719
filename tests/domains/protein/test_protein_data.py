"""Bundled backbone data, filters, the frames dataset and padded collation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from sciflow_domains.protein.data import (
    BackboneFrames,
    collate_padded,
    filter_backbones,
    load_backbones_npz,
)
from sciflow_domains.protein.io import Backbone


def _toy(length: int, breaks=(), coil=None, name="t") -> Backbone:
    g = np.random.default_rng(length)
    x = np.cumsum(g.normal(size=(length, 4, 3)), axis=0)
    return Backbone(name, x, np.arange(length), "G" * length, np.array(breaks, int), coil)


def test_load_real_npz_and_filter(caplog, real_npz):
    chains = load_backbones_npz(real_npz)
    assert len(chains) == 749 and chains[0].name == "1A2K_l_u_B"
    assert sum(len(bb.breaks) == 0 for bb in chains) == 472  # README: 472 break-free chains
    with caplog.at_level(logging.INFO):
        kept = filter_backbones(chains, 40, 300, max_breaks=0)
    assert len(kept) == 418  # README: 418 break-free chains of 40-300 residues
    assert "kept 418 of 749" in caplog.text and "too many breaks" in caplog.text


def test_npz_without_csv_and_bad_npz(tmp_path):
    coords = np.stack([_toy(10).coords, _toy(10).coords]).reshape(20, 4, 3)
    np.savez(tmp_path / "b.npz", coords=coords, chain_offsets=np.array([0, 10, 20]))
    chains = load_backbones_npz(tmp_path / "b.npz")
    assert [bb.name for bb in chains] == ["chain0", "chain1"] and chains[1].sequence == "X" * 10
    np.savez(tmp_path / "c.npz", coords=coords, chain_offsets=np.array([0, 30]))
    with pytest.raises(ValueError, match=r"c\.npz.*chain_offsets"):
        load_backbones_npz(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", coords=coords)
    with pytest.raises(ValueError, match=r"d\.npz.*'chain_offsets'"):
        load_backbones_npz(tmp_path / "d.npz")


def test_filter_reasons_and_unknown_coil(caplog):
    chains = [
        _toy(5),
        _toy(50),
        _toy(30, breaks=[3]),
        _toy(30, coil=0.9),
        _toy(30, coil=0.2),
        _toy(31),
    ]
    with caplog.at_level(logging.INFO):
        kept = filter_backbones(chains, 10, 40, max_breaks=0, max_coil_fraction=0.5)
    assert [len(bb) for bb in kept] == [30, 31]
    for words in (
        "kept 2 of 6",
        "1 too short",
        "1 too long",
        "1 too many breaks",
        "1 too much coil",
        "unknown (kept, not checked) for 1",
    ):
        assert words in caplog.text


def test_dataset_items_are_centred_frames_and_crops_are_seeded():
    chains = [_toy(20), _toy(70)]
    ds = BackboneFrames(chains, max_length=32, seed=3)
    short, long = ds[0], ds[1]
    assert short["rot"].shape == (20, 4) and short["trans"].shape == (20, 3)
    assert long["rot"].shape == (32, 4) and long["rot"].dtype == torch.float32
    torch.testing.assert_close(long["trans"].mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(long["rot"].norm(dim=-1), torch.ones(32))
    torch.testing.assert_close(BackboneFrames(chains, 32, seed=3)[1]["rot"], long["rot"])
    # the crop is a window of the full chain's frames
    full = BackboneFrames(chains)[1]["rot"]
    assert any(torch.equal(full[s : s + 32], long["rot"]) for s in range(70 - 32 + 1))
    starts = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        starts.add(tuple(ds[1]["rot"][0].tolist()))
    assert len(starts) > 1


def test_collate_padded_shapes_and_mask():
    ds = BackboneFrames([_toy(5), _toy(9), _toy(7)])
    batch = collate_padded([ds[i] for i in range(3)])
    assert batch["rot"].shape == (3, 9, 4) and batch["trans"].shape == (3, 9, 3)
    assert batch["mask"].dtype == torch.bool
    assert batch["mask"].sum(1).tolist() == [5, 9, 7]
    pad = ~batch["mask"]
    torch.testing.assert_close(
        batch["rot"][pad], torch.tensor([[1.0, 0, 0, 0]]).expand(int(pad.sum()), 4)
    )
    assert (batch["trans"][pad] == 0).all()
    torch.testing.assert_close(batch["rot"][0, :5], ds[0]["rot"])
    with pytest.raises(ValueError, match="items"):
        collate_padded([])
