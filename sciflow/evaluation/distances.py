"""Distances between two samples of points on a manifold (or a product of named parts).

``wasserstein`` is exact: with equal sample sizes the optimal plan is a permutation, found by the
Hungarian algorithm on the geodesic cost, so W_p is computed without entropic bias. ``mmd`` and
``energy_distance`` compare samples through the manifold's Euclidean embedding.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from scipy.optimize import linear_sum_assignment

from sciflow.couplings import pairwise_sq_cost
from sciflow.manifolds.base import Manifold

Points = torch.Tensor | Mapping[str, torch.Tensor]


def _as_parts(x: Points, y: Points, manifold) -> tuple[dict, dict, dict]:
    if isinstance(manifold, Manifold):
        if isinstance(x, Mapping) or isinstance(y, Mapping):
            raise TypeError("x, y: a single manifold takes tensors, not dicts of parts")
        return {"x": x}, {"x": y}, {"x": manifold}
    if not (isinstance(x, Mapping) and isinstance(y, Mapping)):
        raise TypeError("x, y: a dict of manifolds takes dicts of named tensors")
    parts = getattr(manifold, "parts", manifold)
    return dict(x), dict(y), dict(parts)


def wasserstein(x: Points, y: Points, manifold, p: int = 2) -> float:
    """Exact W_p between two equally sized empirical samples under the geodesic distance.

    x, y: (n, ..., point_dim) tensors on ``manifold``, or dicts of such tensors with ``manifold``
    a dict/Product of parts (cost = sum over parts of squared distances, i.e. the product metric).
    """
    xs, ys, parts = _as_parts(x, y, manifold)
    cost_sq = pairwise_sq_cost(xs, ys, parts).double()
    if cost_sq.shape[0] != cost_sq.shape[1]:
        raise ValueError(
            f"x, y: wasserstein needs equal sample sizes, got {cost_sq.shape[0]} and "
            f"{cost_sq.shape[1]}; subsample the larger one"
        )
    cost = cost_sq.clamp_min(0).sqrt().pow(p)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return float(cost[rows, cols].mean().pow(1.0 / p))


def _embedded(x: Points, y: Points, manifold) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys, parts = _as_parts(x, y, manifold)
    ex = torch.cat([parts[k].embed(xs[k]).flatten(1) for k in parts], dim=1).double()
    ey = torch.cat([parts[k].embed(ys[k]).flatten(1) for k in parts], dim=1).double()
    return ex, ey


def mmd(x: Points, y: Points, manifold, bandwidths: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0)):
    """Unbiased squared MMD with a sum of Gaussian kernels on the manifold's embedding."""
    ex, ey = _embedded(x, y, manifold)

    def kernel(a, b):
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)

    n, m = ex.shape[0], ey.shape[0]
    kxx, kyy, kxy = kernel(ex, ex), kernel(ey, ey), kernel(ex, ey)
    term_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    term_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(term_x + term_y - 2 * kxy.mean())


def energy_distance(x: Points, y: Points, manifold) -> float:
    """Energy distance 2E|X−Y| − E|X−X'| − E|Y−Y'| on the manifold's embedding."""
    ex, ey = _embedded(x, y, manifold)
    return float(
        2 * torch.cdist(ex, ey).mean() - torch.cdist(ex, ex).mean() - torch.cdist(ey, ey).mean()
    )


def categorical_tv(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """Total-variation distance between the class frequencies of two samples of class indices."""
    px = torch.bincount(x.flatten().long(), minlength=num_classes).double() / x.numel()
    py = torch.bincount(y.flatten().long(), minlength=num_classes).double() / y.numel()
    return float(0.5 * (px - py).abs().sum())
