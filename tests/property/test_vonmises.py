"""Properties of sciflow.geometry.vonmises: Bessel functions, entropy, sampling, update, KL."""

import math

import mpmath
import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from sciflow.geometry import vonmises

F64 = torch.float64
GRID = 20_000
KAPPAS = np.concatenate(
    [[1e-6, 1e-3, 0.5, 1.999, 2.0, 2.001, 30.0, 700.0, 1e5], np.logspace(-6, 5, 60)]
)


def _grid() -> torch.Tensor:
    """Midpoints of GRID equal cells of [−π, π): the periodic trapezoid rule, exponentially
    accurate for smooth periodic integrands."""
    return -math.pi + 2 * math.pi * (torch.arange(GRID, dtype=F64) + 0.5) / GRID


def _vm_density(x: torch.Tensor, mu: float, kappa: float) -> torch.Tensor:
    return torch.exp(kappa * torch.cos(x - mu) - vonmises.log_i0(kappa)) / (2 * math.pi)


# -- Bessel functions and entropy ------------------------------------------------------------------
def test_bessel_ratio_matches_scipy():
    k = torch.tensor(KAPPAS, dtype=F64)
    ref = scipy.special.ive(1, KAPPAS) / scipy.special.ive(0, KAPPAS)
    np.testing.assert_allclose(vonmises.bessel_ratio(k).numpy(), ref, rtol=1e-10, atol=0)
    assert vonmises.bessel_ratio(0.0).item() == 0.0


def test_log_i0_matches_high_precision_reference():
    # scipy's log(i0e(κ)) + κ is itself inaccurate for small κ (log I0 ≈ κ²/4 drowns in the
    # rounding of i0e ≈ 1 − κ), so the reference is mpmath; scipy's is checked where it is exact.
    got = vonmises.log_i0(torch.tensor(KAPPAS, dtype=F64)).numpy()
    with mpmath.workdps(40):
        ref = np.array([float(mpmath.log(mpmath.besseli(0, mpmath.mpf(k)))) for k in KAPPAS])
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=0)
    large = KAPPAS >= 2
    np.testing.assert_allclose(
        got[large], np.log(scipy.special.i0e(KAPPAS[large])) + KAPPAS[large], rtol=1e-12
    )
    assert vonmises.log_i0(0.0).item() == 0.0


@pytest.mark.parametrize("fn", [vonmises.log_i0, vonmises.bessel_ratio, vonmises.entropy])
def test_bessel_gradients_are_finite(fn):
    k = torch.tensor([0.0, 1e-6, 1.999, 2.0, 2.001, 1e3, 1e5], dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(fn(k).sum(), k)
    assert torch.isfinite(grad).all()


def test_log_i0_derivative_is_the_bessel_ratio():
    k = torch.tensor([1e-6, 0.3, 1.999, 2.001, 40.0, 1e4], dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(vonmises.log_i0(k).sum(), k)
    torch.testing.assert_close(grad, vonmises.bessel_ratio(k.detach()), rtol=1e-10, atol=0)


def test_entropy_starts_at_log_two_pi_and_decreases():
    assert vonmises.entropy(0.0).item() == pytest.approx(math.log(2 * math.pi), abs=1e-15)
    h = vonmises.entropy(torch.logspace(-6, 5, 500, dtype=F64))
    assert (h.diff() < 0).all()
    assert torch.isfinite(h).all()


@pytest.mark.parametrize("kappa", [0.01, 1.0, 5.0, 80.0])
def test_entropy_equals_the_numeric_integral(kappa):
    x = _grid()
    p = _vm_density(x, 0.3, kappa)
    numeric = -(p * torch.log(p)).sum() * (2 * math.pi / GRID)
    assert vonmises.entropy(torch.tensor(kappa, dtype=F64)).item() == pytest.approx(
        numeric.item(), abs=1e-10
    )


# -- sampling ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kappa", [0.0, 0.1, 2.0, 50.0, 1e5, 1e6])
def test_sample_moments(kappa):
    n, mu = 100_000, 2.5
    y = vonmises.sample(
        torch.tensor(mu, dtype=F64),
        torch.full((n,), kappa, dtype=F64),
        torch.Generator().manual_seed(0),
    )
    assert y.shape == (n,) and y.dtype == F64
    assert ((y >= -math.pi) & (y < math.pi)).all()
    cos, sin = torch.cos(y - mu), torch.sin(y - mu)
    # E[cos(y − μ)] = A(κ) (the mean resultant length), E[sin(y − μ)] = 0 (the circular mean is μ)
    a = vonmises.bessel_ratio(torch.tensor(kappa, dtype=F64)).item()
    assert abs(cos.mean().item() - a) < 5 * cos.std().item() / math.sqrt(n) + 1e-12
    assert abs(sin.mean().item()) < 5 * sin.std().item() / math.sqrt(n) + 1e-12


@pytest.mark.parametrize("kappa", [0.0, 0.7, 2.0, 50.0])
def test_sample_distribution_passes_ks(kappa):
    y = vonmises.sample(torch.zeros(20_000, dtype=F64), kappa, torch.Generator().manual_seed(1))
    if kappa == 0:
        cdf = scipy.stats.uniform(-math.pi, 2 * math.pi).cdf
    else:
        cdf = scipy.stats.vonmises(kappa).cdf
    assert scipy.stats.kstest(y.numpy(), cdf).pvalue > 1e-3


def test_sample_is_reproducible_broadcast_and_keeps_dtype():
    mu = torch.tensor([[-3.0], [0.0], [3.1]])
    kappa = torch.tensor([0.0, 0.5, 30.0, 2e6])
    a = vonmises.sample(mu, kappa, torch.Generator().manual_seed(7))
    b = vonmises.sample(mu, kappa, torch.Generator().manual_seed(7))
    assert a.shape == (3, 4) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert ((a >= -math.pi) & (a < math.pi)).all()
    assert not torch.equal(a, vonmises.sample(mu, kappa, torch.Generator().manual_seed(8)))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_sample_rejects_bad_concentrations(bad):
    with pytest.raises(ValueError, match="kappa"):
        vonmises.sample(torch.zeros(3), torch.tensor([1.0, bad, 2.0]))


# -- Bayesian update -------------------------------------------------------------------------------
def _fit_concentration(r: float) -> float:
    """The κ with A(κ) = r."""
    return brentq(lambda k: vonmises.bessel_ratio(torch.tensor(k, dtype=F64)).item() - r, 0, 1e4)


@settings(max_examples=25, deadline=None)
@given(
    st.floats(-math.pi, math.pi),
    st.floats(0.0, 30.0),
    st.floats(-math.pi, math.pi),
    st.floats(0.01, 30.0),
)
def test_circular_update_is_the_numeric_posterior(m, c, y, alpha):
    x = _grid()
    # prior vM(x | m, c) times the likelihood vM(y | x, α), normalised numerically
    log_post = c * torch.cos(x - m) + alpha * torch.cos(y - x)
    post = torch.exp(log_post - log_post.max())
    post = post / (post.sum() * (2 * math.pi / GRID))
    m_new, c_new = vonmises.circular_update(
        torch.tensor(m, dtype=F64), torch.tensor(c, dtype=F64), torch.tensor(y, dtype=F64), alpha
    )
    torch.testing.assert_close(post, _vm_density(x, m_new.item(), c_new.item()), rtol=1e-8, atol=0)
    resultant = (post * torch.exp(1j * x)).sum() * (2 * math.pi / GRID)
    assert abs(math.remainder(torch.angle(resultant).item() - m_new.item(), 2 * math.pi)) < 1e-8
    assert _fit_concentration(resultant.abs().item()) == pytest.approx(c_new.item(), rel=1e-8)


def test_circular_update_from_the_prior_and_ranges():
    g = torch.Generator().manual_seed(0)
    m = torch.rand(1000, generator=g, dtype=F64) * 20 - 10
    c = torch.rand(1000, generator=g, dtype=F64) * 5
    y = torch.rand(1000, generator=g, dtype=F64) * 2 * math.pi - math.pi
    m_new, c_new = vonmises.circular_update(m, c, y, 2.0)
    assert ((m_new >= -math.pi) & (m_new < math.pi)).all() and (c_new >= 0).all()
    m0, c0 = vonmises.circular_update(m, torch.zeros_like(c), y, 2.0)
    torch.testing.assert_close(m0, y)
    torch.testing.assert_close(c0, torch.full_like(c0, 2.0))


# -- KL ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.05, 1.0, 7.0, 60.0])
@pytest.mark.parametrize("diff", [0.0, 1e-3, 0.4, 2.0, math.pi])
def test_kl_equals_the_numeric_integral(alpha, diff):
    x = _grid()
    x0, x1 = 0.7, 0.7 - diff
    p, q = _vm_density(x, x0, alpha), _vm_density(x, x1, alpha)
    numeric = (p * torch.log(p / q)).sum() * (2 * math.pi / GRID)
    kl = vonmises.kl_equal_concentration(
        torch.tensor(x0, dtype=F64), torch.tensor(x1, dtype=F64), alpha
    )
    assert kl.item() == pytest.approx(numeric.item(), rel=1e-9, abs=1e-13)
