"""Rotation matrices SO(3): hat/vee, exp/log, distance, uniform and IGSO(3) sampling.

Rotation vectors are (..., 3), matrices (..., 3, 3); ``igso3_sample`` returns unit quaternions
(..., 4) WXYZ (see ``sciflow.geometry.quaternion``). Formulas follow engine-math M2.
"""

from __future__ import annotations

import math

import torch

from sciflow.geometry import quaternion
from sciflow.geometry._numerics import (
    check_last_dim,
    check_matrix,
    check_positive,
    check_tensor,
    cos_sinc,
)

# IGSO(3) angle density. Below _DUAL_BELOW the character series converges slowly, so the density
# is evaluated in its Poisson-summed (wrapped-Gaussian) form; both are exact to < 1e-15.
_DUAL_BELOW = 1.0
_DUAL_IMAGES = 2  # images m = -2..2 of the wrapped form: e^{-(3π)²/2σ²} < 1e-19 for σ < 1
_SERIES_EXPONENT = 45.0  # truncate the series once l(l+1)σ²/2 > 45
_GRID_SIZE = 4097
_GRID_WIDTH = 14.0  # the sampling grid covers [0, min(π, 14σ)]: the mass beyond is < 1e-40


def hat(w: torch.Tensor) -> torch.Tensor:
    """Skew-symmetric matrix ``[w]×`` (..., 3, 3) of vectors ``w`` (..., 3): ``[w]× x = w × x``."""
    check_last_dim(w, 3, "w", "3-vectors")
    x, y, z = w.unbind(dim=-1)
    zero = torch.zeros_like(x)
    rows = ((zero, -z, y), (z, zero, -x), (-y, x, zero))
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def vee(W: torch.Tensor) -> torch.Tensor:
    """Vector (..., 3) of the skew-symmetric part of ``W`` (..., 3, 3); the inverse of ``hat``."""
    check_matrix(W, "W")
    skew = 0.5 * (W - W.transpose(-1, -2))
    return torch.stack([skew[..., 2, 1], skew[..., 0, 2], skew[..., 1, 0]], dim=-1)


def exp(w: torch.Tensor) -> torch.Tensor:
    """Rodrigues: rotation matrix (..., 3, 3) of the rotation vector ``w`` (..., 3).

    ``R = I + A[w]× + B[w]×²`` with ``A = sin θ/θ`` and ``B = (1 − cos θ)/θ²``, written as
    ``R = cos θ·I + A[w]× + B·w wᵀ`` and ``B = ½·sinc²(θ/2)`` (no cancellation for small θ);
    Taylor branches cover θ → 0.
    """
    check_last_dim(w, 3, "w", "rotation vectors")
    theta_sq = (w * w).sum(dim=-1)[..., None, None]
    cos_theta, a = cos_sinc(theta_sq)
    _, sinc_half = cos_sinc(theta_sq / 4.0)
    b = 0.5 * sinc_half * sinc_half
    eye = torch.eye(3, dtype=w.dtype, device=w.device)
    return cos_theta * eye + a * hat(w) + b * (w[..., :, None] * w[..., None, :])


def log(R: torch.Tensor) -> torch.Tensor:
    """Rotation vector (..., 3), angle in [0, π], of rotation matrices ``R`` (..., 3, 3).

    Robust route: largest-pivot conversion to a quaternion, then the quaternion log; no
    singularity at 0 or π.
    """
    check_matrix(R, "R")
    return quaternion.log(quaternion.from_matrix(R))


def dist(R1: torch.Tensor, R2: torch.Tensor) -> torch.Tensor:
    """Geodesic distance ``|log(R1ᵀ R2)|`` in [0, π] between rotations (..., 3, 3) -> (...)."""
    check_matrix(R1, "R1")
    check_matrix(R2, "R2")
    return quaternion.rotation_angle(quaternion.from_matrix(R1.transpose(-1, -2) @ R2))


def random_uniform(
    *shape: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Haar-uniform rotation matrices (*shape, 3, 3)."""
    q = quaternion.random_uniform(*shape, generator=generator, dtype=dtype, device=device)
    return quaternion.to_matrix(q)


def _series_density(omega: torch.Tensor, sigma: float) -> torch.Tensor:
    """Σ_l (2l+1)·exp(−l(l+1)σ²/2)·sin((l+½)ω) for ω (...,), float64."""
    num_terms = math.ceil(math.sqrt(2.0 * _SERIES_EXPONENT) / sigma) + 1
    l = torch.arange(num_terms, dtype=omega.dtype, device=omega.device)
    weights = (2 * l + 1) * torch.exp(-l * (l + 1) * sigma**2 / 2)
    return (weights * torch.sin((l + 0.5) * omega[..., None])).sum(dim=-1)


def _dual_density(omega: torch.Tensor, sigma: float) -> torch.Tensor:
    """The same sum by Poisson summation: a wrapped Gaussian-derivative series in ω (...,).

    With n = l + ½, l(l+1) = n² − ¼, the sum is e^{σ²/8}·Σ_{n∈ℤ+½} n·e^{−n²σ²/2}·sin(nω), and
    Poisson summation turns it into e^{σ²/8}·√(2π)/σ³·Σ_m (−1)^m (ω+2πm)·e^{−(ω+2πm)²/(2σ²)}.
    """
    m = torch.arange(-_DUAL_IMAGES, _DUAL_IMAGES + 1, dtype=omega.dtype, device=omega.device)
    shifted = omega[..., None] + 2 * math.pi * m
    signs = 1.0 - 2.0 * (m.abs() % 2)
    images = (signs * shifted * torch.exp(-(shifted**2) / (2 * sigma**2))).sum(dim=-1)
    return math.exp(sigma**2 / 8) * math.sqrt(2 * math.pi) / sigma**3 * images


def igso3_density_angle(omega: torch.Tensor, sigma: float) -> torch.Tensor:
    """Density on [0, π] of the rotation angle ω of IGSO(3)(σ) samples; same shape as ``omega``.

    ``f(ω) = (1 − cos ω)/π · Σ_{l≥0} (2l+1)·e^{−l(l+1)σ²/2}·sin((l+½)ω)/sin(ω/2)``, evaluated as
    ``(2/π)·sin(ω/2)·Σ…`` (no 0/0 at ω = 0). It integrates to 1 on [0, π]; for small σ the rotation
    vector is close to N(0, σ²I₃). Below σ = 1 the sum converges slowly and is evaluated in its
    Poisson-summed form (the same function; see ``_dual_density``). Computed in float64, returned
    in ``omega``'s dtype.
    """
    check_tensor(omega, "omega", "rotation angles")
    check_positive(sigma, "sigma")
    omega64 = omega.to(torch.float64)
    total = _dual_density if sigma < _DUAL_BELOW else _series_density
    density = 2.0 / math.pi * torch.sin(omega64 / 2) * total(omega64, float(sigma))
    return density.clamp_min(0.0).to(omega.dtype)


def _sample_angle(
    shape: tuple[int, ...],
    sigma: float,
    generator: torch.Generator | None,
    device: torch.device | str | None,
) -> torch.Tensor:
    """IGSO(3)(σ) rotation angles (*shape) in float64 by inverse CDF on a grid."""
    upper = min(math.pi, _GRID_WIDTH * sigma)
    grid = torch.linspace(0.0, upper, _GRID_SIZE, dtype=torch.float64, device=device)
    density = igso3_density_angle(grid, sigma)
    steps = 0.5 * (density[1:] + density[:-1]) * (grid[1:] - grid[:-1])
    cdf = torch.cat([grid.new_zeros(1), torch.cumsum(steps, dim=0)])
    cdf = cdf / cdf[-1]
    u = torch.rand(*shape, generator=generator, dtype=torch.float64, device=device)
    hi = torch.searchsorted(cdf, u.reshape(-1)).clamp(1, _GRID_SIZE - 1)
    lo = hi - 1
    frac = (u.reshape(-1) - cdf[lo]) / (cdf[hi] - cdf[lo]).clamp_min(1e-300)
    return (grid[lo] + frac.clamp(0, 1) * (grid[hi] - grid[lo])).reshape(shape)


def igso3_sample(
    *shape: int,
    sigma: float,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Unit quaternions (*shape, 4), ``w >= 0``, from the isotropic Gaussian IGSO(3)(σ) at identity.

    The angle is drawn by inverse CDF from ``igso3_density_angle`` on a 4097-point grid and the
    axis uniformly on the sphere. Multiply on the left or right by a mean rotation to recentre.
    """
    check_positive(sigma, "sigma")
    omega = _sample_angle(tuple(shape), float(sigma), generator, device)
    axis = torch.randn(*shape, 3, generator=generator, dtype=torch.float64, device=device)
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    half = omega[..., None] / 2
    q = torch.cat([torch.cos(half), torch.sin(half) * axis], dim=-1)
    return q.to(dtype or torch.get_default_dtype())
