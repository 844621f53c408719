"""Properties of sciflow.geometry.quaternion (float64 unless the test is about float32)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sciflow.geometry import quaternion as Q
from sciflow.geometry import so3
from sciflow.manifolds import UnitQuaternion
from sciflow.testing import assert_path_velocity

F64 = torch.float64
finite = st.floats(-1.0, 1.0, allow_nan=False)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _axis(n, seed=0):
    a = torch.randn(n, 3, generator=_gen(seed), dtype=F64)
    return a / a.norm(dim=-1, keepdim=True)


@st.composite
def rotvecs(draw, max_angle=math.pi - 1e-6):
    """Rotation vectors with angle in [0, max_angle], including exactly 0 and tiny angles."""
    direction = torch.tensor([draw(finite) for _ in range(3)], dtype=F64)
    if direction.norm() < 1e-3:
        direction = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    kind = draw(st.sampled_from(["zero", "tiny", "any"]))
    theta = {"zero": 0.0, "tiny": draw(st.floats(1e-12, 1e-3))}.get(kind)
    if theta is None:
        theta = draw(st.floats(0.0, max_angle))
    return theta * direction / direction.norm()


@st.composite
def unit_quaternions(draw):
    q = torch.tensor([draw(finite) for _ in range(4)], dtype=F64)
    if q.norm() < 1e-3:
        q = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=F64)
    return q / q.norm()


def _same_rotation(p, q, atol=1e-10):
    """p ≡ ±q."""
    err = torch.minimum((p - q).abs().amax(-1), (p + q).abs().amax(-1))
    assert err.max() <= atol, f"max |p ∓ q| = {err.max().item():.3g}"


# ---- algebra ---------------------------------------------------------------------------------


def test_multiply_matches_matrix_product_and_conjugate_inverts():
    p, q = Q.random_uniform(2, 64, generator=_gen(), dtype=F64)
    torch.testing.assert_close(Q.to_matrix(Q.multiply(p, q)), Q.to_matrix(p) @ Q.to_matrix(q))
    identity = torch.tensor([1.0, 0, 0, 0], dtype=F64).expand(64, 4)
    torch.testing.assert_close(Q.multiply(q, Q.conjugate(q)), identity)
    r = Q.random_uniform(64, generator=_gen(1), dtype=F64)
    torch.testing.assert_close(Q.multiply(Q.multiply(p, q), r), Q.multiply(p, Q.multiply(q, r)))


def test_multiply_and_rotate_broadcast():
    q = Q.random_uniform(5, 1, generator=_gen(), dtype=F64)
    x = torch.randn(5, 7, 3, dtype=F64, generator=_gen(1))
    rotated = Q.rotate(q, x)
    assert rotated.shape == (5, 7, 3)
    torch.testing.assert_close(rotated, (Q.to_matrix(q) @ x.unsqueeze(-1)).squeeze(-1))
    assert Q.multiply(q, Q.random_uniform(7, generator=_gen(2), dtype=F64)).shape == (5, 7, 4)


def test_random_uniform_is_unit_canonical_and_seeded():
    q = Q.random_uniform(3, 100, generator=_gen(7), dtype=F64)
    assert q.shape == (3, 100, 4)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(3, 100, dtype=F64))
    assert (q[..., 0] >= 0).all()
    torch.testing.assert_close(q, Q.random_uniform(3, 100, generator=_gen(7), dtype=F64))


def test_check_unit_accepts_unit_and_reports_worst_norm():
    q = Q.random_uniform(10, generator=_gen(), dtype=F64)
    Q.check_unit(q, name="rot")
    bad = q.clone()
    bad[3] *= 1.5
    bad[7] *= 1.01
    with pytest.raises(ValueError, match=r"rot: .*\(10, 4\).*worst norm 1\.5"):
        Q.check_unit(bad, name="rot")
    bad[2] = float("nan")
    with pytest.raises(ValueError, match="rot"):
        Q.check_unit(bad, name="rot")


# ---- matrices --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(unit_quaternions())
def test_to_matrix_is_rotation_and_sign_invariant(q):
    R = Q.to_matrix(q)
    torch.testing.assert_close(R @ R.T, torch.eye(3, dtype=F64))
    assert torch.linalg.det(R).item() == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(Q.to_matrix(-q), R, rtol=0, atol=1e-15)


@settings(max_examples=100, deadline=None)
@given(unit_quaternions())
def test_from_matrix_round_trip(q):
    back = Q.from_matrix(Q.to_matrix(q))
    assert back[0] >= 0
    _same_rotation(back, q, atol=1e-12)


@pytest.mark.parametrize("theta", [math.pi, math.pi - 1e-7, math.pi - 1e-3, 1e-9, 0.0])
def test_from_matrix_round_trip_near_pi_and_identity(theta):
    axes = torch.cat([torch.eye(3, dtype=F64), _axis(200)])
    q = Q.exp(theta * axes)
    back = Q.from_matrix(Q.to_matrix(q))
    _same_rotation(back, q, atol=1e-12)
    torch.testing.assert_close(back.norm(dim=-1), torch.ones(len(axes), dtype=F64))


# ---- exp / log -------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(rotvecs())
def test_log_exp_round_trip(r):
    q = Q.exp(r)
    assert q.norm().item() == pytest.approx(1.0, abs=1e-15)
    torch.testing.assert_close(Q.log(q), r, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(Q.log(-q), r, rtol=1e-12, atol=1e-14)  # q ≡ −q
    torch.testing.assert_close(Q.to_matrix(q), so3.exp(r), rtol=0, atol=1e-14)


@settings(max_examples=100, deadline=None)
@given(unit_quaternions())
def test_exp_log_round_trip(q):
    _same_rotation(Q.exp(Q.log(q)), q, atol=1e-14)
    assert Q.log(q).norm() <= math.pi + 1e-12


def test_log_at_identity_and_pi():
    identity = torch.tensor([1.0, 0, 0, 0], dtype=F64)
    assert Q.log(identity).abs().max() == 0
    half_turn = torch.tensor([0.0, 0, 0.6, 0.8], dtype=F64)
    torch.testing.assert_close(Q.log(half_turn).norm(), torch.tensor(math.pi, dtype=F64))
    _same_rotation(Q.exp(Q.log(half_turn)), half_turn, atol=1e-15)


@pytest.mark.parametrize("theta", [1e-4, 1e-6, 1e-2])
def test_log_exp_small_angles_float32(theta):
    r = (theta * _axis(500)).float()
    back = Q.log(Q.exp(r))
    rel = ((back - r).norm(dim=-1) / r.norm(dim=-1)).max()
    assert rel < 1e-5, f"relative error {rel:.3g} at θ={theta}"


def test_rotation_angle_and_angle():
    r = torch.linspace(0, math.pi, 50, dtype=F64).unsqueeze(-1) * _axis(50)
    q0 = Q.random_uniform(50, generator=_gen(), dtype=F64)
    q1 = Q.multiply(q0, Q.exp(r))
    torch.testing.assert_close(Q.angle(q0, q1), r.norm(dim=-1))
    torch.testing.assert_close(Q.angle(q1, -q0), r.norm(dim=-1))
    torch.testing.assert_close(Q.rotation_angle(Q.exp(r)), r.norm(dim=-1))


# ---- SLERP -----------------------------------------------------------------------------------


def _pairs(n=64, seed=0):
    q0, q1 = Q.random_uniform(2, n, generator=_gen(seed), dtype=F64)
    return q0, q1


def test_slerp_endpoints_and_sign_invariance():
    q0, q1 = _pairs()
    torch.testing.assert_close(Q.slerp(q0, q1, 0.0), q0)
    _same_rotation(Q.slerp(q0, q1, 1.0), q1, atol=1e-12)
    for t in (0.0, 0.3, 0.7, 1.0):
        path = Q.to_matrix(Q.slerp(q0, q1, t))
        for a, b in ((-q0, q1), (q0, -q1), (-q0, -q1)):
            torch.testing.assert_close(Q.to_matrix(Q.slerp(a, b, t)), path)


def test_slerp_matches_classical_formula_with_half_angle():
    q0, q1 = _pairs()
    q1 = torch.where((q0 * q1).sum(-1, keepdim=True) < 0, -q1, q1)
    omega = Q.angle(q0, q1).unsqueeze(-1) / 2  # the quaternion-sphere angle is θ/2
    t = torch.rand(64, 1, generator=_gen(3), dtype=F64)
    classical = (torch.sin((1 - t) * omega) * q0 + torch.sin(t * omega) * q1) / torch.sin(omega)
    torch.testing.assert_close(Q.slerp(q0, q1, t), classical)


def test_slerp_time_shapes_broadcast():
    q0, q1 = _pairs(8)
    t = torch.linspace(0, 1, 8, dtype=F64)
    torch.testing.assert_close(Q.slerp(q0, q1, t), Q.slerp(q0, q1, t.unsqueeze(-1)))
    many = Q.slerp(q0[0], q1[0], t)  # one pair, many times
    assert many.shape == (8, 4)
    torch.testing.assert_close(many[3], Q.slerp(q0[0], q1[0], t[3]))


@pytest.mark.parametrize("t", [0.0, 0.25, 0.5, 0.9])
def test_slerp_velocity_is_constant_body_rate(t):
    q0, q1 = _pairs(32, seed=1)
    rate = Q.log(Q.relative(q0, q1))
    assert_path_velocity(
        UnitQuaternion(), lambda s: Q.slerp(q0, q1, s), rate, t, rtol=1e-6, atol=1e-8
    )


@pytest.mark.parametrize("t", [0.25, 0.5, 1.0])
def test_slerp_precise_for_tiny_rotations_float32(t):
    q0 = torch.tensor([1.0, 0, 0, 0]).expand(1000, 4)
    r = 1e-4 * _axis(1000).float()
    q1 = Q.exp(r)
    recovered = Q.angle(q0, Q.slerp(q0, q1, t))
    rel = ((recovered - t * 1e-4) / (t * 1e-4)).abs().max()
    assert rel < 1e-3, f"relative angle error {rel:.3g}"


def test_slerp_tiny_rotations_float32_general_start():
    """From an arbitrary q0 the float32 storage of q0, q1 (≈6e-8 per entry) limits the angle to
    ~1e-3 relative at 1e-4 rad; check the computation adds no more than that."""
    q0 = Q.random_uniform(2000, generator=_gen(5), dtype=F64)
    q1 = Q.multiply(q0, Q.exp(1e-4 * _axis(2000)))
    q0, q1 = q0.float(), q1.float()
    reference = Q.angle(q0.double(), q1.double())  # exact angle of the float32 inputs
    rel = (Q.angle(q0, q1).double() - reference).abs() / reference
    assert rel.median() < 1e-3 and rel.max() < 5e-3
    midpoint = Q.slerp(q0, q1, 0.5).double()
    rel_mid = (Q.angle(q0.double(), midpoint) - reference / 2).abs() / (reference / 2)
    assert rel_mid.median() < 2e-3


# ---- gradients -------------------------------------------------------------------------------


def _finite_grads(outputs, inputs):
    grads = torch.autograd.grad(outputs.sum(), inputs, allow_unused=False)
    for g in grads:
        assert torch.isfinite(g).all(), f"non-finite gradient {g}"


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_gradients_finite_at_identity_and_pi(dtype):
    zero = torch.zeros(3, 3, dtype=dtype, requires_grad=True)
    _finite_grads(Q.exp(zero), [zero])
    identity = torch.tensor([[1.0, 0, 0, 0]], dtype=dtype).expand(3, 4)
    half_turns = torch.cat([torch.zeros(3, 1, dtype=dtype), torch.eye(3, dtype=dtype)], dim=-1)
    for exact in (identity, half_turns, Q.exp(math.pi * torch.eye(3, dtype=dtype))):
        q = exact.clone().requires_grad_(True)
        _finite_grads(Q.log(q), [q])
        _finite_grads(Q.rotation_angle(q), [q])
        q0 = identity.clone().requires_grad_(True)
        t = torch.full((3,), 0.5, dtype=dtype, requires_grad=True)
        _finite_grads(Q.angle(q0, q), [q0, q])
        _finite_grads(Q.slerp(q0, q, t), [q0, q, t])
        _finite_grads(Q.slerp(q, q, t), [q, t])  # identical endpoints


@pytest.mark.parametrize("theta", [0.0, 1e-5, 0.7, 3.0])
def test_gradients_match_finite_differences(theta):
    r = (theta * _axis(2, seed=3)).requires_grad_(True)
    q = Q.exp(r).detach().requires_grad_(True)
    q0 = Q.random_uniform(2, generator=_gen(4), dtype=F64).requires_grad_(True)
    t = torch.tensor([0.3, 0.8], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(Q.exp, (r,))
    assert torch.autograd.gradcheck(Q.log, (q,))
    q1 = Q.multiply(q0, q).detach().requires_grad_(True)
    assert torch.autograd.gradcheck(Q.slerp, (q0, q1, t))
