"""Properties of sciflow.geometry.torus: wrap, exp/log maps, sampling and per-set mean removal."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sciflow.geometry import torus
from sciflow.manifolds import FlatTorus
from sciflow.testing import assert_path_velocity

F64 = torch.float64
PERIODS = [1.0, 2 * math.pi, 0.37]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@settings(max_examples=100, deadline=None)
@given(
    st.floats(-50.0, 50.0, allow_nan=False),
    st.sampled_from(PERIODS),
    st.integers(-5, 5),
)
def test_wrap_range_and_periodicity(delta, period, k):
    delta = torch.tensor(delta, dtype=F64)
    wrapped = torus.wrap(delta, period)
    assert -period / 2 <= wrapped < period / 2
    shifted = torus.wrap(delta + k * period, period)
    assert torus.wrap(shifted - wrapped, period).abs() < 1e-12


@pytest.mark.parametrize("period", PERIODS)
def test_wrap_half_period_goes_to_the_lower_end(period):
    half = torch.tensor([period / 2, -period / 2], dtype=F64)
    torch.testing.assert_close(torus.wrap(half, period), torch.full((2,), -period / 2, dtype=F64))
    ulp = torch.finfo(F64).eps
    edges = torch.tensor([0.5 * (1 - ulp), -0.5 * (1 + ulp), 1.5, 2.5, 7.5, -3.5], dtype=F64)
    wrapped = torus.wrap(edges * period, period)
    assert (wrapped >= -period / 2).all() and (wrapped < period / 2).all()


@pytest.mark.parametrize("period", PERIODS)
def test_exp_log_round_trip_and_distance(period):
    x = torus.uniform(500, 3, period=period, generator=_gen(), dtype=F64)
    y = torus.uniform(500, 3, period=period, generator=_gen(1), dtype=F64)
    v = torus.logmap(x, y, period)
    assert (v >= -period / 2).all() and (v < period / 2).all()
    back = torus.expmap(x, v, period)
    assert torus.wrap(back - y, period).abs().max() < 1e-12
    assert torus.logmap(x, x, period).abs().max() == 0
    tangent = (torch.rand(500, 3, generator=_gen(2), dtype=F64) - 0.5) * 0.999 * period
    moved = torus.expmap(x, tangent, period)
    torch.testing.assert_close(torus.logmap(x, moved, period), tangent)


def test_expmap_stays_in_the_half_open_box():
    x = torch.tensor([0.0, 0.5, 0.999999], dtype=torch.float32)
    v = torch.tensor([-1e-12, 0.5, 1e-6], dtype=torch.float32)
    out = torus.expmap(x, v, 1.0)
    assert (out >= 0).all() and (out < 1.0).all()


def test_uniform_range_and_seed():
    u = torus.uniform(4, 1000, 2, period=2 * math.pi, generator=_gen(3))
    assert u.shape == (4, 1000, 2)
    assert (u >= 0).all() and (u < 2 * math.pi).all()
    assert u.mean().item() == pytest.approx(math.pi, abs=0.05)
    torch.testing.assert_close(u, torus.uniform(4, 1000, 2, period=2 * math.pi, generator=_gen(3)))


@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("t", [0.0, 0.4, 0.95])
def test_wrapped_linear_path_velocity(period, t):
    x0 = torus.uniform(64, 3, period=period, generator=_gen(), dtype=F64)
    x1 = torus.uniform(64, 3, period=period, generator=_gen(1), dtype=F64)
    direction = torus.wrap(x1 - x0, period)

    def path(s):
        return torus.expmap(x0, s * direction, period)

    assert_path_velocity(FlatTorus(3, period), path, direction, t, rtol=1e-7, atol=1e-9)
    assert torus.wrap(path(1.0) - x1, period).abs().max() < 1e-12


# ---- remove_mean -----------------------------------------------------------------------------


def test_remove_mean_plain():
    v = torch.randn(4, 7, 3, generator=_gen(), dtype=F64)
    out = torus.remove_mean(v)
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(4, 3, dtype=F64))
    torch.testing.assert_close(out - v, (out - v)[:, :1].expand_as(v))  # one shift per set


def test_remove_mean_mask_and_index_agree():
    sizes = [3, 7, 1, 5]
    v = torch.randn(4, 7, 3, generator=_gen(1), dtype=F64)
    mask = torch.arange(7) < torch.tensor(sizes).unsqueeze(-1)
    padded = torus.remove_mean(v, mask=mask)
    torch.testing.assert_close(padded[~mask], v[~mask])  # padding untouched
    for b, n in enumerate(sizes):
        torch.testing.assert_close(padded[b, :n].mean(dim=0), torch.zeros(3, dtype=F64))
    index = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes))
    flat = torus.remove_mean(v[mask], index=index, num_sets=4)
    torch.testing.assert_close(flat, padded[mask])
    torch.testing.assert_close(torus.remove_mean(v[mask], index=index), flat)


def test_remove_mean_handles_empty_sets_and_gradients():
    v = torch.randn(2, 4, 3, dtype=F64, requires_grad=True)
    mask = torch.tensor([[True, True, False, False], [False, False, False, False]])
    out = torus.remove_mean(v, mask=mask)
    torch.testing.assert_close(out[1], v[1])
    (g,) = torch.autograd.grad(out.pow(2).sum(), v)
    assert torch.isfinite(g).all()
    index = torch.tensor([0, 0, 2])
    flat = torus.remove_mean(v[0, :3], index=index, num_sets=3)
    torch.testing.assert_close(flat[2], torch.zeros(3, dtype=F64))
