"""Private helpers shared by the geometry modules: cheap input checks and branch-safe ratios.

Every ratio here has a removable singularity at 0 (``sin θ / θ``, ``atan2(s, c) / s``). Both
branches of ``torch.where`` are differentiated, so the branch that is *not* selected is fed a
harmless value (1) instead of the singular one: values and gradients stay finite everywhere.
"""

from __future__ import annotations

import torch

# Below these squared magnitudes the two-term Taylor series are exact to float64 rounding
# (the first dropped term is ~x^6 / 720 < 1e-20 for x^2 < 1e-6).
SMALL_SQ = 1e-6


def check_tensor(x: object, name: str, what: str) -> None:
    """Raise ``TypeError`` unless ``x`` is a floating-point ``torch.Tensor``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of {what}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor of {what}, got {x.dtype}")


def check_last_dim(x: object, size: int, name: str, what: str) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``x`` is a float tensor of shape (..., size)."""
    check_tensor(x, name, what)
    if x.ndim == 0 or x.shape[-1] != size:
        raise ValueError(
            f"{name}: expected {what} of shape (..., {size}), got shape {tuple(x.shape)}"
        )


def check_matrix(R: object, name: str) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``R`` is a float tensor of shape (..., 3, 3)."""
    check_tensor(R, name, "rotation matrices")
    if R.ndim < 2 or R.shape[-2:] != (3, 3):
        raise ValueError(
            f"{name}: expected rotation matrices of shape (..., 3, 3), got {tuple(R.shape)}"
        )


def check_positive(value: object, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite positive real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a positive real number, got {type(value).__name__}")
    if not 0 < value < float("inf"):
        raise ValueError(f"{name}: expected a finite positive number, got {value!r}")


def cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product of 3-vectors (..., 3) with full broadcasting of the leading dimensions."""
    ax, ay, az = a.unbind(dim=-1)
    bx, by, bz = b.unbind(dim=-1)
    return torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], dim=-1)


def sq_norm(v: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean norm over the last dimension, kept: (..., d) -> (..., 1)."""
    return (v * v).sum(dim=-1, keepdim=True)


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` for ``x >= 0`` whose gradient at ``x == 0`` is 0 instead of inf/NaN."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), 0.0)


def cos_sinc(theta_sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos θ, sin θ / θ)`` from ``θ²`` (any shape), exact and differentiable at θ = 0."""
    small = theta_sq < SMALL_SQ
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta_sq), theta_sq))
    cos_taylor = 1.0 - theta_sq / 2.0 + theta_sq * theta_sq / 24.0
    sinc_taylor = 1.0 - theta_sq / 6.0 + theta_sq * theta_sq / 120.0
    return (
        torch.where(small, cos_taylor, torch.cos(theta)),
        torch.where(small, sinc_taylor, torch.sin(theta) / theta),
    )


def atan2_ratio(s_sq: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``atan2(s, c) / s`` from ``s² >= 0`` and ``c`` (same shape), finite everywhere.

    For unit vectors with ``s = sin φ`` and ``c = cos φ`` this is ``φ / sin φ`` (inverse sinc).
    Near ``s = 0`` with ``c > 0`` it uses ``atan(z)/z = 1 - z²/3 + z⁴/5`` with ``z = s / c``, so
    angles of 1e-4 rad keep full float32 precision (no ``acos``). At ``s = 0, c < 0`` (angle π,
    direction undefined) it returns a large finite number, so ``ratio * 0`` stays 0.
    """
    small = (c > 0) & (s_sq < SMALL_SQ * c * c)
    c_small = torch.where(small, c, torch.ones_like(c))
    z_sq = s_sq / (c_small * c_small)
    series = (1.0 - z_sq / 3.0 + z_sq * z_sq / 5.0) / c_small
    tiny = torch.finfo(s_sq.dtype).tiny
    s = torch.sqrt(torch.where(small, torch.ones_like(s_sq), s_sq).clamp_min(tiny))
    return torch.where(small, series, torch.atan2(s, c) / s)
