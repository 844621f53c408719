"""Image-level forecast errors: PSNR and SSIM with the correct data range, MAE/MSE over the image
or inside a region, the ground-truth change region, and stratification by forecast horizon.

Images are batches ``(B, C, H, W)`` (numpy arrays or torch tensors) with intensities in [0, 1];
every function returns one float64 value per item, ``(B,)``. Regions and masks are ``(B, H, W)``
or ``(B, 1, H, W)`` booleans and apply to every channel.

Data range. Intensities live in [0, 1], so ``data_range = 1``: PSNR = 10·log10(1 / MSE). The
ImageFlowNet reference code passes ``data_range = 2`` for images already in [0, 1], which adds
20·log10 2 ≈ 6.02 dB to PSNR and inflates SSIM (``docs/methods/medical.md`` §1.9).

SSIM is Wang et al. (2004) with a Gaussian window (σ = 1.5, radius 5: 11 × 11), K1 = 0.01,
K2 = 0.03, population (not sample) covariances, averaged over the window positions that lie
wholly inside the image and over channels: the same number as scikit-image's
``structural_similarity(..., data_range=1, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)`` (cross-checked in the tests), computed here batched with torch.

Change region. With per-visit *lesion* masks (SynthProg) the ground-truth change region of a
forecast from visit i to visit j is where the binary lesion masks differ, ``m_i XOR m_j``: the
pixels where copy-forward is wrong by construction. With *change* masks (the real MS pairs: the
lesion change since the previous visit, stored on the later visit) it is the later visit's mask,
valid only for consecutive visits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: SSIM constants and Gaussian window (module docstring).
SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_RADIUS = 0.01, 0.03, 1.5, 5


def as_images(x, name: str) -> np.ndarray:
    """``x`` as a float64 ``(B, C, H, W)`` array; errors name ``name``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"{name}: expected (B, C, H, W) images, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x


def as_masks(x, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``x`` as a bool ``(B, H, W)`` array matching ``shape`` = (B, H, W); accepts (B, 1, H, W)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.shape != tuple(shape):
        raise ValueError(
            f"{name}: expected a (B, H, W) or (B, 1, H, W) mask with (B, H, W) = {tuple(shape)}, "
            f"got {x.shape}"
        )
    return x > 0.5 if x.dtype.kind == "f" else x.astype(bool)


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred, target = as_images(pred, "pred"), as_images(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred, target: shapes differ, {pred.shape} vs {target.shape}")
    return pred, target


def _region_mean(values: np.ndarray, region) -> np.ndarray:
    """Mean of ``values`` (B, C, H, W) over all pixels, or over ``region`` (NaN where empty)."""
    if region is None:
        return values.reshape(len(values), -1).mean(axis=1)
    region = as_masks(region, "region", (values.shape[0], *values.shape[2:]))
    weights = np.broadcast_to(region[:, None], values.shape)
    count = weights.reshape(len(values), -1).sum(axis=1)
    total = np.where(weights, values, 0.0).reshape(len(values), -1).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def mse(pred, target, region=None) -> np.ndarray:
    """(B,) mean squared error over the image, or over ``region`` (NaN where it is empty)."""
    pred, target = _pair(pred, target)
    return _region_mean((pred - target) ** 2, region)


def mae(pred, target, region=None) -> np.ndarray:
    """(B,) mean absolute error over the image, or over ``region`` (NaN where it is empty)."""
    pred, target = _pair(pred, target)
    return _region_mean(np.abs(pred - target), region)


def psnr(pred, target, data_range: float = 1.0, region=None) -> np.ndarray:
    """(B,) peak signal-to-noise ratio 10·log10(data_range² / MSE) in dB.

    ``data_range`` is the span of possible intensities: 1 for images in [0, 1]. Over ``region``
    the MSE is taken inside it (NaN where empty); a perfect forecast gives +inf.
    """
    if not data_range > 0:
        raise ValueError(f"data_range: expected > 0, got {data_range!r}")
    error = mse(pred, target, region)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / error)


def _gaussian_window(dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=dtype)
    w = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return w / w.sum()


def ssim(pred, target, data_range: float = 1.0) -> np.ndarray:
    """(B,) mean structural similarity (module docstring), images of side ≥ 11 pixels."""
    pred, target = _pair(pred, target)
    if not data_range > 0:
        raise ValueError(f"data_range: expected > 0, got {data_range!r}")
    side = 2 * SSIM_RADIUS + 1
    if min(pred.shape[2:]) < side:
        raise ValueError(f"pred, target: SSIM needs H, W >= {side} pixels, got {pred.shape[2:]}")
    b, c, h, w = pred.shape
    x = torch.from_numpy(pred).reshape(b * c, 1, h, w)
    y = torch.from_numpy(target).reshape(b * c, 1, h, w)
    window = _gaussian_window(x.dtype)
    rows, cols = window.view(1, 1, -1, 1), window.view(1, 1, 1, -1)

    def smooth(z: torch.Tensor) -> torch.Tensor:  # separable Gaussian, valid positions only
        return F.conv2d(F.conv2d(z, rows), cols)

    mx, my = smooth(x), smooth(y)
    vx, vy = smooth(x * x) - mx * mx, smooth(y * y) - my * my
    cxy = smooth(x * y) - mx * my
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return index.reshape(b, -1).mean(dim=1).numpy()


def change_region(mask_in, mask_target, meaning: str = "lesion") -> np.ndarray:
    """(B, H, W) bool ground-truth change region of a forecast from one visit to a later one.

    Args:
        mask_in, mask_target: (B, H, W) or (B, 1, H, W) binary masks of the input and target
            visits (``mask_in`` is ignored for ``meaning="change"``).
        meaning: ``"lesion"`` (per-visit lesion masks: ``mask_in XOR mask_target``) or
            ``"change"`` (change masks on the later visit: ``mask_target``).
    """
    if meaning not in ("lesion", "change"):
        raise ValueError(f"meaning: expected 'lesion' or 'change', got {meaning!r}")
    size = tuple(mask_target.shape)
    shape = (size[0], *size[-2:])
    target = as_masks(mask_target, "mask_target", shape)
    if meaning == "change":
        return target
    return as_masks(mask_in, "mask_in", shape) ^ target


def gap_bin_labels(edges: Sequence[float]) -> list[str]:
    """Labels of the bins ``[e_0, e_1), …, [e_last, ∞)`` in months, e.g. ``"6–12"``, ``"≥24"``."""
    edges = _check_edges(edges)
    labels = [f"{_num(a)}–{_num(b)}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return [*labels, f"≥{_num(edges[-1])}"]


def gap_bins(dt, edges: Sequence[float]) -> np.ndarray:
    """(N,) index of the bin of each gap ``dt`` (N,) months: ``k`` for ``e_k ≤ dt < e_{k+1}``,
    the last bin for ``dt ≥ e_last``; gaps below ``e_0`` raise ValueError."""
    edges = _check_edges(edges)
    dt = np.asarray(dt, dtype=np.float64).reshape(-1)
    if np.any(~np.isfinite(dt)) or np.any(dt < edges[0]):
        raise ValueError(f"dt: expected finite gaps >= the first edge {edges[0]}, got {dt.min()}")
    return np.searchsorted(edges, dt, side="right") - 1


def stratify(values, dt, edges: Sequence[float]) -> dict[str, dict[str, float]]:
    """Mean, standard error and count of ``values`` (N,) per gap bin of ``dt`` (N,) months.

    NaN values (e.g. an empty change region) are left out of their bin; a bin without values has
    mean NaN and n = 0. Returns ``{label: {"mean", "sem", "n"}}`` in bin order.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    index = gap_bins(dt, edges)
    if len(values) != len(index):
        raise ValueError(f"values, dt: lengths differ, {len(values)} vs {len(index)}")
    out = {}
    for k, label in enumerate(gap_bin_labels(edges)):
        chosen = values[(index == k) & ~np.isnan(values)]
        n = len(chosen)
        mean = float(chosen.mean()) if n else float("nan")
        sem = float(chosen.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        out[label] = {"mean": mean, "sem": sem, "n": n}
    return out


def _check_edges(edges: Sequence[float]) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.float64).reshape(-1)
    if len(edges) < 1 or not np.isfinite(edges).all() or np.any(np.diff(edges) <= 0):
        raise ValueError(f"edges: expected increasing finite bin edges in months, got {edges}")
    return edges


def _num(value: float) -> str:
    return f"{value:g}"
