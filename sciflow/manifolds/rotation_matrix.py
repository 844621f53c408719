"""SO(3) as 3×3 rotation matrices, with body-frame angular velocities as tangent vectors.

The same group as ``UnitQuaternion``, stored the way FrameFlow and FoldFlow store frames, and with
their matrix logarithm (angle from the trace, axis from the antisymmetric part), so the geodesic
``R_t = R_0 · Exp(t · Log(R_0ᵀ R_1))`` can be compared with the quaternion exp-SLERP with all else
equal.
"""

from __future__ import annotations

import math

import torch

from sciflow.geometry import so3
from sciflow.geometry._numerics import check_last_dim, safe_sqrt, sq_norm
from sciflow.manifolds.base import Manifold
from sciflow.manifolds.quaternion import UnitQuaternion

_POINTS = "rotation matrices flattened row-major"

# Below this sin²θ (with cos θ > 0) the factor θ/sin θ comes from its series in sin²θ; the first
# dropped term, 35·sin⁸θ/1152, is < 4e-18 there.
_SMALL_SIN_SQ = 1e-4

# The dexp⁻¹ of SO(3) in the body frame does not depend on how points are stored.
_QUATERNIONS = UnitQuaternion()


def _as_matrix(x: torch.Tensor) -> torch.Tensor:
    """(..., 9) -> (..., 3, 3), row-major."""
    return x.unflatten(-1, (3, 3))


def _near_pi_gap(dtype: torch.dtype) -> float:
    """``1 + cos θ`` below which the axis is read from the symmetric part: √eps of ``dtype``.

    There the antisymmetric part (size sin θ ≈ √(2·(1 + cos θ))) has lost about half its digits, and
    its error, ~eps/sin²θ, has grown to the √eps floor that the arccos leaves on θ at π itself.
    """
    return math.sqrt(torch.finfo(dtype).eps)


def _matrix_log(R: torch.Tensor) -> torch.Tensor:
    """Rotation vector (..., 3), angle in [0, π], of rotation matrices ``R`` (..., 3, 3).

    The matrix route of FrameFlow and FoldFlow: ``θ = arccos((tr R − 1)/2)`` and
    ``Log R = θ/(2 sin θ)·(R − Rᵀ)``, i.e. ``ω = (θ/sin θ)·vee(R)``, with two guards.

    - Small θ (sin²θ < 1e-4 and cos θ > 0): ``θ/sin θ`` is the series ``1 + s²/6 + 3s⁴/40 +
      5s⁶/112`` in ``s² = |vee(R)|² = sin²θ``, with no arccos, so values and gradients are exact at
      the identity.
    - Near π (``1 + cos θ < √eps``): the antisymmetric part, of size sin θ, is swamped by rounding,
      so the axis ``n`` is read from the symmetric part ``(R + Rᵀ)/2 − cos θ·I = (1 − cos θ)·n nᵀ``
      (its column with the largest diagonal entry, normalised) and signed to agree with
      ``vee(R)``; the angle is still the arccos. The switch sits where the error of
      ``θ/sin θ`` (~eps/(π − θ)²) reaches the √eps that the arccos leaves on θ at π itself.
      Where the rounded ``cos θ`` is −1 (θ within ~√eps of π) θ is the constant π, so its gradient
      is 0 there instead of the infinite slope of arccos at −1.
    """
    c = 0.5 * (R.diagonal(dim1=-2, dim2=-1).sum(dim=-1, keepdim=True) - 1.0)
    c = c.clamp(-1.0, 1.0)
    s = so3.vee(R)  # sin θ · n
    s_sq = sq_norm(s)
    small = (c > 0) & (s_sq < _SMALL_SIN_SQ)
    near_pi = (1.0 + c) < _near_pi_gap(R.dtype)
    one = torch.ones_like(c)

    # Unused branches are fed harmless values so that their gradients stay finite.
    series = 1.0 + s_sq * (1.0 / 6.0 + s_sq * (3.0 / 40.0 + s_sq * (5.0 / 112.0)))
    at_pi = c <= -1.0  # arccos has infinite slope there: θ = π is set as a constant instead
    theta = torch.acos(torch.where(small | at_pi, torch.zeros_like(c), c))
    theta = torch.where(at_pi, torch.full_like(c, math.pi), theta)
    sin_theta = torch.where(small | near_pi, one, torch.sin(theta))
    regular = torch.where(small | near_pi, one, theta / sin_theta)
    generic = torch.where(small, series, regular) * s

    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    sym = 0.5 * (R + R.transpose(-1, -2)) - c[..., None] * eye  # (1 − cos θ)·n nᵀ
    pivot = sym.diagonal(dim1=-2, dim2=-1).argmax(dim=-1, keepdim=True)  # (..., 1)
    column = sym.gather(-1, pivot[..., None].expand(*sym.shape[:-1], 1)).squeeze(-1)
    column_sq = torch.where(near_pi, sq_norm(column), one)
    axis = column / safe_sqrt(column_sq).clamp_min(torch.finfo(R.dtype).tiny)
    sign = torch.where((axis * s).sum(dim=-1, keepdim=True) < 0, -one, one)
    flipped = sign * theta * axis

    return torch.where(near_pi, flipped, generic)


class RotationMatrix(Manifold):
    """The rotation group SO(3), points stored as rotation matrices flattened row-major (..., 9).

    A tangent vector at ``R`` is the body-frame angular velocity ω (..., 3): the curve
    ``R · Exp(tω)`` leaves ``R`` with velocity ω, as for ``UnitQuaternion`` (the two agree on
    ``logmap``, ``expmap`` and ``dist`` up to rounding). The bi-invariant metric is the Euclidean
    one on R³ and ``dist`` is the rotation angle in [0, π]; the prior is uniform (Haar); ``embed``
    is the point itself.

    ``logmap`` is the matrix logarithm of ``Rᵀ S`` from the trace and the antisymmetric part (see
    ``_matrix_log``), not the quaternion route of ``so3.log``. It is as precise as the quaternion
    route for small and moderate angles, but not near θ = π, where the trace determines θ badly
    (the instability ReQFlow attributes to the matrix path). Measured maximum error
    ``|logmap(R, S) − ω|`` for ``S = R·Exp(ω)``, ``|ω| = π − δ``, over 4000 random R and axes,
    with R and S rounded to the dtype (at δ = 0 either sign of ω counts as exact):

    ==========  =======  =======  =======  =======  =======  =======  =======
    δ           1e-1     4e-2     1e-2     2.5e-4   1e-4     1e-6     0
    ==========  =======  =======  =======  =======  =======  =======  =======
    float64     2e-13    9e-13    1e-11    2e-8     5e-12    5e-10    3e-8
    float32     4e-5     2e-4     1e-5     3e-4     4e-4     5e-4     5e-4
    ==========  =======  =======  =======  =======  =======  =======  =======

    The worst over δ ∈ [0, 0.1] was 5e-8 (float64, at δ ≈ 1.7e-4, just before the switch to the
    symmetric-part axis) and 6e-4 (float32); ``UnitQuaternion.logmap`` on the same rotations stays
    below 2e-15 and 7e-7. For angles below π − 0.1 the error is < 2e-13 (float64) and < 5e-5
    (float32), and for θ ≤ 1 it matches the quaternion route (~1e-15, ~2e-7). Values and
    gradients are finite at every angle, θ = 0 and θ = π included.
    """

    point_dim = 9
    tangent_dim = 3
    dim = 3
    constant_geodesic_velocity = True  # the body velocity of R·Exp(tω) is ω at every t

    def expmap(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``x · Exp(v)`` (Rodrigues): x (..., 9), v (..., 3) -> (..., 9)."""
        check_last_dim(x, 9, "x", _POINTS)
        return (_as_matrix(x) @ so3.exp(v)).flatten(start_dim=-2)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``vee(Log(xᵀ y))`` (..., 3) by the matrix logarithm (norm in [0, π])."""
        check_last_dim(x, 9, "x", _POINTS)
        check_last_dim(y, 9, "y", _POINTS)
        return _matrix_log(_as_matrix(x).transpose(-1, -2) @ _as_matrix(y))

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """The nearest rotation in the Frobenius norm: ``U·diag(1, 1, det(U Vᵀ))·Vᵀ`` by SVD.

        The SVD's own gradient is undefined at a rotation (three equal singular values), which
        is exactly where a network's predicted rotations sit, so the value comes from the SVD
        and the gradient from the derivative of the projection at that rotation R: the tangent
        part ``R·skew(Rᵀ dX)`` of the input's change dX. The ODE solvers call this after every
        step, so it costs one batched 3×3 SVD per step.
        """
        check_last_dim(x, 9, "x", _POINTS)
        matrix = _as_matrix(x)
        with torch.no_grad():
            u, _, vh = torch.linalg.svd(matrix)
            det = torch.linalg.det(u @ vh)
            sign = torch.where(det < 0, -torch.ones_like(det), torch.ones_like(det))
            u = torch.cat([u[..., :2], u[..., 2:] * sign[..., None, None]], dim=-1)
            nearest = u @ vh
        if not matrix.requires_grad:
            return nearest.flatten(start_dim=-2)
        relative = nearest.transpose(-1, -2) @ matrix
        tangent = nearest @ (relative - relative.transpose(-1, -2)) / 2
        return (nearest + tangent - tangent.detach()).flatten(start_dim=-2)

    def proju(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return v

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The rotation angle ``|logmap(x, y)|`` in [0, π] -> (...)."""
        return safe_sqrt(sq_norm(self.logmap(x, y))).squeeze(-1).clamp_max(math.pi)

    def random(self, *shape, generator=None, dtype=None, device=None) -> torch.Tensor:
        matrices = so3.random_uniform(*shape, generator=generator, dtype=dtype, device=device)
        return matrices.flatten(start_dim=-2)

    def check_point(self, x: torch.Tensor, name: str = "x", atol: float = 1e-4) -> None:
        """Raise ``ValueError`` naming ``name`` unless ``x`` (..., 9) holds rotation matrices:
        ``max |RᵀR − I| ≤ atol`` and ``|det R − 1| ≤ atol`` for every matrix."""
        check_last_dim(x, 9, name, _POINTS)
        R = _as_matrix(x.detach())
        eye = torch.eye(3, dtype=R.dtype, device=R.device)
        orthogonality = (R.transpose(-1, -2) @ R - eye).abs().amax(dim=(-2, -1))
        determinant = (torch.linalg.det(R) - 1.0).abs()
        bad = ~((orthogonality <= atol) & (determinant <= atol))  # NaN counts as bad
        if bad.any():
            worst_orthogonality = orthogonality.nan_to_num(float("inf")).max().item()
            worst_determinant = determinant.nan_to_num(float("inf")).max().item()
            raise ValueError(
                f"{name}: expected rotation matrices flattened to shape (..., 9) "
                f"(max |RᵀR − I| ≤ {atol:g}, |det R − 1| ≤ {atol:g}), got shape "
                f"{tuple(x.shape)} with {int(bad.sum())} non-rotation entries; worst "
                f"orthogonality error {worst_orthogonality:.6g}, worst determinant error "
                f"{worst_determinant:.6g}"
            )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The 9 matrix entries (..., 9): the point itself."""
        return x

    def dexpinv(self, x: torch.Tensor, u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``du/ds`` (..., 3) for ``y(s) = x · Exp(u(s))`` whose body velocity is ``w`` (..., 3).

        The inverse right Jacobian of SO(3), the same in every representation of the group:
        delegates to ``UnitQuaternion.dexpinv``. ``x`` is unused.
        """
        return _QUATERNIONS.dexpinv(x, u, w)
