"""Probability paths: endpoints, target velocity vs finite differences, prediction converters."""

import math

import pytest
import torch

from sciflow.manifolds import Euclidean, FlatTorus, Sphere, UnitQuaternion
from sciflow.paths.affine import AffinePath
from sciflow.paths.geodesic import GeodesicPath
from sciflow.paths.schedulers import (
    CosineScheduler,
    ExponentialScheduler,
    LinearScheduler,
    VPScheduler,
)
from sciflow.testing import assert_path_velocity

F64 = torch.float64


def _times(n, t):
    return torch.full((n,), float(t), dtype=F64)


MANIFOLDS = [
    Euclidean(3),
    FlatTorus(3, period=1.0),
    FlatTorus(2, period=2 * math.pi),
    UnitQuaternion(),
    Sphere(2),
]
SCHEDULERS = [LinearScheduler(), ExponentialScheduler(rate=5.0), CosineScheduler()]


def _pair(manifold, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = manifold.random(n, generator=g, dtype=torch.float64)
    x1 = manifold.random(n, generator=g, dtype=torch.float64)
    if isinstance(manifold, Sphere):  # keep away from antipodes, where the geodesic is not unique
        x1 = manifold.projx(x0 + 0.8 * x1)
    return x0, x1


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=repr)
@pytest.mark.parametrize("manifold", MANIFOLDS, ids=repr)
def test_geodesic_velocity_is_derivative_of_path(manifold, scheduler):
    path = GeodesicPath(manifold, scheduler)
    x0, x1 = _pair(manifold)
    for t in (0.1, 0.45, 0.8):
        tt = _times(x0.shape[0], t)
        sample = path.sample(x0, x1, tt)
        assert_path_velocity(
            manifold,
            lambda s: path.sample(x0, x1, _times(x0.shape[0], s)).x_t,
            sample.dx_t,
            t,
        )


@pytest.mark.parametrize("manifold", MANIFOLDS, ids=repr)
def test_linear_geodesic_endpoints(manifold):
    path = GeodesicPath(manifold)
    x0, x1 = _pair(manifold)
    n = x0.shape[0]
    at0 = path.sample(x0, x1, torch.zeros(n, dtype=F64)).x_t
    at1 = path.sample(x0, x1, torch.ones(n, dtype=F64)).x_t
    assert manifold.dist(at0, x0).max() < 1e-9
    assert manifold.dist(at1, x1).max() < 1e-9


@pytest.mark.parametrize("scheduler", [*SCHEDULERS, VPScheduler()], ids=repr)
def test_affine_velocity_is_derivative_of_path(scheduler):
    manifold = Euclidean(4)
    path = AffinePath(manifold, scheduler)
    x0, x1 = _pair(manifold)
    for t in (0.2, 0.5, 0.9):
        sample = path.sample(x0, x1, _times(16, t))
        assert_path_velocity(
            manifold,
            lambda s: path.sample(x0, x1, _times(16, s)).x_t,
            sample.dx_t,
            t,
        )


@pytest.mark.parametrize(
    "path",
    [
        AffinePath(Euclidean(3), VPScheduler()),
        AffinePath(Euclidean(3), CosineScheduler()),
        GeodesicPath(UnitQuaternion()),
        GeodesicPath(FlatTorus(3)),
        GeodesicPath(Sphere(2)),
    ],
    ids=repr,
)
def test_x1_and_velocity_converters_are_inverse(path):
    x0, x1 = _pair(path.manifold)
    t = torch.linspace(0.1, 0.9, x0.shape[0], dtype=F64)
    sample = path.sample(x0, x1, t)
    v = path.velocity_from_x1(sample.x_t, x1, t)
    assert torch.allclose(v, sample.dx_t, atol=1e-8)
    back = path.x1_from_velocity(sample.x_t, sample.dx_t, t)
    assert path.manifold.dist(back, x1).max() < 1e-7


def test_quaternion_path_does_not_depend_on_sign_of_endpoint():
    manifold = UnitQuaternion()
    path = GeodesicPath(manifold)
    x0, x1 = _pair(manifold)
    t = _times(16, 0.37)
    a, b = path.sample(x0, x1, t), path.sample(x0, -x1, t)
    assert manifold.dist(a.x_t, b.x_t).max() < 1e-9
    assert torch.allclose(a.dx_t, b.dx_t, atol=1e-9)


def test_schedulers_satisfy_boundary_conditions():
    t = torch.tensor([0.0, 1.0], dtype=F64)
    for scheduler in (LinearScheduler(), CosineScheduler()):
        s = scheduler(t)
        assert torch.allclose(s.alpha, torch.tensor([0.0, 1.0], dtype=F64), atol=1e-12)
        assert torch.allclose(s.sigma, torch.tensor([1.0, 0.0], dtype=F64), atol=1e-12)
    vp = VPScheduler()(t)
    assert vp.alpha[1] == 1 and vp.sigma[1] == 0 and vp.alpha[0] < 1e-2
    kappa, d_kappa = ExponentialScheduler(rate=10.0).kappa(torch.linspace(0, 1, 11, dtype=F64))
    assert torch.allclose(d_kappa / (1 - kappa), torch.full((11,), 10.0, dtype=F64))


@pytest.mark.parametrize("scheduler", [*SCHEDULERS, VPScheduler()], ids=repr)
def test_scheduler_derivatives_match_finite_differences(scheduler):
    t = torch.linspace(0.05, 0.95, 19, dtype=F64)
    h = 1e-6
    s, up, down = scheduler(t), scheduler(t + h), scheduler(t - h)
    assert torch.allclose(s.d_alpha, (up.alpha - down.alpha) / (2 * h), rtol=1e-5, atol=1e-6)
    assert torch.allclose(s.d_sigma, (up.sigma - down.sigma) / (2 * h), rtol=1e-5, atol=1e-6)


def test_bad_inputs_name_the_argument():
    with pytest.raises(TypeError, match="manifold"):
        AffinePath(FlatTorus(2))
    with pytest.raises(ValueError, match="rate"):
        ExponentialScheduler(rate=-1.0)
    path = GeodesicPath(Euclidean(2))
    with pytest.raises(ValueError, match="t:"):
        path.sample(torch.zeros(4, 2), torch.ones(4, 2), torch.zeros(5))
