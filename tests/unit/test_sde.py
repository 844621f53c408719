"""Tests of geodesic Euler–Maruyama: the noiseless limit, Ornstein–Uhlenbeck moments, seeding."""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.manifolds.euclidean import Euclidean
from sciflow.manifolds.quaternion import UnitQuaternion
from sciflow.manifolds.torus import FlatTorus
from sciflow.solvers import solve_ode, solve_sde


def drift(t, state):
    return {"x": -state["x"] + torch.sin(3 * t)}


def no_noise(t, state):
    return {"x": 0.0}


def unit_noise(t, state):
    return {"x": torch.tensor(1.0, dtype=state["x"].dtype)}


def problem():
    x0 = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return {"x": x0}, {"x": Euclidean(3)}


def test_without_noise_it_is_euler():
    x0, manifolds = problem()
    grid = torch.linspace(0, 1, 21)
    sde = solve_sde(drift, no_noise, x0, manifolds, grid, torch.Generator().manual_seed(0))
    ode = solve_ode(drift, x0, manifolds, grid, "euler")
    assert torch.allclose(sde.x["x"], ode.x["x"], rtol=0, atol=1e-14)
    assert sde.num_function_evals == 20


def test_ornstein_uhlenbeck_variance():
    theta, sigma, horizon = 1.5, 0.8, 1.0
    x0 = {"x": torch.zeros(20_000, 1, dtype=torch.float64)}
    solution = solve_sde(
        lambda t, state: {"x": -theta * state["x"]},
        lambda t, state: {"x": sigma},
        x0,
        {"x": Euclidean(1)},
        torch.linspace(0, horizon, 201),
        torch.Generator().manual_seed(0),
    )
    variance = sigma**2 * (1 - math.exp(-2 * theta * horizon)) / (2 * theta)
    x = solution.x["x"]
    assert abs(x.var().item() / variance - 1) < 0.05
    assert abs(x.mean().item()) < 5 * math.sqrt(variance / len(x))


def test_same_seed_same_paths_and_other_seed_other_paths():
    x0, manifolds = problem()
    grid = torch.linspace(0, 1, 11)

    def run(seed):
        return solve_sde(
            drift, unit_noise, x0, manifolds, grid, torch.Generator().manual_seed(seed), True
        )

    first, again, other = run(3), run(3), run(4)
    assert len(first.trajectory) == len(grid)
    assert first.trajectory[0]["x"] is x0["x"]
    assert all(
        torch.equal(a["x"], b["x"]) for a, b in zip(first.trajectory, again.trajectory, strict=True)
    )
    assert not torch.equal(first.x["x"], other.x["x"])


def test_per_sample_diffusion_scale():
    x0, manifolds = problem()
    grid = torch.linspace(0, 1, 11)
    scale = torch.zeros(8, 1, dtype=torch.float64)
    scale[4:] = 1.0
    noisy = solve_sde(drift, lambda t, state: {"x": scale}, x0, manifolds, grid)
    euler = solve_ode(drift, x0, manifolds, grid, "euler")
    assert torch.allclose(noisy.x["x"][:4], euler.x["x"][:4], rtol=0, atol=1e-14)
    assert not torch.allclose(noisy.x["x"][4:], euler.x["x"][4:])


def test_decreasing_time_grid_uses_the_step_size():
    x0 = {"x": torch.zeros(20_000, 1, dtype=torch.float64)}
    solution = solve_sde(
        lambda t, state: {"x": torch.zeros_like(state["x"])},
        lambda t, state: {"x": 1.0},
        x0,
        {"x": Euclidean(1)},
        torch.linspace(1, 0.5, 11),
        torch.Generator().manual_seed(0),
    )
    assert abs(solution.x["x"].var().item() / 0.5 - 1) < 0.05


def test_diffusion_that_does_not_broadcast_names_the_part():
    x0, manifolds = problem()
    with pytest.raises(ValueError, match="diffusion\\(t, x\\)\\['x'\\]"):
        solve_sde(drift, lambda t, state: {"x": torch.ones(8)}, x0, manifolds, [0.0, 1.0])


def test_bad_drift_and_grid_raise():
    x0, manifolds = problem()
    with pytest.raises(ValueError, match="drift\\(t, x\\)\\['x'\\]"):
        solve_sde(lambda t, s: {"x": s["x"][..., :2]}, unit_noise, x0, manifolds, [0.0, 1.0])
    with pytest.raises(ValueError, match="time_grid"):
        solve_sde(drift, unit_noise, x0, manifolds, [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="diffusion"):
        solve_sde(drift, lambda t, s: {}, x0, manifolds, [0.0, 1.0])


def test_paths_stay_on_curved_and_periodic_parts():
    rot, frac = UnitQuaternion(), FlatTorus(3)
    generator = torch.Generator().manual_seed(5)
    x0 = {
        "rot": rot.random(64, generator=generator, dtype=torch.float64),
        "frac": frac.random(64, generator=generator, dtype=torch.float64),
    }
    solution = solve_sde(
        lambda t, state: {"rot": torch.ones(64, 3), "frac": torch.full((64, 3), 0.3)},
        lambda t, state: {"rot": 2.0, "frac": torch.tensor([[0.1, 1.0, 3.0]])},
        x0,
        {"rot": rot, "frac": frac},
        torch.linspace(0, 1, 11),
        generator,
        return_trajectory=True,
    )
    for state in solution.trajectory:
        rot.check_point(state["rot"], atol=1e-12)
        frac.check_point(state["frac"], atol=0.0)
