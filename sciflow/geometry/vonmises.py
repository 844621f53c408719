"""The von Mises distribution vM(μ, κ) on the circle: Bessel functions, entropy, sampling, and
the conjugate Bayesian update used by the periodic Bayesian flow (engine-math M4).

Angles are in radians; sampled and updated angles are wrapped to [−π, π). The density is
``vM(x|μ,κ) = exp(κ cos(x−μ)) / (2π I0(κ))`` with κ ≥ 0 (κ = 0 is the uniform distribution).
Bessel functions are evaluated in float64 from the exponentially scaled ``i0e``/``i1e``, so
nothing overflows for large κ; results are returned in the input's dtype.
"""

from __future__ import annotations

import math

import torch

from sciflow.geometry._numerics import check_tensor

TWO_PI = 2 * math.pi
LOG_TWO_PI = math.log(TWO_PI)

# Below this κ, log I0(κ) comes from its power series: log(i0e(κ)) + κ loses all relative
# accuracy there (log I0(κ) ≈ κ²/4 is far below the rounding error of i0e(κ) ≈ 1 − κ).
# Twelve terms of Σ (κ²/4)^k / (k!)² are exact to float64 rounding for κ < 2.
_SERIES_MAX = 2.0
_SERIES_TERMS = 12

# Below this κ, ``sample`` draws uniform angles: the density ratio to uniform is within 1e-12 of 1
# (and the rejection envelope's parameters would underflow as κ → 0).
UNIFORM_KAPPA = 1e-12

# Above this κ, ``sample`` draws from the normal approximation N(μ, 1/κ); its standard
# deviation differs from the von Mises one by a relative O(1/κ) < 1e-5.
NORMAL_APPROX_KAPPA = 1e5


def _as_f64(x: torch.Tensor | float, device: torch.device | None = None) -> torch.Tensor:
    """``x`` as a float64 tensor (a Python number becomes a 0-dim tensor on ``device``)."""
    if isinstance(x, torch.Tensor):
        return x.to(torch.float64)
    return torch.tensor(float(x), dtype=torch.float64, device=device)


def _device(*xs: torch.Tensor | float) -> torch.device | None:
    """The device of the first tensor argument (None: all are Python numbers)."""
    return next((x.device for x in xs if isinstance(x, torch.Tensor)), None)


def _out_dtype(*xs: torch.Tensor | float) -> torch.dtype:
    """The promoted floating dtype of the tensor arguments (float64 when none is a float
    tensor, e.g. for Python numbers)."""
    dtypes = [x.dtype for x in xs if isinstance(x, torch.Tensor) and x.is_floating_point()]
    if not dtypes:
        return torch.float64
    out = dtypes[0]
    for d in dtypes[1:]:
        out = torch.promote_types(out, d)
    return out


def wrap_angle(phi: torch.Tensor) -> torch.Tensor:
    """Angles (any shape) wrapped to [−π, π), also after rounding in the input's dtype."""
    wrapped = phi - TWO_PI * torch.floor((phi + math.pi) / TWO_PI)
    wrapped = torch.where(wrapped >= math.pi, wrapped - TWO_PI, wrapped)
    return torch.where(wrapped < -math.pi, wrapped + TWO_PI, wrapped)


def log_i0(kappa: torch.Tensor | float) -> torch.Tensor:
    """log I0(κ) for κ ≥ 0 (any shape, in κ's dtype; a float gives a float64 0-dim tensor).

    Power series for κ < 2, ``log(i0e(κ)) + κ`` above; relative error ~1e-15 in float64,
    differentiable (d/dκ log I0 = A(κ)).
    """
    k = _as_f64(kappa).abs()
    small = k < _SERIES_MAX
    q = torch.where(small, k, torch.zeros_like(k)).square() / 4  # the unused branch stays finite
    term = torch.ones_like(q)
    series = torch.zeros_like(q)
    for j in range(1, _SERIES_TERMS + 1):
        term = term * q / (j * j)
        series = series + term
    large = torch.log(torch.special.i0e(k)) + k
    return torch.where(small, torch.log1p(series), large).to(_out_dtype(kappa))


def bessel_ratio(kappa: torch.Tensor | float) -> torch.Tensor:
    """A(κ) = I1(κ)/I0(κ) = i1e(κ)/i0e(κ) ∈ [0, 1) for κ ≥ 0, A(0) = 0 (any shape; a float
    gives a float64 0-dim tensor, as in all functions here).

    A(κ) is the mean resultant length of vM(·, κ) and d/dκ log I0(κ).
    """
    k = _as_f64(kappa)
    return (torch.special.i1e(k) / torch.special.i0e(k)).to(_out_dtype(kappa))


def entropy(kappa: torch.Tensor | float) -> torch.Tensor:
    """Differential entropy of vM(·, κ) in nats (any shape), decreasing from H(0) = log 2π:

    ``H(κ) = log 2π + log i0e(κ) + κ·(1 − A(κ))``.
    """
    k = _as_f64(kappa)
    i0e = torch.special.i0e(k)
    one_minus_a = (i0e - torch.special.i1e(k)) / i0e
    return (LOG_TWO_PI + torch.log(i0e) + k * one_minus_a).to(_out_dtype(kappa))


def _check_kappa(kappa: torch.Tensor) -> None:
    bad = ~(torch.isfinite(kappa) & (kappa >= 0))
    if bad.any():
        raise ValueError(
            f"kappa: expected finite concentrations >= 0, got {int(bad.sum())} invalid value(s), "
            f"e.g. {kappa[bad][0].item()!r}"
        )


def _best_fisher(kappa: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Centred von Mises draws for a flat float64 ``kappa`` (K,) of positive κ, by Best–Fisher
    rejection from a wrapped Cauchy envelope; loops until every element is accepted
    (acceptance ≥ 65% per round for every κ)."""
    # ρ = (τ − √(2τ))/(2κ) with τ = 1 + √(1+4κ²), rewritten without cancellation at small κ.
    tau = 1 + torch.sqrt(1 + 4 * kappa.square())
    rho = 2 * kappa / (tau + torch.sqrt(2 * tau))
    r = (1 + rho.square()) / (2 * rho)
    out = torch.empty_like(kappa)
    todo = torch.arange(kappa.numel(), device=kappa.device)
    while todo.numel():
        k, rr = kappa[todo], r[todo]
        u = torch.rand(3, todo.numel(), generator=generator, dtype=kappa.dtype, device=kappa.device)
        z = torch.cos(math.pi * u[0])
        f = (1 + rr * z) / (rr + z)
        c = k * (rr - f)
        accept = (c * (2 - c) > u[1]) | (torch.log(c / u[1]) + 1 - c >= 0)
        angle = torch.sign(u[2] - 0.5) * torch.acos(f.clamp(-1.0, 1.0))
        out[todo[accept]] = angle[accept]
        todo = todo[~accept]
    return out


def sample(
    mu: torch.Tensor | float,
    kappa: torch.Tensor | float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draws y ~ vM(μ, κ), one per element of ``broadcast(mu, kappa)``, wrapped to [−π, π).

    mu: angles (radians); kappa: concentrations ≥ 0 (any broadcastable shapes). κ < 1e-12
    (``UNIFORM_KAPPA``, including κ = 0) gives uniform angles; 1e-12 ≤ κ ≤ 1e5 uses batched
    Best–Fisher rejection sampling in float64;
    κ > 1e5 (``NORMAL_APPROX_KAPPA``) uses the normal approximation N(μ, 1/κ), which keeps full
    precision where the rejection sampler's ``acos`` would not. The same ``generator`` state gives
    the same draws. Returns the promoted floating dtype of the tensor inputs (float64 if both are
    numbers or integer tensors).
    """
    device = _device(mu, kappa)
    mu64, k64 = torch.broadcast_tensors(_as_f64(mu, device), _as_f64(kappa, device))
    _check_kappa(k64)
    k = k64.reshape(-1)
    offset = torch.zeros_like(k)
    rejection = (k >= UNIFORM_KAPPA) & (k <= NORMAL_APPROX_KAPPA)
    offset[rejection] = _best_fisher(k[rejection], generator)
    uniform = k < UNIFORM_KAPPA
    u = torch.rand(int(uniform.sum()), generator=generator, dtype=k.dtype, device=device)
    offset[uniform] = TWO_PI * u - math.pi
    normal = k > NORMAL_APPROX_KAPPA
    g = torch.randn(int(normal.sum()), generator=generator, dtype=k.dtype, device=device)
    offset[normal] = g / torch.sqrt(k[normal])
    y = wrap_angle(mu64 + offset.reshape(mu64.shape))
    return wrap_angle(y.to(_out_dtype(mu, kappa)))


def circular_update(
    m: torch.Tensor, c: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bayesian update of an input distribution vM(m, c) by a sender sample y ~ vM(x, α).

    The posterior ∝ exp(c cos(x−m) + α cos(y−x)) is vM(m', c') with
    ``c' e^{im'} = c e^{im} + α e^{iy}``. m, c, y, alpha: broadcastable tensors (angles in
    radians, c, α ≥ 0). Returns ``(m', c')`` with m' wrapped to [−π, π) and c' ≥ 0.
    """
    check_tensor(m, "m", "circular means")
    check_tensor(c, "c", "concentrations")
    check_tensor(y, "y", "sender samples")
    re = c * torch.cos(m) + alpha * torch.cos(y)
    im = c * torch.sin(m) + alpha * torch.sin(y)
    return wrap_angle(torch.atan2(im, re)), torch.hypot(re, im)


def kl_equal_concentration(
    x: torch.Tensor, x_hat: torch.Tensor, alpha: torch.Tensor | float
) -> torch.Tensor:
    """KL(vM(x, α) ‖ vM(x̂, α)) = α·A(α)·(1 − cos(x − x̂)) (broadcast shape, x's dtype).

    1 − cos δ is evaluated as 2 sin²(δ/2), which keeps its relative precision for small δ.
    """
    check_tensor(x, "x", "angles")
    check_tensor(x_hat, "x_hat", "angles")
    alpha64 = _as_f64(alpha, x.device)
    return (alpha64 * bessel_ratio(alpha64)).to(x.dtype) * 2 * torch.sin((x - x_hat) / 2).square()
