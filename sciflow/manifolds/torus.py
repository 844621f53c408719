"""The flat torus [0, L)^d with its periodic (wrapped) maps."""

from __future__ import annotations

import math

import torch

from sciflow.geometry import torus
from sciflow.geometry._numerics import check_last_dim, check_positive
from sciflow.manifolds.base import Manifold


class FlatTorus(Manifold):
    """The flat torus [0, L)^dim; L = 1 for fractional coordinates, 2π for angles.

    Points and tangent vectors are (..., dim); the prior is uniform. ``embed`` maps each
    coordinate to ``(cos, sin)(2πx/L)·L/2π``, (..., 2·dim), so distances between embeddings see the
    periodicity and match wrapped distances for nearby points.
    """

    constant_geodesic_velocity = True

    def __init__(self, dim: int, period: float = 1.0):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected a positive int, got {dim!r}")
        check_positive(period, "period")
        self.dim = self.point_dim = self.tangent_dim = dim
        self.period = float(period)

    def _check(self, x: torch.Tensor, name: str) -> None:
        check_last_dim(x, self.dim, name, f"vectors of the {self.dim}-torus")

    def expmap(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        self._check(x, "x")
        self._check(v, "v")
        return torus.expmap(x, v, self.period)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._check(x, "x")
        self._check(y, "y")
        return torus.logmap(x, y, self.period)

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x, "x")
        return torus.expmap(x, torch.zeros_like(x), self.period)

    def proju(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return v

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.logmap(x, y).norm(dim=-1)

    def random(self, *shape, generator=None, dtype=None, device=None) -> torch.Tensor:
        return torus.uniform(
            *shape, self.dim, period=self.period, generator=generator, dtype=dtype, device=device
        )

    def check_point(self, x: torch.Tensor, name: str = "x", atol: float = 1e-4) -> None:
        self._check(x, name)
        inside = (x >= -atol) & (x < self.period + atol)  # False for NaN
        if not inside.all():
            worst = x[~inside][0].item()
            raise ValueError(
                f"{name}: expected points of the torus in [0, {self.period:g}), got shape "
                f"{tuple(x.shape)} with {int((~inside).sum())} coordinates outside, "
                f"e.g. {worst:.6g}"
            )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (..., 2·dim): per coordinate ``(cos, sin)(2πx/L)·L/2π``."""
        self._check(x, "x")
        phase = (2 * math.pi / self.period) * x
        pairs = torch.stack([torch.cos(phase), torch.sin(phase)], dim=-1)
        return pairs.flatten(start_dim=-2) * (self.period / (2 * math.pi))

    def __repr__(self) -> str:
        return f"FlatTorus(dim={self.dim}, period={self.period:g})"
