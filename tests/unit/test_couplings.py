"""Minibatch couplings: exact OT is a permutation and lowers the transport cost."""

import pytest
import torch

from sciflow.couplings import (
    ExactOTCoupling,
    IndependentCoupling,
    SinkhornCoupling,
    pairwise_sq_cost,
)
from sciflow.manifolds import Euclidean, FlatTorus, UnitQuaternion


def _batch(n, seed):
    g = torch.Generator().manual_seed(seed)
    parts = {"rot": UnitQuaternion(), "trans": Euclidean(3), "frac": FlatTorus(3)}
    return {k: m.random(n, generator=g, dtype=torch.float64) for k, m in parts.items()}, parts


def _cost(x0, x1, parts):
    return pairwise_sq_cost(x0, x1, parts).diagonal().sum()


def test_exact_ot_is_a_permutation_that_beats_independent():
    x0, parts = _batch(128, 0)
    x1, _ = _batch(128, 1)
    perm = ExactOTCoupling().permutation(x0, x1, parts)
    assert sorted(perm.tolist()) == list(range(128))  # nothing duplicated or dropped
    paired = ExactOTCoupling()(x0, x1, parts)
    for name in parts:
        assert torch.equal(paired[name], x0[name][perm])
    independent = IndependentCoupling()(x0, x1, parts)
    assert _cost(paired, x1, parts) < 0.8 * _cost(independent, x1, parts)


def test_exact_ot_is_optimal_against_every_permutation_on_a_small_batch():
    import itertools

    x0, parts = _batch(6, 2)
    x1, _ = _batch(6, 3)
    best = _cost(ExactOTCoupling()(x0, x1, parts), x1, parts)
    for perm in itertools.permutations(range(6)):
        other = {k: v[list(perm)] for k, v in x0.items()}
        assert best <= _cost(other, x1, parts) + 1e-12


def test_ot_cost_is_manifold_aware_on_the_torus():
    torus = {"x": FlatTorus(1, period=1.0)}
    x0 = {"x": torch.tensor([[0.02], [0.5]], dtype=torch.float64)}
    x1 = {"x": torch.tensor([[0.52], [0.98]], dtype=torch.float64)}
    # 0.02 and 0.98 are 0.04 apart across the seam; a Euclidean cost would pair them crosswise.
    perm = ExactOTCoupling().permutation(x0, x1, torus)
    assert perm.tolist() == [1, 0]


def test_sinkhorn_plan_has_uniform_marginals_and_near_optimal_cost():
    x0, parts = _batch(64, 4)
    x1, _ = _batch(64, 5)
    cost = pairwise_sq_cost(x0, x1, parts)
    plan = SinkhornCoupling(reg=0.05).plan(x0, x1, parts)
    uniform = torch.full((64,), 1 / 64, dtype=plan.dtype)
    assert torch.allclose(plan.sum(0), uniform, atol=1e-6)
    assert torch.allclose(plan.sum(1), uniform, atol=1e-3)
    exact = _cost(ExactOTCoupling()(x0, x1, parts), x1, parts) / 64
    entropic = (plan * cost).sum()
    independent = cost.mean()
    assert exact <= entropic < exact + 0.25 * (independent - exact)
    paired = SinkhornCoupling(reg=0.05)(x0, x1, parts, generator=torch.Generator().manual_seed(0))
    assert _cost(paired, x1, parts) / 64 < exact + 0.25 * (independent - exact)


def test_mismatched_shapes_and_sizes_raise_named_errors():
    parts = {"x": Euclidean(2)}
    with pytest.raises(ValueError, match="x: prior and data"):
        pairwise_sq_cost({"x": torch.zeros(4, 3, 2)}, {"x": torch.zeros(4, 2, 2)}, parts)
    with pytest.raises(ValueError, match="equal batch sizes"):
        ExactOTCoupling()({"x": torch.zeros(4, 2)}, {"x": torch.zeros(5, 2)}, parts)
    with pytest.raises(ValueError, match="reg"):
        SinkhornCoupling(reg=0)


def test_network_simplex_and_hungarian_find_the_same_optimal_cost():
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    from sciflow.couplings import _network_simplex_permutation

    x0, parts = _batch(128, 6)
    x1, _ = _batch(128, 7)
    cost = pairwise_sq_cost(x0, x1, parts).numpy()
    order = _network_simplex_permutation(cost)
    assert order is not None and sorted(order.tolist()) == list(range(128))
    rows, cols = linear_sum_assignment(cost)
    assert np.isclose(cost[order, np.arange(128)].sum(), cost[rows, cols].sum(), rtol=1e-12)
