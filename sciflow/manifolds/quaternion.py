"""SO(3) as unit quaternions S³/±1, with body-frame angular velocities as tangent vectors."""

from __future__ import annotations

import torch

from sciflow.geometry import quaternion
from sciflow.geometry._numerics import check_last_dim, cos_sinc, cross
from sciflow.manifolds.base import Manifold

# Below this θ² the closed-form dexp⁻¹ coefficient cancels; its Taylor series is used instead.
_DEXPINV_SMALL_SQ = 1e-3


class UnitQuaternion(Manifold):
    """The rotation group SO(3), points stored as unit quaternions (..., 4) WXYZ with q ≡ −q.

    A tangent vector at ``q`` is the body-frame angular velocity ω (..., 3): the curve
    ``q ⊗ exp(tω)`` leaves ``q`` with velocity ω. With this representation the bi-invariant metric
    is the Euclidean one on R³ and ``dist`` is the rotation angle in [0, π]; the prior is uniform
    (Haar); ``embed`` is the flattened rotation matrix (..., 9), invariant to q ≡ −q.
    """

    point_dim = 4
    tangent_dim = 3
    dim = 3
    constant_geodesic_velocity = True  # the body velocity of q ⊗ exp(tω) is ω at every t

    def expmap(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``x ⊗ exp(v)``: x (..., 4), v (..., 3) -> (..., 4)."""
        return quaternion.multiply(x, quaternion.exp(v))

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log(x* ⊗ y)`` (..., 3) along the shorter arc (norm in [0, π])."""
        return quaternion.log(quaternion.relative(x, y))

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        return quaternion.normalize(x)

    def proju(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return v

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return quaternion.angle(x, y)

    def random(self, *shape, generator=None, dtype=None, device=None) -> torch.Tensor:
        return quaternion.random_uniform(*shape, generator=generator, dtype=dtype, device=device)

    def check_point(self, x: torch.Tensor, name: str = "x", atol: float = 1e-4) -> None:
        quaternion.check_unit(x, name=name, atol=atol)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened rotation matrix (..., 9) of x (..., 4)."""
        return quaternion.to_matrix(x).flatten(start_dim=-2)

    def dexpinv(self, x: torch.Tensor, u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``du/ds`` (..., 3) for ``y(s) = x ⊗ exp(u(s))`` whose body velocity is ``w`` (..., 3).

        The body velocity of ``y`` is ``J(u)·u'`` with the right Jacobian J of SO(3); its inverse
        is ``w + ½ u×w + c(θ)·u×(u×w)`` with ``θ = |u|`` and
        ``c(θ) = (1 − (θ/2)·cot(θ/2))/θ² = 1/12 + θ²/720 + θ⁴/30240 + …`` (series below
        θ² = 1e-3). Exact for |u| < 2π; the truncation ``w + ½ u×w + u×(u×w)/12`` is
        accurate to O(|u|⁴·|w|). ``x`` is unused (the group is parallelisable).
        """
        check_last_dim(u, 3, "u", "rotation vectors")
        check_last_dim(w, 3, "w", "angular velocities")
        theta_sq = (u * u).sum(dim=-1, keepdim=True)
        small = theta_sq < _DEXPINV_SMALL_SQ
        safe_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
        cos_half, sinc_half = cos_sinc(safe_sq / 4.0)
        closed = (1.0 - cos_half / sinc_half) / safe_sq
        series = 1.0 / 12.0 + theta_sq / 720.0 + theta_sq * theta_sq / 30240.0
        c = torch.where(small, series, closed)
        uxw = cross(u, w)
        return w + 0.5 * uxw + c * cross(u, uxw)
