"""Population distances: exact W1/W2 against closed forms and POT's Gaussian reference, the RBF
MMD against its definition, the correlation scores, and the summary over populations."""

from __future__ import annotations

import numpy as np
import pytest
from sciflow_domains.singlecell.metrics import (
    corr_pairwise,
    mmd_rbf,
    population_metrics,
    r2_means,
    summarise,
    wasserstein,
)
from scipy.linalg import sqrtm
from scipy.stats import wasserstein_distance


def _bures_w2(m1, c1, m2, c2) -> float:
    root = sqrtm(c1)
    cross = sqrtm(root @ c2 @ root).real
    return float(np.sqrt(np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * cross)))


def test_w2_of_a_linear_monge_map_is_its_cost_and_the_gaussian_closed_form():
    """y = A x + b with A symmetric positive definite is the gradient of a convex function, so
    it is the optimal map between the empirical measures: W2 equals its transport cost exactly,
    and for x ~ N(m, C) it estimates the Gaussian (Bures) W2 of N(m, C) and N(Am + b, ACA)."""
    import ot

    rng = np.random.default_rng(0)
    mean, cov = np.array([0.5, -1.0]), np.array([[1.0, 0.3], [0.3, 0.5]])
    a, b = np.array([[1.5, 0.4], [0.4, 0.8]]), np.array([2.0, 1.0])
    x = rng.multivariate_normal(mean, cov, size=1500)
    y = x @ a.T + b
    cost = np.sqrt(np.mean(np.sum((y - x) ** 2, axis=1)))
    assert wasserstein(x, y) == pytest.approx(cost, rel=1e-9)
    closed = _bures_w2(mean, cov, a @ mean + b, a @ cov @ a.T)
    reference = float(
        ot.gaussian.bures_wasserstein_distance(mean, a @ mean + b, cov, a @ cov @ a.T)
    )
    assert reference == pytest.approx(closed, rel=1e-6)
    assert wasserstein(x, y) == pytest.approx(closed, rel=0.03)  # sampling error of 1500 points


def test_w2_of_independent_gaussian_samples_approaches_the_closed_form():
    rng = np.random.default_rng(1)
    m1, c1 = np.zeros(2), np.eye(2)
    m2, c2 = np.array([3.0, 0.0]), np.diag([4.0, 0.25])
    x = rng.multivariate_normal(m1, c1, size=2000)
    y = rng.multivariate_normal(m2, c2, size=2000)
    assert wasserstein(x, y) == pytest.approx(_bures_w2(m1, c1, m2, c2), rel=0.05)


def test_w1_in_one_dimension_equals_scipy_and_shift_is_exact():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(300, 1)), rng.exponential(size=(200, 1))
    assert wasserstein(x, y, p=1) == pytest.approx(wasserstein_distance(x[:, 0], y[:, 0]), rel=1e-9)
    z = rng.normal(size=(100, 3))
    shift = np.array([1.0, -2.0, 2.0])
    assert wasserstein(z, z + shift, p=1) == pytest.approx(3.0, rel=1e-9)
    assert wasserstein(z, z + shift, p=2) == pytest.approx(3.0, rel=1e-9)


def test_mmd_matches_its_definition_and_vanishes_on_equal_samples():
    x = np.array([[0.0, 0.0], [1.0, 0.0]])
    y = np.array([[0.0, 2.0]])
    gammas = (0.5, 2.0)
    expected = np.mean([
        (2 + 2 * np.exp(-g)) / 4 + 1 - 2 * (np.exp(-4 * g) + np.exp(-5 * g)) / 2 for g in gammas
    ])  # fmt: skip
    assert mmd_rbf(x, y, gammas) == pytest.approx(expected, rel=1e-12)
    assert mmd_rbf(x, x) == pytest.approx(0.0, abs=1e-15)


def test_correlation_scores():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 5)) @ rng.normal(size=(5, 5))
    assert corr_pairwise(x, x) == pytest.approx(1.0)
    assert r2_means(x + 1e-3, x + np.arange(5) * 0) == pytest.approx(1.0)
    assert np.isnan(corr_pairwise(x[:, :2], x[:, :2]))  # one pair of features: no correlation
    assert np.isnan(r2_means(x[:, :2], x[:, :2]))


def test_population_metrics_subsample_and_summary():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(700, 4)), rng.normal(size=(300, 4)) + 1.0
    result = population_metrics(x, y, max_cells=200, seed=0)
    assert (result["num_predicted"], result["num_observed"]) == (200, 200)
    assert result == population_metrics(x, y, max_cells=200, seed=0)
    summary = summarise([{**result, "w2": 1.0}, {**result, "w2": 3.0}])
    assert summary["w2"] == {"mean": 2.0, "std": 1.0}
    assert summary["num_populations"] == 2
    with pytest.raises(ValueError, match="x has 4 features, y has 3"):
        population_metrics(x, y[:, :3])
    with pytest.raises(ValueError, match="NaN or inf"):
        population_metrics(np.full((3, 4), np.nan), y)
