"""Reflow pairs: selection by score, validation of requests, and clear errors on bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sciflow.api import SampleResult
from sciflow.reflow import ReflowPairs, generate_pairs
from sciflow.reflow.pairs import pad_rows


class FakeSampler:
    """Returns noise i and sample 10·i for request seed i (one row each)."""

    def sample(self, num_samples, seed, **_):
        x = torch.full((num_samples, 2), float(seed))
        return SampleResult({"x": 10 * x}, torch.zeros(2), 1, noise={"x": x})


def _score(result):
    return -result.samples["x"][:, 0]  # prefers small samples


def test_keeps_the_best_scored_pairs_in_their_order():
    requests = [{"num_samples": 1, "seed": s} for s in (3, 1, 4, 0, 2)]
    pairs = generate_pairs(FakeSampler(), requests, score=_score, keep_fraction=0.4,
                           progress=False)  # fmt: skip
    assert pairs.x0["x"][:, 0].tolist() == [1.0, 0.0]  # seeds 1 and 0, in drawing order
    torch.testing.assert_close(pairs.x1["x"], 10 * pairs.x0["x"])
    assert pairs.meta == {
        "generated": 5, "score": "_score", "min_kept_score": -10.0,
        "mean_score_generated": -20.0, "mean_score_kept": -5.0, "kept": 2,
    }  # fmt: skip


def test_request_validation():
    with pytest.raises(ValueError, match="needs a score"):
        generate_pairs(FakeSampler(), [{"num_samples": 1, "seed": 0}], keep_fraction=0.5)
    with pytest.raises(ValueError, match="keep_fraction"):
        generate_pairs(FakeSampler(), [{"num_samples": 1, "seed": 0}], keep_fraction=0.0)
    with pytest.raises(ValueError, match="at least one"):
        generate_pairs(FakeSampler(), [], progress=False)


def test_indexed_parts_are_refused():
    class IndexedSampler(FakeSampler):
        def sample(self, num_samples, seed, **_):
            result = super().sample(num_samples, seed)
            result.context = {"index": torch.zeros(num_samples, dtype=torch.long)}
            return result

    with pytest.raises(ValueError, match="indexed parts"):
        generate_pairs(IndexedSampler(), [{"num_samples": 2, "seed": 0}], progress=False)


def test_save_load_round_trip_and_bad_files(tmp_path):
    pairs = generate_pairs(FakeSampler(), [{"num_samples": 2, "seed": 1}], progress=False)
    loaded = ReflowPairs.load(pairs.save(tmp_path / "p.npz"))
    assert torch.equal(loaded.x0["x"], pairs.x0["x"]) and loaded.meta == pairs.meta
    with pytest.raises(FileNotFoundError, match="sciflow reflow"):
        ReflowPairs.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", **{"x0/x": np.zeros((2, 2)), "x1/x": np.zeros((3, 2))})
    with pytest.raises(ValueError, match=r"bad.npz: x0/x has shape \(2, 2\) but x1/x has"):
        ReflowPairs.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "empty.npz", other=np.zeros(1))
    with pytest.raises(ValueError, match="matching x0/<part> and x1/<part>"):
        ReflowPairs.load(tmp_path / "empty.npz")


def test_pad_rows_repeats_the_first_element_and_pads_masks_with_false():
    a = torch.tensor([[[1.0], [2.0]]])
    b = torch.tensor([[[5.0], [6.0], [7.0]]])
    expected = torch.tensor([[[1.0], [2.0], [1.0]], [[5.0], [6.0], [7.0]]])
    torch.testing.assert_close(pad_rows([a, b], 3), expected)
    masks = pad_rows([torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 3, dtype=torch.bool)], 3)
    assert masks.tolist() == [[True, True, False], [True, True, True]]
