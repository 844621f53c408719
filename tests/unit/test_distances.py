"""Distribution distances: exact W2 against closed forms; MMD and energy distance separate."""

import math

import pytest
import torch

from sciflow.evaluation.distances import energy_distance, mmd, wasserstein
from sciflow.manifolds import Euclidean, FlatTorus, UnitQuaternion


def test_w2_of_a_translated_sample_is_the_translation():
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shift = torch.tensor([0.3, -0.4, 1.2], dtype=torch.float64)
    assert wasserstein(x, x + shift, Euclidean(3)) == pytest.approx(shift.norm().item(), rel=1e-9)
    assert wasserstein(x, x[torch.randperm(200)], Euclidean(3)) == pytest.approx(0.0, abs=1e-12)


def test_w2_on_the_torus_uses_the_wrapped_distance():
    x = torch.tensor([[0.05], [0.55]], dtype=torch.float64)
    y = torch.tensor([[0.95], [0.45]], dtype=torch.float64)
    assert wasserstein(x, y, FlatTorus(1)) == pytest.approx(0.1, rel=1e-9)


def test_w2_on_so3_is_the_rotation_angle_for_a_common_rotation():
    from sciflow.geometry import quaternion

    g = torch.Generator().manual_seed(1)
    q = quaternion.random_uniform(64, generator=g, dtype=torch.float64)
    turn = quaternion.exp(torch.tensor([[0.0, 0.0, 0.3]], dtype=torch.float64))
    moved = quaternion.multiply(q, turn.expand(64, 4))
    assert wasserstein(q, moved, UnitQuaternion()) <= 0.3 + 1e-9


def test_product_w2_combines_parts_as_the_product_metric():
    x = {"a": torch.zeros(10, 2, dtype=torch.float64), "b": torch.zeros(10, 1, dtype=torch.float64)}
    y = {
        "a": torch.full((10, 2), 0.3, dtype=torch.float64),
        "b": torch.full((10, 1), 0.4, dtype=torch.float64),
    }
    parts = {"a": Euclidean(2), "b": Euclidean(1)}
    assert wasserstein(x, y, parts) == pytest.approx(math.sqrt(0.18 + 0.16), rel=1e-9)


def test_mmd_and_energy_distance_separate_different_distributions():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(300, 2, generator=g), torch.randn(300, 2, generator=g)
    c = torch.randn(300, 2, generator=g) + 1.0
    for metric in (mmd, energy_distance):
        same, different = metric(a, b, Euclidean(2)), metric(a, c, Euclidean(2))
        assert different > 10 * abs(same)


def test_unequal_sizes_and_wrong_types_raise():
    with pytest.raises(ValueError, match="equal sample sizes"):
        wasserstein(torch.zeros(3, 2), torch.zeros(4, 2), Euclidean(2))
    with pytest.raises(TypeError, match="dict"):
        wasserstein({"a": torch.zeros(3, 2)}, torch.zeros(3, 2), Euclidean(2))
