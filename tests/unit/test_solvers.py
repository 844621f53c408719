"""Tests of the manifold-aware ODE solvers: convergence orders, exactness, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sciflow.geometry.quaternion import to_matrix
from sciflow.manifolds.euclidean import Euclidean
from sciflow.manifolds.quaternion import UnitQuaternion
from sciflow.manifolds.torus import FlatTorus
from sciflow.solvers import METHODS, TABLEAUS, ODESolution, solve_ode

ORDERS = {name: tableau.order for name, tableau in TABLEAUS.items()}
STEPS = (10, 20, 40, 80)


def observed_order(steps, errors) -> float:
    """Slope of log(error) against log(h) for h = 1 / steps."""
    return float(np.polyfit(-np.log(np.asarray(steps)), np.log(np.asarray(errors)), 1)[0])


# --- a non-autonomous linear system in R^2 and a scalar ODE, both with closed forms -------------
#   x' = (-t I + (2 + cos 3t) J) x   ->  x(t) = exp(-t^2/2) R(2t + sin(3t)/3) x(0)
#   s' = t (1 - s)                   ->  s(t) = 1 + (s(0) - 1) exp(-t^2/2)


def linear_velocity(t, state):
    x, s = state["x"], state["s"]
    rotated = torch.stack([-x[..., 1], x[..., 0]], dim=-1)
    return {"x": -t * x + (2 + torch.cos(3 * t)) * rotated, "s": t * (1 - s)}


def linear_solution(t, state0, t0=0.0):
    """The closed form at time ``t`` of the solution that passes through ``state0`` at ``t0``."""

    def integrals(t):
        t = torch.as_tensor(t, dtype=torch.float64)
        return -(t**2) / 2, 2 * t + torch.sin(3 * t) / 3

    (a1, b1), (a0, b0) = integrals(t), integrals(t0)
    decay, angle = torch.exp(a1 - a0), b1 - b0
    x0 = state0["x"]
    x = decay * torch.stack(
        [
            torch.cos(angle) * x0[..., 0] - torch.sin(angle) * x0[..., 1],
            torch.sin(angle) * x0[..., 0] + torch.cos(angle) * x0[..., 1],
        ],
        dim=-1,
    )
    return {"x": x, "s": 1 + (state0["s"] - 1) * decay}


def linear_problem():
    generator = torch.Generator().manual_seed(0)
    x0 = {
        "x": torch.randn(4, 2, generator=generator, dtype=torch.float64),
        "s": torch.randn(4, 1, generator=generator, dtype=torch.float64),
    }
    return x0, {"x": Euclidean(2), "s": Euclidean(1)}


def state_error(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.parametrize("method", list(TABLEAUS))
def test_flat_convergence_order(method):
    x0, manifolds = linear_problem()
    exact = linear_solution(1.0, x0)
    errors = [
        state_error(
            solve_ode(linear_velocity, x0, manifolds, torch.linspace(0, 1, n + 1), method).x, exact
        )
        for n in STEPS
    ]
    assert abs(observed_order(STEPS, errors) - ORDERS[method]) < 0.3


def test_decreasing_time_grid_integrates_backwards():
    x0, manifolds = linear_problem()
    x1 = linear_solution(1.0, x0)
    back = solve_ode(linear_velocity, x1, manifolds, torch.linspace(1, 0, 51), "rk4")
    assert state_error(back.x, x0) < 1e-6


def test_one_rk4_step_on_flat_space_is_classical_rk4():
    x0, manifolds = linear_problem()
    t, h = torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.25, dtype=torch.float64)

    def add(x, k, c):
        return {name: x[name] + c * k[name] for name in x}

    k1 = linear_velocity(t, x0)
    k2 = linear_velocity(t + h / 2, add(x0, k1, h / 2))
    k3 = linear_velocity(t + h / 2, add(x0, k2, h / 2))
    k4 = linear_velocity(t + h, add(x0, k3, h))
    expected = {
        name: x0[name] + h / 6 * (k1[name] + 2 * k2[name] + 2 * k3[name] + k4[name]) for name in x0
    }
    solution = solve_ode(linear_velocity, x0, manifolds, torch.stack([t, t + h]), "rk4")
    assert state_error(solution.x, expected) < 1e-15


@pytest.mark.parametrize("method", list(TABLEAUS))
def test_trajectory_counts_and_determinism(method):
    x0, manifolds = linear_problem()
    grid = torch.linspace(0, 1, 6)
    first = solve_ode(linear_velocity, x0, manifolds, grid, method, return_trajectory=True)
    second = solve_ode(linear_velocity, x0, manifolds, grid, method, return_trajectory=True)
    assert isinstance(first, ODESolution)
    assert len(first.trajectory) == len(grid)
    assert all(first.trajectory[0][k] is x0[k] for k in x0)
    assert all(torch.equal(first.trajectory[-1][k], first.x[k]) for k in x0)
    assert all(torch.equal(first.x[k], second.x[k]) for k in x0)
    assert torch.equal(first.times, grid.double())
    assert first.num_function_evals == 5 * len(TABLEAUS[method].b)
    assert solve_ode(linear_velocity, x0, manifolds, grid, method).trajectory is None


def test_time_is_a_scalar_in_the_state_dtype_and_gradients_flow():
    seen = []

    def velocity(t, state):
        seen.append((t.ndim, t.dtype))
        return {"x": -state["x"]}

    x0 = torch.ones(3, 2, requires_grad=True)  # float32
    solution = solve_ode(velocity, {"x": x0}, {"x": Euclidean(2)}, [0.0, 0.5, 1.0], "midpoint")
    assert set(seen) == {(0, torch.float32)}
    solution.x["x"].sum().backward()
    assert torch.allclose(x0.grad, torch.full_like(x0, (1 - 0.5 + 0.125) ** 2))


def test_progress_bar_runs(capsys):
    x0, manifolds = linear_problem()
    for method in ("euler", "dopri5"):
        solve_ode(linear_velocity, x0, manifolds, torch.linspace(0, 1, 4), method, progress=True)
    assert "solve_ode" in capsys.readouterr().err


# --- dopri5 -------------------------------------------------------------------------------------


def test_dopri5_matches_the_closed_form():
    x0, manifolds = linear_problem()
    grid = torch.linspace(0, 1, 5)
    solution = solve_ode(
        linear_velocity, x0, manifolds, grid, "dopri5", True, rtol=1e-10, atol=1e-10
    )
    for t, state in zip(grid, solution.trajectory, strict=True):
        assert state_error(state, linear_solution(t, x0)) < 1e-6
    assert solution.num_function_evals > 0


# --- validation ---------------------------------------------------------------------------------


def test_unknown_method_lists_the_valid_names():
    x0, manifolds = linear_problem()
    with pytest.raises(ValueError, match="method") as info:
        solve_ode(linear_velocity, x0, manifolds, [0.0, 1.0], "rk45")
    assert all(name in str(info.value) for name in METHODS)


@pytest.mark.parametrize(
    "grid", [[0.0, 0.5, 0.4, 1.0], [0.0, 0.0, 1.0], [0.0], [[0.0, 1.0]], [0.0, float("nan")]]
)
def test_bad_time_grid_raises(grid):
    x0, manifolds = linear_problem()
    with pytest.raises(ValueError, match="time_grid"):
        solve_ode(linear_velocity, x0, manifolds, torch.tensor(grid))


def test_key_mismatch_raises():
    x0, manifolds = linear_problem()
    with pytest.raises(ValueError, match="only in manifolds: \\['s'\\]"):
        solve_ode(linear_velocity, {"x": x0["x"]}, manifolds, [0.0, 1.0])


def test_empty_state_raises():
    with pytest.raises(ValueError, match="x0"):
        solve_ode(linear_velocity, {}, {}, [0.0, 1.0])


def test_wrong_point_shape_raises():
    x0, manifolds = linear_problem()
    with pytest.raises(ValueError, match="x0\\['s'\\]"):
        solve_ode(linear_velocity, {**x0, "s": x0["x"]}, manifolds, [0.0, 1.0])


def test_wrong_velocity_shape_names_the_part():
    x0, manifolds = linear_problem()

    def velocity(t, state):
        return {**linear_velocity(t, state), "s": state["x"]}

    with pytest.raises(ValueError, match="velocity\\(t, x\\)\\['s'\\]"):
        solve_ode(velocity, x0, manifolds, [0.0, 1.0], "heun")


def test_missing_velocity_part_raises():
    x0, manifolds = linear_problem()
    with pytest.raises(ValueError, match="missing \\['s'\\]"):
        solve_ode(lambda t, state: {"x": state["x"]}, x0, manifolds, [0.0, 1.0])


def test_non_callable_velocity_raises():
    x0, manifolds = linear_problem()
    with pytest.raises(TypeError, match="velocity"):
        solve_ode(None, x0, manifolds, [0.0, 1.0])


# --- the flat torus -----------------------------------------------------------------------------
#   On angles theta = 2 pi x / period:  theta' = w + b(t) sin(theta - w t),  b(t) = 1 + cos(2t)
#   phi = theta - w t  obeys  phi' = b(t) sin(phi), so tan(phi/2) = tan(phi0/2) exp(B(t)).

TORUS_PERIOD = 2.0
TORUS_SPEED = torch.tensor([7.0, -4.0], dtype=torch.float64)


def torus_velocity(t, state):
    theta = 2 * math.pi * state["f"] / TORUS_PERIOD
    dtheta = TORUS_SPEED + (1 + torch.cos(2 * t)) * torch.sin(theta - TORUS_SPEED * t)
    return {"f": dtheta * TORUS_PERIOD / (2 * math.pi)}


def torus_solution(t, f0):
    phi0 = 2 * math.pi * f0 / TORUS_PERIOD
    big_b = t + math.sin(2 * t) / 2
    theta = TORUS_SPEED * t + 2 * torch.atan(torch.tan(phi0 / 2) * math.exp(big_b))
    return torch.remainder(theta * TORUS_PERIOD / (2 * math.pi), TORUS_PERIOD)


def torus_problem():
    torus = FlatTorus(2, period=TORUS_PERIOD)
    f0 = torus.random(6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return {"f": f0}, {"f": torus}


@pytest.mark.parametrize("method", list(TABLEAUS))
def test_torus_convergence_order(method):
    x0, manifolds = torus_problem()
    torus, exact = manifolds["f"], torus_solution(1.0, x0["f"])
    errors = []
    for n in STEPS:
        x = solve_ode(torus_velocity, x0, manifolds, torch.linspace(0, 1, n + 1), method).x["f"]
        assert ((x >= 0) & (x < TORUS_PERIOD)).all()
        errors.append(torus.dist(x, exact).max().item())
    assert abs(observed_order(STEPS, errors) - ORDERS[method]) < 0.3


def test_dopri5_on_the_torus_wraps_the_unwrapped_solution():
    x0, manifolds = torus_problem()
    solution = solve_ode(
        torus_velocity, x0, manifolds, torch.linspace(0, 1, 3), "dopri5", rtol=1e-10, atol=1e-10
    )
    x = solution.x["f"]
    assert ((x >= 0) & (x < TORUS_PERIOD)).all()
    assert manifolds["f"].dist(x, torus_solution(1.0, x0["f"])).max() < 1e-6


# --- SO(3) as unit quaternions, body-frame angular velocities -----------------------------------


def so3_problem():
    manifold = UnitQuaternion()
    q0 = manifold.random(5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return {"rot": q0}, {"rot": manifold}


@pytest.mark.parametrize("method", list(TABLEAUS))
def test_constant_body_velocity_is_integrated_exactly(method):
    x0, manifolds = so3_problem()
    omega = torch.randn(5, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    solution = solve_ode(
        lambda t, state: {"rot": omega}, x0, manifolds, torch.linspace(0, 1, 8), method
    )
    exact = manifolds["rot"].expmap(x0["rot"], omega)
    assert manifolds["rot"].dist(solution.x["rot"], exact).max() < 1e-12
    assert torch.allclose(solution.x["rot"].norm(dim=-1), torch.ones(5, dtype=torch.float64))


def so3_velocity(t, state):
    """A body velocity that depends on the rotation: a spatial spin, a torque-like term, a drift."""
    rotation = to_matrix(state["rot"])  # (..., 3, 3), body -> space
    spatial = torch.stack([torch.sin(3 * t), torch.cos(2 * t), torch.ones_like(t)])
    axis = torch.tensor([0.3, -1.2, 0.8], dtype=rotation.dtype)
    first_row = rotation[..., 0, :]
    return {
        "rot": rotation.transpose(-1, -2) @ spatial
        + torch.linalg.cross(first_row, axis.expand_as(first_row))
        + 0.5 * rotation[..., :, 2]
    }


@pytest.fixture(scope="module")
def so3_reference():
    x0, manifolds = so3_problem()
    return solve_ode(so3_velocity, x0, manifolds, torch.linspace(0, 1, 513), "rk4").x["rot"]


@pytest.mark.parametrize("method", list(TABLEAUS))
def test_so3_convergence_order(method, so3_reference):
    """RKMK keeps the classical order on SO(3); rk4 needs dexpinv's bracket terms to reach 4."""
    x0, manifolds = so3_problem()
    so3, reference = manifolds["rot"], so3_reference
    steps = (8, 16, 32, 64)
    errors = [
        so3.dist(
            solve_ode(so3_velocity, x0, manifolds, torch.linspace(0, 1, n + 1), method).x["rot"],
            reference,
        )
        .max()
        .item()
        for n in steps
    ]
    assert abs(observed_order(steps, errors) - ORDERS[method]) < 0.3


def test_dopri5_rejects_curved_parts():
    x0, manifolds = so3_problem()
    with pytest.raises(ValueError, match="manifolds\\['rot'\\].*dopri5.*only flat"):
        solve_ode(lambda t, s: {"rot": torch.zeros(5, 3)}, x0, manifolds, [0.0, 1.0], "dopri5")
