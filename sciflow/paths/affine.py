"""Affine paths in Euclidean space: x_t = α_t·x1 + σ_t·x0."""

from __future__ import annotations

import torch

from sciflow.manifolds.euclidean import Euclidean
from sciflow.paths.path import PathSample, ProbPath, time_like
from sciflow.paths.schedulers import LinearScheduler, Scheduler


class AffinePath(ProbPath):
    """x_t = α_t x1 + σ_t x0 with target velocity dα_t x1 + dσ_t x0, on Euclidean space only."""

    def __init__(self, manifold: Euclidean, scheduler: Scheduler | None = None):
        if not isinstance(manifold, Euclidean):
            raise TypeError(
                f"manifold: AffinePath needs a Euclidean manifold, got {manifold!r}; "
                "use GeodesicPath on curved or periodic spaces"
            )
        self.manifold = manifold
        self.scheduler = scheduler or LinearScheduler()

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> PathSample:
        s = self.scheduler(time_like(t, x1))
        x_t = s.alpha * x1 + s.sigma * x0
        dx_t = s.d_alpha * x1 + s.d_sigma * x0
        return PathSample(x0=x0, x1=x1, t=t, x_t=x_t, dx_t=dx_t)

    def velocity_from_x1(self, x_t, x1_pred, t):
        s = self.scheduler(time_like(t, x_t))
        # x0 = (x_t − α x1)/σ, substituted into dα x1 + dσ x0.
        return s.d_alpha * x1_pred + s.d_sigma * (x_t - s.alpha * x1_pred) / s.sigma

    def x1_from_velocity(self, x_t, v, t):
        s = self.scheduler(time_like(t, x_t))
        return (v - s.d_sigma / s.sigma * x_t) / (s.d_alpha - s.d_sigma * s.alpha / s.sigma)

    def __repr__(self) -> str:
        return f"AffinePath({self.manifold!r}, {self.scheduler!r})"
