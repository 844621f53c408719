"""The `Manifold` interface every space in sciflow implements.

A manifold stores points as tensors of shape ``(..., point_dim)`` and tangent vectors as tensors of
shape ``(..., tangent_dim)``. The tangent representation is chosen per manifold so that the
Riemannian metric is the plain Euclidean inner product of that representation: a flow-matching loss
is then an ordinary squared error, and ``dist(x, expmap(x, v)) == |v|`` inside the injectivity
radius. Euclidean space and the flat torus use their coordinates; the unit-quaternion model of
SO(3) uses body-frame angular velocities in R^3; the sphere uses ambient vectors orthogonal to x.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Manifold(ABC):
    """A Riemannian manifold with closed-form exponential and logarithm maps.

    Subclasses set ``point_dim`` (last dimension of a point), ``tangent_dim`` (last dimension of a
    tangent vector) and ``dim`` (intrinsic dimension).
    """

    point_dim: int
    tangent_dim: int
    dim: int
    #: True where the tangent representation of a geodesic's velocity is the same at every point
    #: of the geodesic (flat spaces; Lie groups in the body frame), so paths can use closed forms.
    constant_geodesic_velocity: bool = False

    @abstractmethod
    def expmap(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Follow the geodesic from ``x`` (..., point_dim) with initial velocity ``v``
        (..., tangent_dim) for unit time; returns a point (..., point_dim)."""

    @abstractmethod
    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The tangent vector at ``x`` (..., point_dim) whose exponential reaches ``y``
        (..., point_dim) along a shortest geodesic; returns (..., tangent_dim)."""

    @abstractmethod
    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Project an ambient tensor (..., point_dim) onto the manifold."""

    @abstractmethod
    def proju(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Project a vector (..., tangent_dim) onto the tangent space at ``x``."""

    @abstractmethod
    def random(
        self,
        *shape: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw points of shape (*shape, point_dim) from the manifold's reference prior
        (uniform on compact manifolds, standard normal on Euclidean space)."""

    @abstractmethod
    def check_point(self, x: torch.Tensor, name: str = "x", atol: float = 1e-4) -> None:
        """Raise ``ValueError`` naming ``name`` unless ``x`` is a batch of manifold points."""

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Geodesic distance between points (..., point_dim); returns (...)."""
        return self.logmap(x, y).norm(dim=-1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """A continuous Euclidean embedding of points, used by distribution metrics (MMD, plots).

        Defaults to the point coordinates themselves; periodic and quotient spaces override it.
        """
        return x

    def check_tangent(self, x: torch.Tensor, v: torch.Tensor, name: str = "v") -> None:
        """Raise ``ValueError`` if ``v`` does not have the tangent shape that matches ``x``."""
        if v.shape[:-1] != x.shape[:-1] or v.shape[-1] != self.tangent_dim:
            raise ValueError(
                f"{name}: expected tangent vectors of shape {tuple(x.shape[:-1])} + "
                f"({self.tangent_dim},) for {type(self).__name__}, got {tuple(v.shape)}"
            )

    def dexpinv(self, x: torch.Tensor, u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Pull a stage velocity back to the tangent space at ``x`` (Runge–Kutta–Munthe-Kaas).

        For the curve ``y(s) = expmap(x, u(s))`` whose velocity at ``y`` is ``w`` (tangent
        representation at ``y``), returns ``du/ds`` (..., tangent_dim) at ``x``. Exact and the
        identity on flat spaces; Lie groups in a body-frame representation use the dexp⁻¹ series;
        the default projects ``w`` onto the tangent space at ``x``, which is exact to first order.
        """
        return self.proju(x, w)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
