"""The synthetic letters benchmark: seeded, MFM's structure, population-dependent treatment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sciflow_domains.singlecell.letters import (
    CONDITION,
    TRAIN_LETTERS,
    LettersConfig,
    letter_points,
    make_letters,
    rotation,
    seen_pairs,
)


@pytest.fixture(scope="module")
def letters():
    return make_letters(seed=0)


def test_default_structure_is_mfm_split(letters):
    train, val, test = (letters.splits[s] for s in ("train", "val", "test"))
    assert TRAIN_LETTERS == "ABCDEFGHIJKLMNOPQRSTUVWZ" and len(train) == 240
    assert [p.population for p in train[:11]] == [f"A{r:02d}" for r in range(10)] + ["B00"]
    assert {p.meta["letter"] for p in train} == set(TRAIN_LETTERS)
    assert [p.population for p in val] == [f"X{r:02d}" for r in range(10)]
    assert [p.population for p in test] == [f"Y{r:02d}" for r in range(10)]
    assert letters.conditions == (CONDITION,) and letters.features == ("x", "y")
    assert letters.num_train_populations == 240 and len(letters.populations) == 260
    ids = [p.population_id for s in ("train", "val", "test") for p in letters.splits[s]]
    assert ids == list(range(260))
    for pair in train[::37] + val[:2] + test[:2]:
        assert pair.paired and pair.condition_id == 0
        n = len(letter_points(pair.meta["letter"]))
        assert pair.source.shape == pair.target.shape == (n, 2)
        assert pair.source.dtype == np.float32


def test_reproducible_with_a_seed_and_different_across_seeds(letters):
    config = LettersConfig(train_letters="AB", num_rotations=2)
    a, b = make_letters(config, seed=0), make_letters(config, seed=0)
    for split in ("train", "val", "test"):
        for p, q in zip(a.splits[split], b.splits[split], strict=True):
            np.testing.assert_array_equal(p.source, q.source)
            np.testing.assert_array_equal(p.target, q.target)
    # populations depend on (seed, split, letter, rotation) only
    np.testing.assert_array_equal(a.splits["test"][3].target, letters.splits["test"][3].target)
    np.testing.assert_array_equal(a.splits["train"][2].target, letters.splits["train"][10].target)
    other = make_letters(config, seed=1)
    assert not np.allclose(other.splits["test"][0].target, a.splits["test"][0].target)


def test_target_is_the_rotated_letter_and_source_its_noisy_copy(letters):
    angles = []
    for pair in letters.splits["train"][:10] + letters.splits["test"][:3]:
        glyph = letter_points(pair.meta["letter"])
        unrotated = pair.target @ rotation(pair.meta["angle"]).astype(np.float32)  # R^-1 = R^T
        deviation = unrotated - glyph
        assert abs(deviation.std() - 0.05) < 0.01 and np.abs(deviation.mean(0)).max() < 0.01
        noise = pair.source - pair.target
        assert abs(noise.std() - 0.5) < 0.05 and np.abs(noise.mean(0)).max() < 0.05
        angles.append(pair.meta["angle"])
        assert 0 <= pair.meta["angle"] < 2 * np.pi
    assert len(set(angles)) == len(angles)


def test_letter_points_keep_aspect_in_a_box_of_side_six():
    a, i = letter_points("A"), letter_points("I")
    assert len(a) == 1522
    for points in (a, i):
        extent = points.max(0) - points.min(0)
        assert np.isclose(extent.max(), 6.0)
        np.testing.assert_allclose((points.max(0) + points.min(0)) / 2, 0.0, atol=1e-9)
    assert (i.max(0) - i.min(0))[0] < 1.5  # "I" stays thin


def _knn_predict(source, target, query, k=25):
    """Mean target of the k nearest source cells of each query point."""
    dist = torch.cdist(torch.from_numpy(query), torch.from_numpy(source))
    nearest = dist.topk(k, largest=False).indices
    return torch.from_numpy(target)[nearest].mean(1).numpy()


def test_the_treatment_depends_on_the_population(letters):
    """E[target | source] estimated from one population predicts that population's targets
    well and another population's (same letter, other rotation) targets badly: no single map
    moves every population's source cells to its treated cells."""
    pairs = letters.splits["train"][:10]  # ten rotations of "A"
    gaps = [abs(np.angle(np.exp(1j * (p.meta["angle"] - pairs[0].meta["angle"])))) for p in pairs]
    own, other = pairs[0], pairs[int(np.argmax(gaps))]
    assert max(gaps) > np.pi / 2
    fit_src, fit_tgt = own.source[::2], own.target[::2]  # rows follow the pixels: interleave
    test_src, test_tgt = own.source[1::2], own.target[1::2]
    own_err = np.linalg.norm(_knn_predict(fit_src, fit_tgt, test_src) - test_tgt, axis=1).mean()
    other_err = np.linalg.norm(
        _knn_predict(other.source, other.target, test_src) - test_tgt, axis=1
    ).mean()
    identity_err = np.linalg.norm(test_src - test_tgt, axis=1).mean()
    # seed 0: own 0.52, other 0.78, identity 0.63 (mean distance to the true treated cell)
    assert own_err < 0.9 * identity_err  # the population's own map denoises
    assert other_err > 1.3 * own_err and other_err > identity_err  # another one's map does not


def test_config_options_and_errors():
    small = make_letters(LettersConfig(train_letters="AB", num_rotations=3, max_cells=100))
    assert len(small.splits["train"]) == 6
    assert all(p.source.shape == (100, 2) for s in small.splits.values() for p in s)
    with pytest.raises(ValueError, match="letter 'X' is also in train_letters"):
        LettersConfig(train_letters="ABX")
    with pytest.raises(ValueError, match="num_rotations"):
        LettersConfig(num_rotations=0)
    with pytest.raises(ValueError, match="distinct letters"):
        LettersConfig(train_letters="AA")


def test_seen_pairs_are_spread_over_training_populations(letters):
    seen = seen_pairs(letters, 10)
    assert len({p.population for p in seen}) == 10
    assert {p.population for p in seen} <= {p.population for p in letters.splits["train"]}
    assert seen[0].population == "A00" and seen[-1].population == "Z09"
