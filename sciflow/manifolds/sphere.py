"""The unit sphere S^dim ⊂ R^{dim+1} with ambient tangent vectors."""

from __future__ import annotations

import torch

from sciflow.geometry._numerics import atan2_ratio, check_last_dim, cos_sinc, safe_sqrt, sq_norm
from sciflow.manifolds.base import Manifold


class Sphere(Manifold):
    """S^dim: points are unit vectors (..., dim+1); tangent vectors at x are ambient vectors
    (..., dim+1) orthogonal to x; the prior is uniform; ``dist`` is the great-circle angle.
    """

    def __init__(self, dim: int):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected a positive int, got {dim!r}")
        self.dim = dim
        self.point_dim = self.tangent_dim = dim + 1

    def _check(self, x: torch.Tensor, name: str) -> None:
        check_last_dim(x, self.point_dim, name, f"vectors of R^{self.point_dim}")

    def _log_parts(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``p = proj_x(y − x)`` (= y − ⟨x,y⟩x), ``|p|²`` and ``c = ⟨x, y⟩``.

        Forming ``y − x`` first keeps ``p`` precise when ``y`` is close to ``x``.
        """
        d = y - x
        p = d - (d * x).sum(dim=-1, keepdim=True) * x
        c = (x * y).sum(dim=-1, keepdim=True)
        return p, sq_norm(p), c

    def expmap(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``cos|v|·x + sinc|v|·v``: x, v (..., dim+1) -> (..., dim+1)."""
        self._check(x, "x")
        self._check(v, "v")
        cos_t, sinc_t = cos_sinc(sq_norm(v))
        return cos_t * x + sinc_t * v

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``θ·p/|p|`` with ``p = y − ⟨x,y⟩x`` and ``θ = atan2(|p|, ⟨x,y⟩)``; 0 at ``y = x``.

        Undefined at ``y = −x`` (returns 0 there rather than raising).
        """
        self._check(x, "x")
        self._check(y, "y")
        p, p_sq, c = self._log_parts(x, y)
        return atan2_ratio(p_sq, c) * p

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x, "x")
        return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def proju(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        self._check(x, "x")
        self._check(v, "v")
        return v - (x * v).sum(dim=-1, keepdim=True) * x

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._check(x, "x")
        self._check(y, "y")
        _, p_sq, c = self._log_parts(x, y)
        return torch.atan2(safe_sqrt(p_sq), c).squeeze(-1)

    def random(self, *shape, generator=None, dtype=None, device=None) -> torch.Tensor:
        g = torch.randn(*shape, self.point_dim, generator=generator, dtype=dtype, device=device)
        return g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def check_point(self, x: torch.Tensor, name: str = "x", atol: float = 1e-4) -> None:
        self._check(x, name)
        norms = x.detach().norm(dim=-1)
        bad = ~((norms - 1).abs() <= atol)
        if bad.any():
            worst = norms[bad][(norms[bad] - 1).abs().nan_to_num(float("inf")).argmax()].item()
            raise ValueError(
                f"{name}: expected unit vectors of S^{self.dim} (|‖x‖ − 1| ≤ {atol:g}), got shape "
                f"{tuple(x.shape)} with {int(bad.sum())} off the sphere; worst norm {worst:.6g}"
            )

    def __repr__(self) -> str:
        return f"Sphere(dim={self.dim})"
