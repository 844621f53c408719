"""Euclidean space R^d: the flat manifold whose maps are vector addition and subtraction."""

from __future__ import annotations

import torch

from sciflow.geometry._numerics import check_last_dim
from sciflow.manifolds.base import Manifold


class Euclidean(Manifold):
    """R^d with the standard metric; its prior is the standard normal N(0, I).

    Points and tangent vectors are both (..., d).
    """

    constant_geodesic_velocity = True

    def __init__(self, dim: int):
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected a positive int, got {dim!r}")
        self.dim = self.point_dim = self.tangent_dim = dim

    def expmap(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return x + v

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y - x

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def proju(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return v

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (y - x).norm(dim=-1)

    def random(self, *shape, generator=None, dtype=None, device=None) -> torch.Tensor:
        return torch.randn(*shape, self.dim, generator=generator, dtype=dtype, device=device)

    def check_point(self, x: torch.Tensor, name: str = "x", atol: float = 1e-4) -> None:
        check_last_dim(x, self.dim, name, f"points of R^{self.dim}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name}: points of R^{self.dim} must be finite; found NaN or inf")

    def __repr__(self) -> str:
        return f"Euclidean(dim={self.dim})"
