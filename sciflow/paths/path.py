"""The probability-path interface: where a sample is at time t, and how fast it moves there."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from sciflow.manifolds.base import Manifold


@dataclass
class PathSample:
    """One draw from a conditional path.

    x0, x1, x_t: points (..., point_dim); t: times broadcastable to (...,);
    dx_t: the target velocity at x_t in the manifold's tangent representation (..., tangent_dim).
    """

    x0: torch.Tensor
    x1: torch.Tensor
    t: torch.Tensor
    x_t: torch.Tensor
    dx_t: torch.Tensor


class ProbPath(ABC):
    """A conditional path from a prior point x0 (t=0) to a data point x1 (t=1) on ``manifold``."""

    manifold: Manifold

    @abstractmethod
    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> PathSample:
        """Point and target velocity at times ``t`` (shape broadcastable to x0.shape[:-1])."""

    @abstractmethod
    def velocity_from_x1(
        self, x_t: torch.Tensor, x1_pred: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """The velocity at x_t that the path would have if its endpoint were ``x1_pred``."""

    @abstractmethod
    def x1_from_velocity(self, x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The endpoint implied by the velocity ``v`` at x_t (inverse of velocity_from_x1)."""


def time_like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape times broadcastable to ``x.shape[:-1]`` into (..., 1) so they scale vectors."""
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    try:
        if t.shape != x.shape[:-1]:  # the common case needs no (slow) broadcast check
            torch.broadcast_shapes(t.shape, x.shape[:-1])
    except RuntimeError as err:
        raise ValueError(
            f"t: shape {tuple(t.shape)} does not broadcast to the points' batch shape "
            f"{tuple(x.shape[:-1])}"
        ) from err
    return t.to(x.dtype).unsqueeze(-1)
