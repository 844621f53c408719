"""The flat torus [0, L)^d: wrapping, exp/log maps, uniform sampling, per-set mean removal.

``period`` L is 1.0 for fractional coordinates and 2π for angles. Points and tangent vectors are
(..., d) with the same d; formulas follow engine-math M3.
"""

from __future__ import annotations

import torch

from sciflow.geometry._numerics import check_positive, check_tensor


def _mod(x: torch.Tensor, period: float) -> torch.Tensor:
    """``x mod L`` in [0, L): ``torch.remainder`` can round tiny negatives up to exactly L."""
    r = torch.remainder(x, period)
    return torch.where(r >= period, r - period, r)


def wrap(delta: torch.Tensor, period: float = 1.0) -> torch.Tensor:
    """Wrap displacements ``delta`` (any shape) into [−L/2, L/2): ``δ − L·floor(δ/L + ½)``.

    Rounding in ``δ/L + ½`` can land one ulp outside the half-open range; that is corrected.
    """
    check_tensor(delta, "delta", "displacements")
    check_positive(period, "period")
    half = period / 2
    wrapped = delta - period * torch.floor(delta / period + 0.5)
    wrapped = torch.where(wrapped < -half, wrapped + period, wrapped)
    return torch.where(wrapped >= half, wrapped - period, wrapped)


def logmap(x: torch.Tensor, y: torch.Tensor, period: float = 1.0) -> torch.Tensor:
    """The shortest displacement from ``x`` to ``y`` (..., d): ``wrap(y − x)`` in [−L/2, L/2)."""
    check_tensor(x, "x", "torus points")
    check_tensor(y, "y", "torus points")
    return wrap(y - x, period)


def expmap(x: torch.Tensor, v: torch.Tensor, period: float = 1.0) -> torch.Tensor:
    """Move ``x`` (..., d) by ``v`` (..., d) and reduce mod L into [0, L)."""
    check_tensor(x, "x", "torus points")
    check_tensor(v, "v", "tangent vectors")
    check_positive(period, "period")
    return _mod(x + v, period)


def uniform(
    *shape: int,
    period: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Uniform points on [0, L)^… of the given shape (include d in ``shape``)."""
    check_positive(period, "period")
    u = torch.rand(*shape, generator=generator, dtype=dtype, device=device)
    return _mod(u * period, period)


def remove_mean(
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    index: torch.Tensor | None = None,
    num_sets: int | None = None,
) -> torch.Tensor:
    """Subtract from each vector the mean over its set (translation invariance of a structure).

    - padded: ``v`` (B, N, d) with ``mask`` (B, N) bool; the mean is over valid rows and masked-out
      rows are returned unchanged;
    - flat (PyG style): ``v`` (M, d) with ``index`` (M,) long giving each row's set in
      ``[0, num_sets)`` (pass ``num_sets`` to avoid a device sync on ``index.max()``);
    - plain: ``v`` (..., N, d) without ``mask``/``index``: the mean over N.
    """
    check_tensor(v, "v", "vectors")
    if mask is not None and index is not None:
        raise ValueError("remove_mean: pass either mask (padded) or index (flat), not both")
    if index is not None:
        return _remove_mean_index(v, index, num_sets)
    if v.ndim < 2:
        raise ValueError(f"v: expected vectors of shape (..., N, d), got {tuple(v.shape)}")
    if mask is None:
        return v - v.mean(dim=-2, keepdim=True)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask: expected a bool tensor of shape {tuple(v.shape[:-1])}")
    if mask.shape != v.shape[:-1]:
        raise ValueError(
            f"mask: expected shape {tuple(v.shape[:-1])} to match v {tuple(v.shape)}, "
            f"got {tuple(mask.shape)}"
        )
    m = mask.unsqueeze(-1)
    weights = m.to(v.dtype)
    count = weights.sum(dim=-2, keepdim=True).clamp_min(1.0)
    mean = (v * weights).sum(dim=-2, keepdim=True) / count
    return torch.where(m, v - mean, v)


def _remove_mean_index(v: torch.Tensor, index: torch.Tensor, num_sets: int | None) -> torch.Tensor:
    """Flat variant of ``remove_mean``: scatter-mean over ``index`` (M,), then subtract."""
    if not isinstance(index, torch.Tensor) or index.dtype != torch.long:
        raise TypeError(f"index: expected a torch.long tensor of shape ({v.shape[0]},)")
    if v.ndim != 2 or index.shape != v.shape[:1]:
        raise ValueError(
            f"index: expected v of shape (M, d) and index of shape (M,), got v "
            f"{tuple(v.shape)} and index {tuple(index.shape)}"
        )
    if num_sets is None:
        num_sets = int(index.max()) + 1 if index.numel() else 0
    sums = v.new_zeros(num_sets, v.shape[1]).index_add(0, index, v)
    counts = v.new_zeros(num_sets).index_add(0, index, torch.ones_like(index, dtype=v.dtype))
    return v - (sums / counts.clamp_min(1.0).unsqueeze(-1))[index]
