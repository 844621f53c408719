"""RotationMatrix: SO(3) as flattened 3×3 matrices with the matrix logarithm (FrameFlow route).

Generic manifold properties, agreement with UnitQuaternion, and the accuracy of the matrix
logarithm near θ = π that the class docstring states.
"""

import math

import pytest
import torch

from sciflow.geometry import quaternion as Q
from sciflow.geometry import so3
from sciflow.manifolds import Euclidean, Manifold, Product, RotationMatrix, UnitQuaternion
from sciflow.paths.geodesic import GeodesicPath
from sciflow.testing import assert_on_manifold, assert_path_velocity, assert_tangent

F64 = torch.float64
F32 = torch.float32
SHAPE = (16, 5)
M = RotationMatrix()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _axes(n, seed=0, dtype=F64):
    a = torch.randn(n, 3, generator=_gen(seed), dtype=dtype)
    return a / a.norm(dim=-1, keepdim=True)


def _tangent(shape, seed, max_angle=0.99 * math.pi):
    """Random body velocities (*shape, 3) with norms uniform in [0, max_angle)."""
    g = _gen(seed)
    v = torch.randn(*shape, 3, generator=g, dtype=F64)
    radius = max_angle * torch.rand(*shape, 1, generator=g, dtype=F64)
    return radius * v / v.norm(dim=-1, keepdim=True)


def _matrices(q):
    return Q.to_matrix(q).flatten(start_dim=-2)


# ---- the Manifold contract -------------------------------------------------------------------


def test_attributes_and_export():
    assert isinstance(M, Manifold)
    assert (M.point_dim, M.tangent_dim, M.dim) == (9, 3, 3)
    assert M.constant_geodesic_velocity
    assert repr(M) == "RotationMatrix()"


def test_random_points_are_seeded_rotations_and_haar_like():
    x = M.random(*SHAPE, generator=_gen(1), dtype=F64)
    assert x.shape == (*SHAPE, 9)
    assert_on_manifold(M, x, atol=1e-12)
    assert torch.equal(x, M.random(*SHAPE, generator=_gen(1), dtype=F64))
    assert M.random(4, dtype=F32).dtype == F32
    # Haar: E[R] = 0 and the angle has density (1 − cos θ)/π, mean π/2 + 2/π
    many = M.random(20000, generator=_gen(2), dtype=F64)
    assert many.mean(dim=0).abs().max() < 0.03
    angles = M.dist(torch.eye(3, dtype=F64).flatten().expand_as(many), many)
    assert abs(angles.mean().item() - (math.pi / 2 + 2 / math.pi)) < 0.02


def test_log_of_itself_is_zero_and_exp_log_round_trips():
    x = M.random(*SHAPE, generator=_gen(1), dtype=F64)
    y = M.random(*SHAPE, generator=_gen(2), dtype=F64)
    assert M.logmap(x, x).abs().max() < 1e-12
    v = M.logmap(x, y)
    assert_tangent(M, x, v, atol=1e-10)
    assert (M.expmap(x, v) - y).abs().max() < 1e-12
    assert M.dist(M.expmap(x, v), y).max() < 1e-10
    torch.testing.assert_close(M.dist(x, y), v.norm(dim=-1))
    torch.testing.assert_close(M.dist(x, y), M.dist(y, x))
    torch.testing.assert_close(M.logmap(y, x), -v)  # (xᵀy)ᵀ = Exp(−v)


def test_dist_of_exp_is_the_tangent_norm_and_log_inverts_exp():
    x = M.random(*SHAPE, generator=_gen(3), dtype=F64)
    v = _tangent(SHAPE, seed=4)
    y = M.expmap(x, v)
    assert_on_manifold(M, y, atol=1e-12)
    torch.testing.assert_close(M.dist(x, y), v.norm(dim=-1))
    assert (M.logmap(x, y) - v).abs().max() < 1e-9


@pytest.mark.parametrize("t", [0.0, 0.3, 0.8])
def test_geodesic_velocity_is_constant_and_matches_finite_differences(t):
    x = M.random(*SHAPE, generator=_gen(5), dtype=F64)
    v = _tangent(SHAPE, seed=6)
    y = M.expmap(x, v)

    def path(s):
        return M.expmap(x, s * v)

    velocity = M.logmap(path(t), y) / (1 - t)
    assert_path_velocity(M, path, velocity, t, rtol=1e-6, atol=1e-8)
    assert (velocity - v).abs().max() < 1e-9


def test_geodesic_path_velocity_and_points_stay_on_the_manifold():
    path = GeodesicPath(M)
    x0, x1 = M.random(2, 32, generator=_gen(7), dtype=F64)
    for t in (0.1, 0.45, 0.8):
        sample = path.sample(x0, x1, torch.full((32,), t, dtype=F64))
        assert_on_manifold(M, sample.x_t, atol=1e-12)
        assert_path_velocity(
            M,
            lambda s: path.sample(x0, x1, torch.full((32,), float(s), dtype=F64)).x_t,
            sample.dx_t,
            t,
        )
    end = path.sample(x0, x1, torch.ones(32, dtype=F64)).x_t
    assert (end - x1).abs().max() < 1e-12


def _body_velocity(x, u, a, h=1e-5):
    """Body velocity at s=0 of y(s) = x · Exp(u + s·a), by central differences."""
    y0 = M.expmap(x, u)
    forward = M.logmap(y0, M.expmap(x, u + h * a))
    backward = M.logmap(y0, M.expmap(x, u - h * a))
    return (forward - backward) / (2 * h)


@pytest.mark.parametrize("radius", [0.0, 1e-3, 0.5, 2.0, 3.0])
def test_dexpinv_inverts_the_body_velocity_and_matches_unit_quaternion(radius):
    x = M.random(200, generator=_gen(), dtype=F64)
    u = radius * _axes(200, seed=1)
    a = torch.randn(200, 3, generator=_gen(2), dtype=F64)
    w = _body_velocity(x, u, a)
    torch.testing.assert_close(M.dexpinv(x, u, w), a, rtol=1e-7, atol=1e-8)
    q = Q.from_matrix(x.unflatten(-1, (3, 3)))
    assert torch.equal(M.dexpinv(x, u, w), UnitQuaternion().dexpinv(q, u, w))


def test_product_with_rotation_matrices():
    manifold = Product({"rot": M, "trans": Euclidean(3)})
    assert manifold.constant_geodesic_velocity
    assert manifold.point_dim == {"rot": 9, "trans": 3}
    x = manifold.random(8, generator=_gen(), dtype=F64)
    y = manifold.random(8, generator=_gen(1), dtype=F64)
    v = manifold.logmap(x, y)
    assert v["rot"].shape == (8, 3)
    assert (manifold.expmap(x, v)["rot"] - y["rot"]).abs().max() < 1e-12


# ---- agreement with UnitQuaternion -----------------------------------------------------------


def test_logmap_expmap_and_dist_agree_with_unit_quaternion():
    U = UnitQuaternion()
    q0, q1 = U.random(2, 500, generator=_gen(), dtype=F64)
    R0, R1 = _matrices(q0), _matrices(q1)
    log_error = (M.logmap(R0, R1) - U.logmap(q0, q1)).norm(dim=-1)
    dist_error = (M.dist(R0, R1) - U.dist(q0, q1)).abs()
    # the matrix route loses digits as θ → π (~1e-15·π/(π − θ)²; see the docstring)
    moderate = U.dist(q0, q1) < 3.0
    assert moderate.sum() > 400
    assert log_error[moderate].max() < 1e-12 and dist_error[moderate].max() < 1e-12
    assert log_error.max() < 1e-7 and dist_error.max() < 1e-7
    v = _tangent((500,), seed=3)
    torch.testing.assert_close(M.expmap(R0, v), _matrices(U.expmap(q0, v)), rtol=0, atol=1e-13)
    torch.testing.assert_close(M.embed(R0), U.embed(q0), rtol=0, atol=1e-15)


@pytest.mark.parametrize("t", [0.25, 0.5, 0.9])
def test_geodesic_points_agree_with_quaternion_slerp(t):
    q0, q1 = Q.random_uniform(2, 500, generator=_gen(1), dtype=F64)
    R0, R1 = _matrices(q0), _matrices(q1)
    R_t = M.expmap(R0, t * M.logmap(R0, R1))
    error = (R_t - _matrices(Q.slerp(q0, q1, t))).abs().amax(dim=-1)
    moderate = Q.angle(q0, q1) < 3.0  # the matrix log loses digits as θ → π
    assert error[moderate].max() < 1e-12 and error.max() < 1e-7


def test_small_angles_are_as_precise_as_quaternions_in_float32():
    q0 = Q.random_uniform(500, generator=_gen(), dtype=F64)
    for angle in (1e-6, 1e-3, 0.1):
        w = angle * _axes(500, seed=1)
        R0, R1 = _matrices(q0), _matrices(Q.multiply(q0, Q.exp(w)))
        error = (M.logmap(R0.float(), R1.float()).double() - w).norm(dim=-1).max()
        assert error < 5e-7, f"θ = {angle}: max error {error.item():.3g}"


# ---- accuracy near θ = π (the numbers in the RotationMatrix docstring) -----------------------


def _log_error_near_pi(gap, dtype, n=1000):
    """Max error of logmap(R0, R1) for R1 = R0·Exp(ω), |ω| = π − gap, R0 random; points rounded
    to ``dtype`` and the log computed in it. At θ = π both signs of ω count as exact."""
    theta = math.pi - gap
    axis = _axes(n, seed=11)
    q0 = Q.random_uniform(n, generator=_gen(12), dtype=F64)
    q1 = Q.multiply(q0, Q.exp(theta * axis))
    out = M.logmap(_matrices(q0).to(dtype), _matrices(q1).to(dtype))
    assert out.dtype == dtype and torch.isfinite(out).all()
    out = out.double()
    error = torch.minimum(
        (out - theta * axis).norm(dim=-1), (out + (2 * math.pi - theta) * axis).norm(dim=-1)
    )
    return error.max().item()


@pytest.mark.parametrize(
    ("gap", "bound64", "bound32"),
    [
        (1e-1, 1e-12, 2e-4),
        (1e-2, 1e-10, 2e-4),
        (2.5e-4, 1e-7, 1e-3),  # the antisymmetric formula just before its switch to the axis route
        (1e-4, 2e-11, 1e-3),
        (1e-6, 2e-9, 1e-3),
        (0.0, 1e-7, 1e-3),
    ],
)
def test_log_accuracy_near_pi_meets_the_documented_bounds(gap, bound64, bound32):
    error64 = _log_error_near_pi(gap, F64)
    error32 = _log_error_near_pi(gap, F32)
    assert error64 < bound64, f"float64 at θ = π − {gap:g}: max error {error64:.3g}"
    assert error32 < bound32, f"float32 at θ = π − {gap:g}: max error {error32:.3g}"


def test_log_error_near_pi_is_worse_than_the_quaternion_route():
    """The instability ReQFlow attributes to the matrix path: float32 loses ~3 digits at π."""
    theta = math.pi - 1e-4
    axis = _axes(1000, seed=11)
    q0 = Q.random_uniform(1000, generator=_gen(12), dtype=F64)
    q1 = Q.multiply(q0, Q.exp(theta * axis))
    quat = (UnitQuaternion().logmap(q0.float(), q1.float()).double() - theta * axis).norm(dim=-1)
    assert quat.max() < 2e-6
    assert _log_error_near_pi(1e-4, F32) > 10 * quat.max().item()


def test_log_at_exactly_pi_is_a_valid_logarithm():
    """Half-turns about axes, including coordinate axes (where R − Rᵀ is exactly zero)."""
    axes = torch.cat([torch.eye(3, dtype=F64), -torch.eye(3, dtype=F64), _axes(50, seed=3)])
    R = so3.exp(math.pi * axes)
    R = torch.where(R.abs() < 1e-15, torch.zeros_like(R), R).flatten(start_dim=-2)
    identity = torch.eye(3, dtype=F64).flatten().expand_as(R)
    v = M.logmap(identity, R)
    torch.testing.assert_close(v.norm(dim=-1), torch.full((56,), math.pi, dtype=F64))
    assert (M.expmap(identity, v) - R).abs().max() < 1e-7
    assert (M.dist(identity, R) <= math.pi).all()


@pytest.mark.parametrize("dtype", [F64, F32])
def test_gradients_are_finite_from_identity_to_pi(dtype):
    x = M.random(6, generator=_gen(), dtype=dtype)
    for angle in (0.0, 1e-5, 1.0, math.pi - 1e-3, math.pi - 1e-7, math.pi):
        y = M.expmap(x, angle * _axes(6, seed=1, dtype=dtype)).requires_grad_(True)
        x_ = x.clone().requires_grad_(True)
        gx, gy = torch.autograd.grad(M.logmap(x_, y).sum() + M.dist(x_, y).sum(), [x_, y])
        assert torch.isfinite(gx).all() and torch.isfinite(gy).all(), angle
    # exact half-turns about coordinate axes: cos θ rounds to exactly −1
    half_turns = so3.exp(math.pi * torch.eye(3, dtype=dtype)).round().flatten(start_dim=-2)
    identity = torch.eye(3, dtype=dtype).flatten().expand_as(half_turns).requires_grad_(True)
    (g,) = torch.autograd.grad(M.logmap(identity, half_turns.requires_grad_(True)).sum(), identity)
    assert torch.isfinite(g).all()


# ---- projx and check_point -------------------------------------------------------------------


def test_projx_returns_the_nearest_rotation():
    x = M.random(200, generator=_gen(), dtype=F64)
    noisy = x + 0.05 * torch.randn(200, 9, generator=_gen(1), dtype=F64)
    p = M.projx(noisy)
    R = p.unflatten(-1, (3, 3))
    eye = torch.eye(3, dtype=F64)
    assert (R.transpose(-1, -2) @ R - eye).abs().max() < 1e-12
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(200, dtype=F64))
    assert_on_manifold(M, p, atol=1e-12)
    assert torch.allclose(M.projx(x), x, atol=1e-12)  # rotations are fixed points
    # nearer to the noisy matrix than the clean rotation it came from
    assert ((p - noisy).norm(dim=-1) <= (x - noisy).norm(dim=-1) + 1e-12).all()
    # a reflection is sent to a rotation (det fixed to +1), not to itself
    reflected = x.unflatten(-1, (3, 3)) @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=F64))
    assert_on_manifold(M, M.projx(reflected.flatten(start_dim=-2)), atol=1e-12)
    assert M.projx(x.float()).dtype == F32


def test_check_point_names_the_field_and_reports_the_worst_errors():
    x = M.random(10, generator=_gen(), dtype=F64)
    M.check_point(x, name="rot")
    M.check_point(x.float(), name="rot", atol=1e-5)
    with pytest.raises(ValueError, match=r"^rot: expected rotation matrices .*\(\.\.\., 9\)") as e:
        M.check_point(1.1 * x, name="rot")
    message = str(e.value)
    assert "10 non-rotation" in message and "orthogonality error 0.21" in message
    assert "determinant error 0.331" in message
    flip = x.unflatten(-1, (3, 3)).clone()
    flip[3, :, 2] *= -1  # orthogonal but det −1
    with pytest.raises(ValueError, match=r"1 non-rotation .*determinant error 2"):
        M.check_point(flip.flatten(start_dim=-2), name="frames")
    nan = x.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="^frames: .*orthogonality error inf"):
        M.check_point(nan, name="frames")
    with pytest.raises(ValueError, match=r"^frames: expected .*shape \(\.\.\., 9\), got shape"):
        M.check_point(torch.zeros(4, 3, 3), name="frames")
    with pytest.raises(AssertionError, match="not on RotationMatrix"):
        assert_on_manifold(M, 2 * x)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: M.expmap(torch.zeros(2, 4), torch.zeros(2, 3)), "x"),
        (lambda: M.expmap(torch.zeros(2, 9), torch.zeros(2, 4)), "w"),
        (lambda: M.logmap(torch.zeros(2, 9), torch.zeros(2, 3, 3)), "y"),
        (lambda: M.projx(torch.zeros(3, 3)), "x"),
    ],
)
def test_wrong_shapes_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}: expected .*shape"):
        call()


def test_projx_gradient_at_a_rotation_is_the_tangent_projection():
    """At a rotation R the projection's derivative is dX ↦ R·skew(Rᵀ dX); the SVD's own
    gradient would be undefined there (equal singular values) and poison training."""
    manifold = RotationMatrix()
    rotation = manifold.random(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = rotation.clone().requires_grad_(True)
    direction = torch.randn(6, 9, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    (manifold.projx(x) * direction).sum().backward()
    r = rotation.unflatten(-1, (3, 3))
    g = direction.unflatten(-1, (3, 3))
    relative = r.transpose(-1, -2) @ g
    expected = r @ (relative - relative.transpose(-1, -2)) / 2  # adjoint of the tangent map
    assert torch.isfinite(x.grad).all()
    torch.testing.assert_close(x.grad.unflatten(-1, (3, 3)), expected)
    step = 1e-6 * direction
    finite_diff = (manifold.projx(rotation + step) - manifold.projx(rotation - step)) / 2
    tangent = (
        r
        @ (
            (r.transpose(-1, -2) @ step.unflatten(-1, (3, 3)))
            - (r.transpose(-1, -2) @ step.unflatten(-1, (3, 3))).transpose(-1, -2)
        )
        / 2
    )
    torch.testing.assert_close(finite_diff, tangent.flatten(-2), atol=1e-11, rtol=0)
