"""Couplings of prior and data minibatches: which prior point each data point is paired with.

A coupling receives the prior draw ``x0`` and the data ``x1`` (dicts of named parts, each
(B, ..., point_dim) with the batch first) and returns ``x0`` reordered along the batch. Minibatch
optimal transport pairs them so the summed squared geodesic distance is smallest, which
straightens the learned flow; the cost is manifold-aware, so rotations pair by rotation angle and
torus points by wrapped distance.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from sciflow.manifolds.base import Manifold
from sciflow.manifolds.euclidean import Euclidean


def pairwise_sq_cost(
    x0: Mapping[str, torch.Tensor],
    x1: Mapping[str, torch.Tensor],
    manifolds: Mapping[str, Manifold],
) -> torch.Tensor:
    """Squared geodesic cost between every x0[i] and x1[j], summed over parts and elements.

    x0[name]: (B0, ..., point_dim), x1[name]: (B1, ..., point_dim); returns (B0, B1).
    """
    total = None
    for name, manifold in manifolds.items():
        a, b = x0[name], x1[name]
        if a.shape[1:] != b.shape[1:]:
            raise ValueError(
                f"{name}: prior and data points differ in shape beyond the batch: "
                f"{tuple(a.shape)} vs {tuple(b.shape)}"
            )
        if isinstance(manifold, Euclidean):  # Σ over elements of |a−b|² = |flat(a)−flat(b)|²
            flat_a, flat_b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
            # exact differences, not the matmul expansion (which cancels near zero distance)
            mode = "donot_use_mm_for_euclid_dist"
            cost = torch.cdist(flat_a, flat_b, compute_mode=mode).pow(2)
        else:
            d = manifold.dist(a.unsqueeze(1), b.unsqueeze(0))  # (B0, B1, ...)
            cost = d.pow(2).reshape(d.shape[0], d.shape[1], -1).sum(-1)
        total = cost if total is None else total + cost
    if total is None:
        raise ValueError("manifolds: at least one part is needed to compute a coupling cost")
    return total


def _reorder(x0: Mapping[str, torch.Tensor], order: torch.Tensor) -> dict[str, torch.Tensor]:
    return {name: value[order] for name, value in x0.items()}


class Coupling(ABC):
    """Pairs prior points with data points within a minibatch."""

    @abstractmethod
    def __call__(
        self,
        x0: Mapping[str, torch.Tensor],
        x1: Mapping[str, torch.Tensor],
        manifolds: Mapping[str, Manifold],
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Return x0 reordered (B1 rows) so that row i is paired with x1 row i."""


class IndependentCoupling(Coupling):
    """The product coupling: prior draws are already independent of the data, keep them."""

    def __call__(self, x0, x1, manifolds, generator=None):
        return dict(x0)


class ExactOTCoupling(Coupling):
    """Exact minibatch OT: a permutation, no point duplicated or lost.

    With equal uniform weights an optimal plan is a permutation matrix. POT's network simplex
    (``ot.emd``, when installed) finds one about twice as fast as the Hungarian algorithm of
    scipy, which is the fallback and is also used if the plan returned is not a permutation.
    """

    def permutation(self, x0, x1, manifolds) -> torch.Tensor:
        """Indices ``p`` (B,) such that x0[p[i]] is paired with x1[i], minimising Σ cost."""
        cost = pairwise_sq_cost(x0, x1, manifolds)
        if cost.shape[0] != cost.shape[1]:
            raise ValueError(
                f"x0, x1: exact OT needs equal batch sizes, got {cost.shape[0]} and {cost.shape[1]}"
            )
        matrix = cost.detach().cpu().double().numpy()
        order = _network_simplex_permutation(matrix)
        if order is None:
            rows, cols = linear_sum_assignment(matrix)
            order = np.empty_like(rows)
            order[cols] = rows
        return torch.as_tensor(order, device=cost.device)

    def __call__(self, x0, x1, manifolds, generator=None):
        return _reorder(x0, self.permutation(x0, x1, manifolds))


def _network_simplex_permutation(cost: np.ndarray) -> np.ndarray | None:
    """The optimal assignment from POT's exact solver, as ``order[j] = i``; None without POT or
    if its plan is not a permutation matrix."""
    try:
        import ot
    except ImportError:
        return None
    n = cost.shape[0]
    weights = np.full(n, 1.0 / n)
    plan = ot.emd(weights, weights, cost)
    order = plan.argmax(axis=0)
    if not np.allclose(plan[order, np.arange(n)], 1.0 / n) or len(set(order.tolist())) != n:
        return None
    return order


class SinkhornCoupling(Coupling):
    """Entropic OT (Sinkhorn, via POT): each x1[i] draws its partner from row i of the plan.

    ``reg`` is relative to the mean cost, so it means the same at every scale. Draws are with
    replacement, so a prior point can be used twice; prefer ExactOTCoupling for a permutation.
    """

    def __init__(self, reg: float = 0.05, num_iter: int = 1000):
        if not reg > 0:
            raise ValueError(f"reg: expected a positive float, got {reg!r}")
        self.reg, self.num_iter = float(reg), int(num_iter)

    def plan(self, x0, x1, manifolds) -> torch.Tensor:
        """The entropic transport plan (B0, B1) with uniform marginals."""
        try:
            import ot
        except ImportError as err:
            raise ImportError(
                'SinkhornCoupling needs the POT package: pip install "sciflow[ot]"'
            ) from err
        cost = pairwise_sq_cost(x0, x1, manifolds).detach().cpu().double().numpy()
        a = np.full(cost.shape[0], 1.0 / cost.shape[0])
        b = np.full(cost.shape[1], 1.0 / cost.shape[1])
        scale = cost.mean() if cost.mean() > 0 else 1.0
        plan = ot.sinkhorn(a, b, cost / scale, self.reg, numItermax=self.num_iter)
        return torch.as_tensor(plan)

    def __call__(self, x0, x1, manifolds, generator=None):
        plan = self.plan(x0, x1, manifolds).T.clamp_min(0)  # (B1, B0): row i = partners of x1[i]
        plan = plan / plan.sum(dim=1, keepdim=True)
        order = torch.multinomial(plan.float(), 1, generator=generator).squeeze(1)
        device = next(iter(x0.values())).device
        return _reorder(x0, order.to(device))
