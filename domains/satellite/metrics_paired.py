"""Paired image metrics (generated vs real tile of the same place and month), EcoMapper protocol.

* ``ssim``: scikit-image ``structural_similarity(a, b, win_size=7, channel_axis=-1,
  data_range=255)`` on uint8 (H, W, 3) tiles, the settings EcoMapper reports, so the figures
  are comparable (a 7 x 7 uniform window, K1 = 0.01, K2 = 0.03, mean over the valid interior).
* ``psnr``: 10 log10(255² / MSE) on uint8, MSE over all pixels and channels (inf if equal).
* ``colour_distance``: Euclidean distance between the per-channel colour moments
  (mean, standard deviation, skewness of R, G, B in [0, 1]) of the two tiles.
* ``texture_distance``: Euclidean distance between the log10 texture statistics of the two
  tiles' luminance Y = 0.299 R + 0.587 G + 0.114 B: gradient energy (mean squared forward
  difference) at full and half resolution (2 x 2 mean-pooled) and Laplacian energy (mean squared
  5-point Laplacian of the interior). Logs, because energies vary over orders of magnitude.

All functions take (B, 3, H, W) batches (uint8 or [-1, 1] floats, :mod:`.metrics_images`) and
return one value per pair, (B,) float64.
"""

from __future__ import annotations

import numpy as np
from sciflow_domains.satellite.metrics_images import check_pair, luminance, uint8_hwc, unit_rgb

SSIM_WINDOW = 7
#: Added to the texture energies before the log (a flat tile has energy 0).
TEXTURE_EPS = 1e-6
PAIRED_METRICS = ("ssim", "psnr", "colour_distance", "texture_distance")


def _structural_similarity():
    try:
        from skimage.metrics import structural_similarity
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            'SSIM needs scikit-image: pip install "sciflow[satellite]" (or scikit-image)'
        ) from err
    return structural_similarity


def ssim(generated, real) -> np.ndarray:
    """(B,) SSIM of each pair with the EcoMapper settings (module docstring); tiles must be at
    least 7 x 7 pixels."""
    a, b = check_pair(generated, real)
    if min(a.shape[2:]) < SSIM_WINDOW:
        raise ValueError(f"generated/real: SSIM needs tiles of at least 7 x 7, got {a.shape[2:]}")
    structural_similarity = _structural_similarity()
    a, b = uint8_hwc(a, "generated"), uint8_hwc(b, "real")
    return np.array(
        [
            structural_similarity(x, y, win_size=SSIM_WINDOW, channel_axis=-1, data_range=255)
            for x, y in zip(a, b, strict=True)
        ]
    )


def psnr(generated, real) -> np.ndarray:
    """(B,) PSNR in dB of each pair on uint8 pixels (inf for identical tiles)."""
    a, b = check_pair(generated, real)
    a, b = uint8_hwc(a, "generated"), uint8_hwc(b, "real")
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(255.0**2 / mse)


def colour_moments(images) -> np.ndarray:
    """(B, 9) per-channel mean, standard deviation and skewness of RGB in [0, 1], ordered
    (mean R, G, B, std R, G, B, skew R, G, B); the skewness of a flat channel is 0."""
    rgb = unit_rgb(images)
    rgb = rgb.reshape(*rgb.shape[:2], -1)
    mean = rgb.mean(axis=2)
    std = rgb.std(axis=2)
    third = ((rgb - mean[..., None]) ** 3).mean(axis=2)
    skew = np.where(std > 1e-12, third / np.maximum(std, 1e-12) ** 3, 0.0)
    return np.concatenate([mean, std, skew], axis=1)


def _gradient_energy(luma: np.ndarray) -> np.ndarray:
    dx = np.diff(luma, axis=2)
    dy = np.diff(luma, axis=1)
    return (dx**2).mean(axis=(1, 2)) + (dy**2).mean(axis=(1, 2))


def texture_statistics(images) -> np.ndarray:
    """(B, 3) luminance texture: gradient energy at full and half resolution, Laplacian energy
    (module docstring); tiles must be at least 4 x 4."""
    luma = luminance(images)
    if min(luma.shape[1:]) < 4:
        raise ValueError(f"images: texture statistics need at least 4 x 4 px, got {luma.shape[1:]}")
    b, h, w = luma.shape
    half = luma[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    laplacian = (
        luma[:, :-2, 1:-1]
        + luma[:, 2:, 1:-1]
        + luma[:, 1:-1, :-2]
        + luma[:, 1:-1, 2:]
        - 4 * luma[:, 1:-1, 1:-1]
    )
    return np.stack(
        [_gradient_energy(luma), _gradient_energy(half), (laplacian**2).mean(axis=(1, 2))], axis=1
    )


def colour_distance(generated, real) -> np.ndarray:
    """(B,) Euclidean distance between the colour moments of each pair."""
    a, b = check_pair(generated, real)
    return np.linalg.norm(colour_moments(a) - colour_moments(b), axis=1)


def texture_distance(generated, real) -> np.ndarray:
    """(B,) Euclidean distance between the log10 texture statistics of each pair."""
    a, b = check_pair(generated, real)
    log_a = np.log10(texture_statistics(a) + TEXTURE_EPS)
    log_b = np.log10(texture_statistics(b) + TEXTURE_EPS)
    return np.linalg.norm(log_a - log_b, axis=1)


def paired_metrics(generated, real) -> dict[str, np.ndarray]:
    """Every metric of :data:`PAIRED_METRICS` per pair: name → (B,) float64."""
    return {
        "ssim": ssim(generated, real),
        "psnr": psnr(generated, real),
        "colour_distance": colour_distance(generated, real),
        "texture_distance": texture_distance(generated, real),
    }


def summarise_paired(values: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean over pairs of each metric (PSNR: mean of the finite values; inf if all are inf)."""
    out = {}
    for name, array in values.items():
        finite = array[np.isfinite(array)]
        out[name] = float(finite.mean()) if len(finite) else float(array.mean())
    return out
