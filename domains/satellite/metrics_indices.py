"""Vegetation indices and brightness from RGB, and the Pearson correlation used to compare them.

Per pixel, on R, G, B in [0, 1] (:func:`~.metrics_images.unit_rgb`):

* GLI (green leaf index)        = (2G − R − B) / (2G + R + B)           in [-1, 1]
* ExG (excess green, chromatic) = 2g − r − b, r = R / (R + G + B), …     in [-1, 2]
* VARI (visible atmospherically resistant index) = (G − R) / (G + R − B), clipped to [-1, 1]

Safe denominators: where ``|denominator| < SAFE_EPS`` (a black pixel, or G + R = B for VARI) the
index is 0 instead of inf/NaN. VARI's denominator can be arbitrarily small and of either sign,
so its values are clipped to [-1, 1], the range of vegetation and soil. A tile's index is the
mean over its pixels; brightness is the mean luminance 0.299 R + 0.587 G + 0.114 B.
"""

from __future__ import annotations

import numpy as np
from sciflow_domains.satellite.metrics_images import luminance, unit_rgb

SAFE_EPS = 1e-6
INDICES = ("gli", "exg", "vari")


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    ok = np.abs(denominator) >= SAFE_EPS
    return np.where(ok, numerator / np.where(ok, denominator, 1.0), 0.0)


def index_map(images, name: str) -> np.ndarray:
    """(B, H, W) per-pixel index ``name`` (one of :data:`INDICES`) of a (B, 3, H, W) batch."""
    if name not in INDICES:
        raise ValueError(f"index: expected one of {INDICES}, got {name!r}")
    rgb = unit_rgb(images)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    if name == "gli":
        return _safe_ratio(2 * g - r - b, 2 * g + r + b)
    if name == "exg":
        return _safe_ratio(2 * g - r - b, r + g + b)
    return np.clip(_safe_ratio(g - r, g + r - b), -1.0, 1.0)


def vegetation_index(images, name: str = "gli") -> np.ndarray:
    """(B,) tile mean of the per-pixel index ``name``."""
    return index_map(images, name).mean(axis=(1, 2))


def brightness(images) -> np.ndarray:
    """(B,) tile mean luminance in [0, 1]."""
    return luminance(images).mean(axis=(1, 2))


def pearson(x, y) -> float:
    """Pearson r of two (n,) samples; NaN when n < 3 or either is constant."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x/y: expected equal lengths, got {len(x)} and {len(y)}")
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])
