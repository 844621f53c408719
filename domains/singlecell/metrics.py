"""Distances between a predicted and an observed population, as MFM and CellOT report them.

Per population (both (n, d) arrays; at most ``max_cells`` cells of each, a seeded subsample):

- ``w1``: exact Wasserstein-1 (POT ``emd2``, Euclidean ground cost);
- ``w2``: exact Wasserstein-2 (square root of ``emd2`` with squared Euclidean cost);
- ``mmd``: the mean over γ ∈ :data:`MMD_GAMMAS` of the biased RBF estimate
  mean K(x,x′) + mean K(y,y′) − 2 mean K(x,y), K = exp(−γ|·|²) (the CellOT/MFM convention);
- ``r2_means``: squared Pearson correlation between the feature means of the two populations
  (how well the mean response is predicted; needs d ≥ 3);
- ``corr_pairwise``: Pearson correlation between the upper-triangular feature–feature
  correlation matrices (CellOT's ``r2_pairwise_feat_corrs``, which is an r; needs d ≥ 3);
- ``mean_l2``: Euclidean distance between the feature means.

:func:`summarise` averages a list of per-population results with their standard deviation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: RBF kernel parameters γ of the MMD (K = exp(−γ|x−y|²)), as in CellOT and MFM.
MMD_GAMMAS = (2.0, 1.0, 0.5, 0.1, 0.01, 0.005)
METRICS = ("w1", "w2", "mmd", "r2_means", "corr_pairwise", "mean_l2")


def _check(name: str, x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"{name}: expected a non-empty (cells, features) array, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return x


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _check("x", x), _check("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features, y has {y.shape[1]}")
    return x, y


def wasserstein(x, y, p: int = 2) -> float:
    """Exact W_p (p = 1 or 2) between the empirical measures of x (n, d) and y (m, d)."""
    import ot

    if p not in (1, 2):
        raise ValueError(f"p: expected 1 or 2, got {p!r}")
    x, y = _pair(x, y)
    cost = ot.dist(x, y, metric="sqeuclidean" if p == 2 else "euclidean")
    value = ot.emd2(ot.unif(len(x)), ot.unif(len(y)), cost, numItermax=10_000_000)
    return float(np.sqrt(max(value, 0.0)) if p == 2 else value)


def mmd_rbf(x, y, gammas: Sequence[float] = MMD_GAMMAS) -> float:
    """Biased RBF MMD² averaged over ``gammas`` (module docstring)."""
    from scipy.spatial.distance import cdist

    x, y = _pair(x, y)
    dxx, dyy, dxy = (cdist(a, b, "sqeuclidean") for a, b in ((x, x), (y, y), (x, y)))
    values = [
        np.exp(-g * dxx).mean() + np.exp(-g * dyy).mean() - 2 * np.exp(-g * dxy).mean()
        for g in gammas
    ]
    return float(np.mean(values))


def r2_means(x, y) -> float:
    """Squared Pearson correlation of the feature means of x and y."""
    x, y = _pair(x, y)
    if x.shape[1] < 3:  # two means always lie on a line: r² = 1 says nothing
        return float("nan")
    return float(np.corrcoef(x.mean(0), y.mean(0))[0, 1] ** 2)


def corr_pairwise(x, y) -> float:
    """Pearson r between the upper triangles of the feature–feature correlations of x and y."""
    x, y = _pair(x, y)
    d = x.shape[1]
    if d < 3:
        return float("nan")
    rows, cols = np.triu_indices(d, k=1)
    cx, cy = np.corrcoef(x, rowvar=False), np.corrcoef(y, rowvar=False)
    return float(np.corrcoef(cx[rows, cols], cy[rows, cols])[0, 1])


def subsample(x: np.ndarray, max_cells: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_cells`` rows of x, drawn without replacement (all rows if fewer)."""
    if len(x) <= max_cells:
        return x
    return x[np.sort(rng.choice(len(x), max_cells, replace=False))]


def population_metrics(predicted, observed, max_cells: int = 5000, seed: int = 0) -> dict:
    """All :data:`METRICS` between a predicted and an observed population (module docstring)."""
    rng = np.random.default_rng(seed)
    x, y = _pair(predicted, observed)
    x, y = subsample(x, max_cells, rng), subsample(y, max_cells, rng)
    return {
        "w1": wasserstein(x, y, p=1),
        "w2": wasserstein(x, y, p=2),
        "mmd": mmd_rbf(x, y),
        "r2_means": r2_means(x, y),
        "corr_pairwise": corr_pairwise(x, y),
        "mean_l2": float(np.linalg.norm(x.mean(0) - y.mean(0))),
        "num_predicted": len(x),
        "num_observed": len(y),
    }


def summarise(results: Sequence[dict]) -> dict:
    """Mean and standard deviation over populations of every metric in :data:`METRICS`."""
    if not results:
        raise ValueError("summarise: got no per-population results")
    out = {}
    for name in METRICS:
        values = np.array([r[name] for r in results], dtype=np.float64)
        finite = values[np.isfinite(values)]
        out[name] = {
            "mean": float(finite.mean()) if finite.size else float("nan"),
            "std": float(finite.std()) if finite.size else float("nan"),
        }
    out["num_populations"] = len(results)
    return out
