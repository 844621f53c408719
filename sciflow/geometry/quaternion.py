"""Unit quaternions as rotations: pure tensor functions, WXYZ order, with q ≡ −q.

All quaternion tensors have shape ``(..., 4)`` = ``(w, x, y, z)``; rotation vectors and 3-vectors
have shape ``(..., 3)``; leading dimensions broadcast. Angles come from ``atan2`` (never a clamped
``acos``), small angles use Taylor branches, and the unused branch of every ``torch.where`` is fed
a harmless value, so values and gradients are finite at the identity and at rotation angle π
(see engine-math M1).
"""

from __future__ import annotations

import torch

from sciflow.geometry._numerics import (
    atan2_ratio,
    check_last_dim,
    check_matrix,
    cos_sinc,
    cross,
    safe_sqrt,
    sq_norm,
)

_QUAT = "quaternions WXYZ"
_VEC = "3-vectors"


def _check_quat(q: object, name: str) -> None:
    check_last_dim(q, 4, name, _QUAT)


def multiply(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``p ⊗ q``: p, q (..., 4) broadcastable -> (..., 4)."""
    _check_quat(p, "p")
    _check_quat(q, "q")
    pw, pv = p[..., :1], p[..., 1:]
    qw, qv = q[..., :1], q[..., 1:]
    w = pw * qw - (pv * qv).sum(dim=-1, keepdim=True)
    v = pw * qv + qw * pv + cross(pv, qv)
    return torch.cat([w, v], dim=-1)


def conjugate(q: torch.Tensor) -> torch.Tensor:
    """``q* = (w, −x, −y, −z)``, the inverse of a unit quaternion: (..., 4) -> (..., 4)."""
    _check_quat(q, "q")
    return torch.cat([q[..., :1], -q[..., 1:]], dim=-1)


def normalize(q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale ``q`` (..., 4) to unit norm (norms below ``eps`` are treated as ``eps``)."""
    _check_quat(q, "q")
    return q / q.norm(dim=-1, keepdim=True).clamp_min(eps)


def canonical(q: torch.Tensor) -> torch.Tensor:
    """The representative of ``±q`` (..., 4) with ``w >= 0`` (``q`` itself where ``w == 0``)."""
    _check_quat(q, "q")
    return torch.where(q[..., :1] < 0, -q, q)


def to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrix of ``q`` (..., 4) -> (..., 3, 3); ``q`` and ``−q`` give the same matrix.

    Uses ``2 / |q|²`` as the scale, so a non-unit ``q`` gives the rotation of ``q / |q|``.
    """
    _check_quat(q, "q")
    w, x, y, z = q.unbind(dim=-1)
    s = 2.0 / (q * q).sum(dim=-1)
    rows = (
        (1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)),
        (s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)),
        (s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)),
    )
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def from_matrix(R: torch.Tensor) -> torch.Tensor:
    """Unit quaternion (..., 4) with ``w >= 0`` of rotation matrices ``R`` (..., 3, 3).

    Shepperd's method: of the four candidate rows ``4·q_i·q`` (one per component ``q_i``), keep
    the one with the largest pivot ``4·q_i²``, so no division by a small number occurs at any
    angle, including θ = π.
    """
    check_matrix(R, "R")
    r = R.unbind(dim=-2)
    (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = (row.unbind(dim=-1) for row in r)
    trace = r00 + r11 + r22
    candidates = torch.stack(
        [
            torch.stack([1 + trace, r21 - r12, r02 - r20, r10 - r01], dim=-1),
            torch.stack([r21 - r12, 1 + 2 * r00 - trace, r01 + r10, r02 + r20], dim=-1),
            torch.stack([r02 - r20, r01 + r10, 1 + 2 * r11 - trace, r12 + r21], dim=-1),
            torch.stack([r10 - r01, r02 + r20, r12 + r21, 1 + 2 * r22 - trace], dim=-1),
        ],
        dim=-2,
    )  # (..., 4, 4): row i is 4·q_i·q
    pivots = candidates.diagonal(dim1=-2, dim2=-1)
    best = pivots.argmax(dim=-1, keepdim=True)
    index = best.unsqueeze(-1).expand(*best.shape[:-1], 1, 4)
    q = candidates.gather(-2, index).squeeze(-2)
    return canonical(normalize(q))


def exp(r: torch.Tensor) -> torch.Tensor:
    """Unit quaternion of a rotation vector ``r`` (..., 3) (axis · angle) -> (..., 4).

    ``exp(r) = (cos(|r|/2), ½·sinc(|r|/2)·r)`` with a Taylor branch at small ``|r|``.
    """
    check_last_dim(r, 3, "r", "rotation vectors")
    cos_half, sinc_half = cos_sinc(sq_norm(r) / 4.0)
    return torch.cat([cos_half, 0.5 * sinc_half * r], dim=-1)


def log(q: torch.Tensor) -> torch.Tensor:
    """Rotation vector (..., 3) of a unit quaternion ``q`` (..., 4), angle in [0, π].

    After the sign fix ``w >= 0``: ``θ = 2·atan2(|v|, w)`` and ``r = θ·v/|v| = 2·inv_sinc(θ/2)·v``
    (exact for unit ``q``), with a series branch for small ``|v|``. At θ = π the sign of ``r`` is
    arbitrary (both give the same rotation); the result is deterministic and does not raise.
    """
    q = canonical(q)
    v = q[..., 1:]
    return 2.0 * atan2_ratio(sq_norm(v), q[..., :1]) * v


def rotate(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply the rotation of unit ``q`` (..., 4) to vectors ``x`` (..., 3) -> (..., 3)."""
    _check_quat(q, "q")
    check_last_dim(x, 3, "x", _VEC)
    w, v = q[..., :1], q[..., 1:]
    vx = cross(v, x)
    return x + 2.0 * (w * vx + cross(v, vx))


def relative(q0: torch.Tensor, q1: torch.Tensor) -> torch.Tensor:
    """``q0* ⊗ q1`` (..., 4): the rotation that takes ``q0`` to ``q1`` in the body frame of q0."""
    _check_quat(q0, "q0")
    _check_quat(q1, "q1")
    return multiply(conjugate(q0), q1)


def rotation_angle(q: torch.Tensor) -> torch.Tensor:
    """Rotation angle in [0, π] of unit quaternions ``q`` (..., 4) -> (...).

    ``2·atan2(|v|, |w|)``: invariant to q ≡ −q, precise for tiny angles, and with finite
    gradients at the identity (where it is 0) and at π.
    """
    _check_quat(q, "q")
    v_norm = safe_sqrt(sq_norm(q[..., 1:]))
    return 2.0 * torch.atan2(v_norm, q[..., :1].abs()).squeeze(-1)


def angle(q0: torch.Tensor, q1: torch.Tensor) -> torch.Tensor:
    """Geodesic distance on SO(3) between unit ``q0`` and ``q1`` (..., 4): an angle in [0, π]."""
    return rotation_angle(relative(q0, q1))


def _as_time(t: torch.Tensor | float, like: torch.Tensor, ndim: int) -> torch.Tensor:
    """``t`` as a tensor that broadcasts against (..., 3) rotation vectors of ``ndim`` dims."""
    if isinstance(t, bool) or not isinstance(t, (torch.Tensor, int, float)):
        raise TypeError(f"t: expected a float or a torch.Tensor of times, got {type(t).__name__}")
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.ndim == ndim and t.shape[-1] == 1:
        return t
    return t.unsqueeze(-1)


def slerp(q0: torch.Tensor, q1: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Geodesic interpolation ``q0 ⊗ exp(t·log(q0* ⊗ q1))`` between unit quaternions (..., 4).

    The shorter of the two arcs (``q1`` or ``−q1``) is taken: the w component of ``q0* ⊗ q1`` is
    ``⟨q0, q1⟩``, and ``log`` flips its sign to ``w >= 0``, so ``q`` and ``−q`` give the same
    rotations. ``t`` is a float or a tensor of shape (...) or (..., 1) broadcastable to the batch;
    ``t = 0`` gives ``q0`` and ``t = 1`` gives ``±q1``. Its body-frame angular velocity is the
    constant ``log(q0* ⊗ q1)``.
    """
    r = log(relative(q0, q1))
    return multiply(q0, exp(_as_time(t, r, r.ndim) * r))


def random_uniform(
    *shape: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Haar-uniform rotations as unit quaternions (*shape, 4) with ``w >= 0``."""
    g = torch.randn(*shape, 4, generator=generator, dtype=dtype, device=device)
    return canonical(normalize(g))


def check_unit(q: torch.Tensor, name: str = "q", atol: float = 1e-5) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``q`` (..., 4) has unit norms within ``atol``."""
    _check_quat(q, name)
    norms = q.detach().norm(dim=-1)
    deviation = (norms - 1.0).abs()
    bad = ~(deviation <= atol)  # NaN counts as bad
    if bad.any():
        worst = norms[bad][deviation[bad].nan_to_num(float("inf")).argmax()].item()
        raise ValueError(
            f"{name}: expected unit quaternions (|‖q‖ − 1| ≤ {atol:g}), got shape "
            f"{tuple(q.shape)} with {int(bad.sum())} non-unit entries; worst norm {worst:.6g}"
        )
