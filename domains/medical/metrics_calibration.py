"""Calibration of a stochastic forecast against draws from the true predictive distribution.

SynthProg can draw the future of a visit from its own law (``synthprog.sample_future``), so a
stochastic model's ``M`` samples of that future can be compared with ``N`` true draws directly:

- :func:`randomised_pit`: where each true value falls among the model's samples, as a
  probability integral transform. With ``r`` samples below the true value and ``e`` equal to it,
  ``PIT = (r + V·(e + 1)) / (M + 1)``, V ~ U(0, 1). If the truth and the samples are
  exchangeable (a calibrated model) the PIT is exactly Uniform(0, 1), ties included (images are
  clipped to [0, 1], so ties at 0 and 1 are common).
- :func:`interval_coverage`: the share of true values inside the model's central interval of
  level α, i.e. ``|PIT − ½| ≤ α/2``; a calibrated model covers α, an overconfident one less.
- :func:`crps`: the continuous ranked probability score ``E|X − y| − ½·E|X − X′|`` per element,
  with the unbiased ("fair") pair term 1/(M(M−1)); averaged over true draws and elements.
- :func:`energy_distance`: ``2·E‖X − Y‖ − E‖X − X′‖ − E‖Y − Y′‖`` between the two samples of
  whole images, with the unbiased within-sample terms (pairs of distinct draws), so its
  expectation is 0 exactly when the laws agree; ‖·‖ is the RMS over elements (L2 / √D), so the
  value does not grow with the resolution.

A single sample (M = 1) is taken as a point forecast: its pair terms are 0 (a point mass).
Arrays are ``(M, ...)`` model samples and ``(N, ...)`` true draws of the same trailing shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.spatial.distance import cdist


def _draws(x, name: str, minimum: int = 1) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1 or len(x) < minimum:
        raise ValueError(f"{name}: expected (draws, ...) with >= {minimum} draws, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x.reshape(len(x), -1)


def _pair(samples, truth, min_truth: int = 1) -> tuple[np.ndarray, np.ndarray]:
    shapes = (np.shape(samples)[1:], np.shape(truth)[1:])
    x, y = _draws(samples, "samples"), _draws(truth, "truth", min_truth)
    if shapes[0] != shapes[1]:
        raise ValueError(f"samples, truth: trailing shapes differ, {shapes[0]} vs {shapes[1]}")
    return x, y


def randomised_pit(samples, truth, rng: np.random.Generator) -> np.ndarray:
    """(N, D) randomised PIT of each true value among the M samples (module docstring);
    ``samples`` (M, ...), ``truth`` (N, ...) flattened to D elements."""
    x, y = _pair(samples, truth)
    out = np.empty(y.shape)
    for n in range(len(y)):
        below = (x < y[n]).sum(axis=0)
        equal = (x == y[n]).sum(axis=0)
        out[n] = (below + rng.random(y.shape[1]) * (equal + 1)) / (len(x) + 1)
    return out


def interval_coverage(pit, levels: Sequence[float]) -> dict[float, float]:
    """Share of PIT values inside the central interval of each level α ∈ (0, 1)."""
    pit = np.asarray(pit, dtype=np.float64)
    if pit.size == 0 or np.any((pit < 0) | (pit > 1)):
        raise ValueError("pit: expected a non-empty array of values in [0, 1]")
    out = {}
    for level in levels:
        if not 0 < level < 1:
            raise ValueError(f"levels: expected values in (0, 1), got {level!r}")
        out[float(level)] = float(np.mean(np.abs(pit - 0.5) <= level / 2))
    return out


def crps(samples, truth) -> float:
    """Mean CRPS of the sample distribution per element, over the true draws (module
    docstring); ``samples`` (M, ...), ``truth`` (N, ...)."""
    x, y = _pair(samples, truth)
    m = len(x)
    error = np.mean([np.abs(x - y[n]).mean() for n in range(len(y))])
    if m == 1:
        return float(error)
    # Σ_{m≠m'} |x_m − x_m'| per element from the sorted samples: Σ_k (2k − m + 1)·x_(k)
    ordered = np.sort(x, axis=0)
    weights = (2 * np.arange(m) - m + 1)[:, None]
    pair_sum = 2 * (weights * ordered).sum(axis=0)
    spread = pair_sum / (m * (m - 1))
    return float(error - 0.5 * spread.mean())


def _mean_distance(a: np.ndarray, b: np.ndarray, distinct: bool) -> float:
    """Mean RMS distance between rows of a and b; over pairs i ≠ j when ``distinct``."""
    dist = cdist(a, b) / np.sqrt(a.shape[1])
    if not distinct:
        return float(dist.mean())
    n = len(a)
    if n < 2:
        return 0.0
    return float((dist.sum() - np.trace(dist)) / (n * (n - 1)))


def energy_distance(samples, truth) -> float:
    """Unbiased energy distance between the samples (M, ...) and true draws (N ≥ 2, ...)
    with the RMS norm (module docstring); 0 in expectation when both come from one law."""
    x, y = _pair(samples, truth, min_truth=2)
    cross = _mean_distance(x, y, distinct=False)
    return 2 * cross - _mean_distance(x, x, distinct=True) - _mean_distance(y, y, distinct=True)
