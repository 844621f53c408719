"""Properties of sciflow.geometry.so3: hat/vee, exp/log, distance, uniform and IGSO(3) sampling."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sciflow.geometry import quaternion as Q
from sciflow.geometry import so3

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _rotvecs(n, max_angle=math.pi, seed=0):
    axis = torch.randn(n, 3, generator=_gen(seed), dtype=F64)
    angle = max_angle * torch.rand(n, 1, generator=_gen(seed + 1), dtype=F64)
    return angle * axis / axis.norm(dim=-1, keepdim=True)


vectors = st.lists(st.floats(-3.0, 3.0, allow_nan=False), min_size=3, max_size=3)


@settings(max_examples=50, deadline=None)
@given(vectors, vectors)
def test_hat_is_cross_product_and_vee_inverts_it(w, x):
    w, x = torch.tensor(w, dtype=F64), torch.tensor(x, dtype=F64)
    W = so3.hat(w)
    torch.testing.assert_close(W, -W.T)
    torch.testing.assert_close(W @ x, torch.linalg.cross(w, x))
    torch.testing.assert_close(so3.vee(W), w)


def test_exp_is_rotation_and_matches_quaternion_route():
    w = torch.cat([_rotvecs(200, 3 * math.pi), torch.zeros(1, 3, dtype=F64)])
    R = so3.exp(w)
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=F64).expand_as(R))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(len(w), dtype=F64))
    torch.testing.assert_close(R, Q.to_matrix(Q.exp(w)))
    torch.testing.assert_close(R @ w.unsqueeze(-1), w.unsqueeze(-1))  # the axis is fixed


@pytest.mark.parametrize("max_angle", [1e-9, 1e-4, 1.0, math.pi - 1e-6])
def test_log_exp_round_trip(max_angle):
    w = _rotvecs(300, max_angle)
    torch.testing.assert_close(so3.log(so3.exp(w)), w, rtol=1e-9, atol=1e-14)


def test_log_at_pi_gives_a_valid_half_turn():
    w = math.pi * _rotvecs(50, 1.0) / _rotvecs(50, 1.0).norm(dim=-1, keepdim=True)
    back = so3.log(so3.exp(w))
    torch.testing.assert_close(back.norm(dim=-1), torch.full((50,), math.pi, dtype=F64))
    torch.testing.assert_close(so3.exp(back), so3.exp(w))


def test_exp_small_angle_float32_is_precise():
    w = (1e-5 * _rotvecs(100, 1.0)).float()
    torch.testing.assert_close(so3.exp(w), so3.exp(w.double()).float(), rtol=0, atol=1e-7)


def test_dist_is_angle_of_relative_rotation():
    R1 = so3.random_uniform(100, generator=_gen(), dtype=F64)
    w = _rotvecs(100, math.pi - 1e-6)
    R2 = R1 @ so3.exp(w)
    torch.testing.assert_close(so3.dist(R1, R2), w.norm(dim=-1))
    torch.testing.assert_close(so3.dist(R2, R1), w.norm(dim=-1))
    assert so3.dist(R1, R1).abs().max() < 1e-7


def test_gradients_finite_at_identity_and_pi():
    zero = torch.zeros(2, 3, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(so3.exp(zero).sum(), zero)
    assert torch.isfinite(g).all()
    for R in (torch.eye(3, dtype=F64), torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=F64))):
        R = R.clone().requires_grad_(True)
        for value in (so3.log(R).sum(), so3.dist(R, torch.eye(3, dtype=F64))):
            (g,) = torch.autograd.grad(value, R)
            assert torch.isfinite(g).all()


def test_uniform_rotations_have_zero_mean_and_haar_angle_law():
    R = so3.random_uniform(20000, generator=_gen(), dtype=F64)
    assert R.mean(dim=0).abs().max() < 0.03
    angle = Q.rotation_angle(Q.from_matrix(R))
    assert angle.mean().item() == pytest.approx(math.pi / 2 + 2 / math.pi, abs=0.02)


# ---- IGSO(3) ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.02, 0.3, 0.99, 1.0, 2.0, 8.0])
def test_igso3_angle_density_is_normalised(sigma):
    omega = torch.linspace(0, math.pi, 20001, dtype=F64)
    density = so3.igso3_density_angle(omega, sigma)
    assert (density >= 0).all()
    assert torch.trapezoid(density, omega).item() == pytest.approx(1.0, abs=1e-6)


def test_igso3_density_is_continuous_across_the_evaluation_switch():
    omega = torch.linspace(0, math.pi, 101, dtype=F64)
    below = so3.igso3_density_angle(omega, 1.0 - 1e-9)
    above = so3.igso3_density_angle(omega, 1.0)
    torch.testing.assert_close(below, above, rtol=1e-7, atol=1e-12)


def test_igso3_density_limits():
    omega = torch.linspace(0, math.pi, 200, dtype=F64)
    haar = (1 - torch.cos(omega)) / math.pi
    torch.testing.assert_close(so3.igso3_density_angle(omega, 20.0), haar)
    sigma = 0.01  # rotation vector ≈ N(0, σ²I₃): the angle is Maxwell(σ)
    small = omega * sigma * 20 / math.pi
    maxwell = torch.from_numpy(stats.maxwell.pdf(small.numpy(), scale=sigma))
    torch.testing.assert_close(so3.igso3_density_angle(small, sigma), maxwell, rtol=1e-3, atol=1e-3)


def _angle_cdf(sigma):
    omega = torch.linspace(0, math.pi, 20001, dtype=F64)
    density = so3.igso3_density_angle(omega, sigma)
    cdf = torch.cumulative_trapezoid(density, omega)
    cdf = torch.cat([torch.zeros(1, dtype=F64), cdf]).numpy()
    return lambda x: np.interp(x, omega.numpy(), cdf / cdf[-1])


@pytest.mark.parametrize("sigma", [0.05, 0.5, 1.5])
def test_igso3_sample_angles_follow_the_density(sigma):
    q = so3.igso3_sample(5000, sigma=sigma, generator=_gen(11), dtype=F64)
    assert q.shape == (5000, 4)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(5000, dtype=F64))
    angle = Q.rotation_angle(q).numpy()
    assert stats.kstest(angle, _angle_cdf(sigma)).pvalue > 1e-3


def test_igso3_sample_axes_are_isotropic_and_seeded():
    q = so3.igso3_sample(4, 3000, sigma=0.8, generator=_gen(2), dtype=F64)
    assert q.shape == (4, 3000, 4)
    axis = q[..., 1:] / q[..., 1:].norm(dim=-1, keepdim=True)
    assert axis.reshape(-1, 3).mean(dim=0).abs().max() < 0.05
    torch.testing.assert_close(
        q, so3.igso3_sample(4, 3000, sigma=0.8, generator=_gen(2), dtype=F64)
    )
    small = so3.igso3_sample(20000, sigma=0.01, generator=_gen(3), dtype=F64)
    mean_angle = Q.rotation_angle(small).mean().item()
    assert mean_angle == pytest.approx(2 * 0.01 * math.sqrt(2 / math.pi), rel=0.02)
