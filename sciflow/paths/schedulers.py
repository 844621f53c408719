"""Noise schedules (α_t, σ_t) for probability paths, with t=0 the prior and t=1 the data.

An affine path mixes ``x_t = α_t·x1 + σ_t·x0``. A geodesic path on a manifold moves a fraction
``κ_t = α_t/(α_t + σ_t)`` of the way from x0 to x1, which is the affine path rescaled to a convex
combination (κ = α for schedules with α + σ = 1).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass
class SchedulerOutput:
    """Schedule values at times ``t``; every field has the shape of ``t``."""

    alpha: torch.Tensor
    sigma: torch.Tensor
    d_alpha: torch.Tensor
    d_sigma: torch.Tensor


class Scheduler(ABC):
    """A schedule with α_0 = 0 and σ_1 = 0 (up to the schedule's own tolerance)."""

    @abstractmethod
    def __call__(self, t: torch.Tensor) -> SchedulerOutput:
        """α_t, σ_t and their time derivatives at ``t`` (any shape)."""

    def kappa(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The geodesic fraction κ_t = α_t/(α_t+σ_t) and its derivative dκ/dt, shaped like ``t``."""
        s = self(t)
        total = s.alpha + s.sigma
        kappa = s.alpha / total
        d_kappa = (s.d_alpha * s.sigma - s.alpha * s.d_sigma) / total**2
        return kappa, d_kappa

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearScheduler(Scheduler):
    """Conditional optimal transport: α_t = t, σ_t = 1 − t."""

    def __call__(self, t: torch.Tensor) -> SchedulerOutput:
        return SchedulerOutput(t, 1 - t, torch.ones_like(t), -torch.ones_like(t))

    def kappa(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return t, torch.ones_like(t)


class ExponentialScheduler(Scheduler):
    """κ_t = 1 − e^{−c t} (ReQFlow's rotation schedule at inference): α = κ, σ = 1 − κ.

    The ratio dκ/dt / (1 − κ) equals the constant ``rate`` c, so along a geodesic the model moves
    towards its predicted endpoint at a fixed exponential rate. κ_1 = 1 − e^{−c} < 1.
    """

    def __init__(self, rate: float = 10.0):
        if not rate > 0:
            raise ValueError(f"rate: expected a positive float, got {rate!r}")
        self.rate = float(rate)

    def __call__(self, t: torch.Tensor) -> SchedulerOutput:
        sigma = torch.exp(-self.rate * t)
        return SchedulerOutput(1 - sigma, sigma, self.rate * sigma, -self.rate * sigma)

    def __repr__(self) -> str:
        return f"ExponentialScheduler(rate={self.rate})"


class CosineScheduler(Scheduler):
    """α_t = sin(πt/2), σ_t = cos(πt/2)."""

    def __call__(self, t: torch.Tensor) -> SchedulerOutput:
        angle = 0.5 * math.pi * t
        return SchedulerOutput(
            torch.sin(angle),
            torch.cos(angle),
            0.5 * math.pi * torch.cos(angle),
            -0.5 * math.pi * torch.sin(angle),
        )


class VPScheduler(Scheduler):
    """Variance preserving: α_t = exp(−½T(1−t)), σ_t = √(1−α_t²), with
    T(s) = β_min·s + ½(β_max − β_min)·s² (the score-SDE VP process in flow time)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not 0 <= beta_min < beta_max:
            raise ValueError(
                f"beta_min, beta_max: expected 0 <= beta_min < beta_max, got {beta_min}, {beta_max}"
            )
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def __call__(self, t: torch.Tensor) -> SchedulerOutput:
        s = 1 - t
        big_t = self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2
        d_big_t = -(self.beta_min + (self.beta_max - self.beta_min) * s)  # dT/dt
        alpha = torch.exp(-0.5 * big_t)
        d_alpha = -0.5 * d_big_t * alpha
        sigma = torch.sqrt((1 - alpha**2).clamp_min(0))
        d_sigma = -alpha * d_alpha / sigma.clamp_min(torch.finfo(t.dtype).tiny ** 0.5)
        return SchedulerOutput(alpha, sigma, d_alpha, d_sigma)

    def __repr__(self) -> str:
        return f"VPScheduler(beta_min={self.beta_min}, beta_max={self.beta_max})"
