"""Properties every sciflow manifold must satisfy, and the sciflow.testing helpers themselves."""

import math

import pytest
import torch

from sciflow.geometry import quaternion as Q
from sciflow.manifolds import Euclidean, FlatTorus, Manifold, Product, Sphere, UnitQuaternion
from sciflow.testing import assert_on_manifold, assert_path_velocity, assert_tangent

F64 = torch.float64
SHAPE = (16, 5)

MANIFOLDS = {
    "euclidean": Euclidean(3),
    "torus": FlatTorus(3),
    "angles": FlatTorus(2, period=2 * math.pi),
    "so3": UnitQuaternion(),
    "circle": Sphere(1),
    "sphere": Sphere(2),
    "sphere5": Sphere(5),
    "product": Product({"rot": UnitQuaternion(), "trans": Euclidean(3), "frac": FlatTorus(3)}),
}
CASES = pytest.mark.parametrize("manifold", list(MANIFOLDS.values()), ids=list(MANIFOLDS))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _tangent(manifold, x, seed):
    """A random tangent vector at x inside the injectivity radius (so dist(x, exp v) = |v|)."""
    if isinstance(manifold, Product):
        return {k: _tangent(m, x[k], seed + i) for i, (k, m) in enumerate(manifold.parts.items())}
    g = _gen(seed)
    shape = (*x.shape[:-1], manifold.tangent_dim)
    if isinstance(manifold, FlatTorus):
        return (torch.rand(shape, generator=g, dtype=F64) - 0.5) * 0.99 * manifold.period
    v = manifold.proju(x, torch.randn(shape, generator=g, dtype=F64))
    if isinstance(manifold, (UnitQuaternion, Sphere)):
        radius = 0.99 * math.pi * torch.rand((*shape[:-1], 1), generator=g, dtype=F64)
        v = radius * v / v.norm(dim=-1, keepdim=True)
    return v


def _map(fn, *trees):
    """Apply fn leaf-wise to tensors or dicts of tensors."""
    if isinstance(trees[0], dict):
        return {k: fn(*(t[k] for t in trees)) for k in trees[0]}
    return fn(*trees)


def _norm(v):
    if isinstance(v, dict):
        return torch.sqrt(sum(p.pow(2).sum(dim=-1) for p in v.values()))
    return v.norm(dim=-1)


def _max_abs(v):
    if isinstance(v, dict):
        return max(p.abs().max().item() for p in v.values())
    return v.abs().max().item()


@CASES
def test_random_points_lie_on_the_manifold_and_are_seeded(manifold):
    x = manifold.random(*SHAPE, generator=_gen(1), dtype=F64)
    assert_on_manifold(manifold, x)
    again = manifold.random(*SHAPE, generator=_gen(1), dtype=F64)
    assert _max_abs(_map(torch.sub, x, again)) == 0
    assert_on_manifold(manifold, manifold.projx(x))


@CASES
def test_log_of_itself_is_zero_and_exp_log_round_trips(manifold):
    x = manifold.random(*SHAPE, generator=_gen(1), dtype=F64)
    y = manifold.random(*SHAPE, generator=_gen(2), dtype=F64)
    assert _max_abs(manifold.logmap(x, x)) < 1e-12
    v = manifold.logmap(x, y)
    assert_tangent(manifold, x, v, atol=1e-10)
    assert manifold.dist(manifold.expmap(x, v), y).max() < 1e-10
    torch.testing.assert_close(manifold.dist(x, y), _norm(v))
    torch.testing.assert_close(manifold.dist(x, y), manifold.dist(y, x))


@CASES
def test_dist_of_exp_is_the_tangent_norm(manifold):
    x = manifold.random(*SHAPE, generator=_gen(3), dtype=F64)
    v = _tangent(manifold, x, seed=4)
    y = manifold.expmap(x, v)
    assert_on_manifold(manifold, y, atol=1e-12)
    torch.testing.assert_close(manifold.dist(x, y), _norm(v))
    back = manifold.logmap(x, y)
    assert _max_abs(_map(torch.sub, back, v)) < 1e-9


@CASES
@pytest.mark.parametrize("t", [0.0, 0.3, 0.8])
def test_geodesic_velocity_matches_finite_differences(manifold, t):
    x = manifold.random(*SHAPE, generator=_gen(5), dtype=F64)
    v = _tangent(manifold, x, seed=6)
    y = manifold.expmap(x, v)

    def path(s):
        return manifold.expmap(x, _map(lambda p: s * p, v))

    # the velocity of the geodesic x → y at x_t points at y, with speed |v|: log_{x_t}(y)/(1−t)
    velocity = _map(lambda p: p / (1 - t), manifold.logmap(path(t), y))
    assert_path_velocity(manifold, path, velocity, t, rtol=1e-6, atol=1e-8)
    if manifold.constant_geodesic_velocity:
        assert _max_abs(_map(torch.sub, velocity, v)) < 1e-9


def test_assert_path_velocity_rejects_a_wrong_velocity():
    manifold = UnitQuaternion()
    q0, q1 = manifold.random(2, 8, generator=_gen(), dtype=F64)
    rate = manifold.logmap(q0, q1)

    def path(s):
        return Q.slerp(q0, q1, s)

    with pytest.raises(AssertionError, match="path velocity at t=0.5"):
        assert_path_velocity(manifold, path, 1.01 * rate, 0.5)
    space_frame = Q.rotate(Q.slerp(q0, q1, 0.5), rate)  # not the body-frame representation
    with pytest.raises(AssertionError):
        assert_path_velocity(manifold, path, space_frame, 0.5)


def test_assert_on_manifold_and_tangent_reject_bad_input():
    sphere = Sphere(2)
    x = sphere.random(10, generator=_gen(), dtype=F64)
    with pytest.raises(AssertionError, match="worst norm 2"):
        assert_on_manifold(sphere, 2 * x)
    with pytest.raises(AssertionError, match="proju"):
        assert_tangent(sphere, x, x)  # radial, not tangent
    with pytest.raises(AssertionError, match="tangent"):
        assert_tangent(UnitQuaternion(), Q.random_uniform(10, dtype=F64), torch.zeros(10, 4))


# ---- embeddings ------------------------------------------------------------------------------


def test_quaternion_embedding_is_sign_invariant_rotation_matrix():
    q = UnitQuaternion().random(50, generator=_gen(), dtype=F64)
    e = UnitQuaternion().embed(q)
    assert e.shape == (50, 9)
    torch.testing.assert_close(UnitQuaternion().embed(-q), e)
    torch.testing.assert_close(e.reshape(50, 3, 3), Q.to_matrix(q))


@pytest.mark.parametrize("period", [1.0, 2 * math.pi])
def test_torus_embedding_is_periodic_and_locally_isometric(period):
    manifold = FlatTorus(2, period)
    x = manifold.random(100, generator=_gen(), dtype=F64)
    e = manifold.embed(x)
    assert e.shape == (100, 4)
    torch.testing.assert_close(manifold.embed(x + period * torch.tensor([1.0, -2.0], dtype=F64)), e)
    step = 1e-4 * period * torch.randn(100, 2, generator=_gen(1), dtype=F64)
    y = manifold.expmap(x, step)
    chord = (manifold.embed(y) - e).norm(dim=-1)
    torch.testing.assert_close(chord, manifold.dist(x, y), rtol=1e-6, atol=0)


# ---- dexp⁻¹ on SO(3) -------------------------------------------------------------------------


def _body_velocity(manifold, x, u, a, h=1e-5):
    """Body velocity at s=0 of y(s) = x ⊗ exp(u + s·a), by central differences."""
    y0 = manifold.expmap(x, u)
    forward = manifold.logmap(y0, manifold.expmap(x, u + h * a))
    backward = manifold.logmap(y0, manifold.expmap(x, u - h * a))
    return (forward - backward) / (2 * h)


@pytest.mark.parametrize("radius", [0.0, 1e-3, 0.03, 0.5, 2.0, 3.0])
def test_quaternion_dexpinv_inverts_the_body_velocity(radius):
    manifold = UnitQuaternion()
    x = manifold.random(200, generator=_gen(), dtype=F64)
    u = torch.randn(200, 3, generator=_gen(1), dtype=F64)
    u = radius * u / u.norm(dim=-1, keepdim=True)
    a = torch.randn(200, 3, generator=_gen(2), dtype=F64)
    w = _body_velocity(manifold, x, u, a)
    torch.testing.assert_close(manifold.dexpinv(x, u, w), a, rtol=1e-7, atol=1e-8)


def test_quaternion_dexpinv_series_is_fourth_order():
    """``w + ½ u×w + u×(u×w)/12`` (body frame) agrees with the closed form to O(|u|⁴)."""
    manifold = UnitQuaternion()
    x = manifold.random(50, generator=_gen(), dtype=F64)
    w = torch.randn(50, 3, generator=_gen(1), dtype=F64)
    direction = torch.randn(50, 3, generator=_gen(2), dtype=F64)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    errors = []
    for radius in (0.2, 0.1):
        u = radius * direction
        uxw = torch.linalg.cross(u, w)
        series = w + 0.5 * uxw + torch.linalg.cross(u, uxw) / 12
        errors.append((manifold.dexpinv(x, u, w) - series).norm(dim=-1).max().item())
    assert 12 < errors[0] / errors[1] < 20  # halving |u| divides the error by ~2⁴


def test_dexpinv_is_the_identity_on_flat_spaces_and_finite_at_zero():
    for manifold in (Euclidean(3), FlatTorus(3)):
        w = torch.randn(4, 3, dtype=F64)
        assert torch.equal(manifold.dexpinv(manifold.random(4), torch.randn(4, 3), w), w)
    u = torch.zeros(4, 3, dtype=F64, requires_grad=True)
    w = torch.randn(4, 3, dtype=F64)
    out = UnitQuaternion().dexpinv(Q.random_uniform(4, dtype=F64), u, w)
    torch.testing.assert_close(out, w)
    (g,) = torch.autograd.grad(out.sum(), u)
    assert torch.isfinite(g).all()


# ---- product ---------------------------------------------------------------------------------


def test_product_combines_parts():
    manifold = MANIFOLDS["product"]
    assert isinstance(manifold, Manifold)
    assert manifold.dim == 9
    assert manifold.point_dim == {"rot": 4, "trans": 3, "frac": 3}
    assert not Product({"s": Sphere(2), "r": Euclidean(1)}).constant_geodesic_velocity
    x = manifold.random(*SHAPE, generator=_gen(), dtype=F64)
    y = manifold.random(*SHAPE, generator=_gen(1), dtype=F64)
    assert set(x) == {"rot", "trans", "frac"} and x["rot"].shape == (*SHAPE, 4)
    parts = [m.dist(x[k], y[k]) for k, m in manifold.parts.items()]
    torch.testing.assert_close(manifold.dist(x, y), torch.sqrt(sum(d**2 for d in parts)))
    embedded = manifold.embed(x)
    assert embedded["rot"].shape == (*SHAPE, 9) and embedded["frac"].shape == (*SHAPE, 6)
    x_same = {k: v.clone().requires_grad_(True) for k, v in x.items()}
    grads = torch.autograd.grad(manifold.dist(x_same, x).sum(), list(x_same.values()))
    assert all(torch.isfinite(g).all() for g in grads)


def test_sphere_maps_are_precise_for_close_points_in_float32():
    sphere = Sphere(2)
    x = sphere.random(500, generator=_gen(), dtype=F64)
    v = sphere.proju(x, torch.randn(500, 3, generator=_gen(1), dtype=F64))
    v = 1e-4 * v / v.norm(dim=-1, keepdim=True)
    y = sphere.expmap(x, v)
    x32, y32 = x.float(), y.float()
    reference = sphere.dist(x32.double(), y32.double())
    rel = (sphere.dist(x32, y32).double() - reference).abs() / reference
    assert rel.median() < 2e-3
