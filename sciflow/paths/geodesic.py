"""Geodesic paths on any manifold: x_t = exp_{x0}(κ_t · log_{x0}(x1)).

On the flat torus this is the wrapped linear interpolant, on unit quaternions the exponential-form
SLERP, on Euclidean space the straight line. The target velocity is κ̇_t/(1−κ_t)·log_{x_t}(x1); on
manifolds whose tangent representation keeps a geodesic's velocity constant (flat spaces, Lie groups
in the body frame) it is the closed form κ̇_t·log_{x0}(x1), exact for every t including t=1.
"""

from __future__ import annotations

import torch

from sciflow.manifolds.base import Manifold
from sciflow.paths.path import PathSample, ProbPath, time_like
from sciflow.paths.schedulers import LinearScheduler, Scheduler


class GeodesicPath(ProbPath):
    """Geodesic interpolation from x0 to x1 at the pace κ_t of ``scheduler``."""

    def __init__(self, manifold: Manifold, scheduler: Scheduler | None = None, eps: float = 1e-5):
        self.manifold = manifold
        self.scheduler = scheduler or LinearScheduler()
        self.eps = eps

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> PathSample:
        kappa, d_kappa = self.scheduler.kappa(time_like(t, x1))
        direction = self.manifold.logmap(x0, x1)
        x_t = self.manifold.expmap(x0, kappa * direction)
        if self.manifold.constant_geodesic_velocity:
            dx_t = d_kappa * direction
        else:
            dx_t = self._rate(kappa, d_kappa) * self.manifold.logmap(x_t, x1)
        return PathSample(x0=x0, x1=x1, t=t, x_t=x_t, dx_t=dx_t)

    def _rate(self, kappa: torch.Tensor, d_kappa: torch.Tensor) -> torch.Tensor:
        """κ̇/(1−κ), with 1−κ floored at ``eps`` so the last instant stays finite."""
        return d_kappa / (1 - kappa).clamp_min(self.eps)

    def velocity_from_x1(self, x_t, x1_pred, t):
        kappa, d_kappa = self.scheduler.kappa(time_like(t, x_t))
        return self._rate(kappa, d_kappa) * self.manifold.logmap(x_t, x1_pred)

    def x1_from_velocity(self, x_t, v, t):
        kappa, d_kappa = self.scheduler.kappa(time_like(t, x_t))
        return self.manifold.expmap(x_t, v / self._rate(kappa, d_kappa))

    def __repr__(self) -> str:
        return f"GeodesicPath({self.manifold!r}, {self.scheduler!r})"
