"""Acquisition nuisances of one visit, applied after rendering: registration jitter and intensity
drift.

Order: rigid jitter of image and labels (rotation about the centre, shift; skipped when
``registered``), then ``I ← clip(gain·bias·I, 0, 1)^gamma + N(0, noise_sd²)``, clipped to [0, 1].
The bias field is a 2nd-order polynomial in the centred coordinates with its largest deviation
from 1 equal to ``bias_amplitude``.
"""

from __future__ import annotations

import numpy as np
from sciflow_domains.medical.synthprog.config import NuisanceParams
from scipy import ndimage

#: Keys of the record :func:`apply_nuisance` returns (stored per visit by the generator).
NUISANCE_KEYS = ("rotation_deg", "shift_row", "shift_col", "gain", "gamma")


def apply_nuisance(
    image: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    params: NuisanceParams,
    px_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Perturb one rendered visit.

    Args:
        image: (H, W) float intensities in [0, 1].
        labels: (H, W) uint8 label mask; moved with the image (nearest neighbour).
        rng: the visit's random stream.
        params: nuisance parameters; pixel lengths are multiplied by ``px_scale``.

    Returns:
        (H, W) float32 image in [0, 1], (H, W) uint8 labels, and the drawn values
        (:data:`NUISANCE_KEYS`; rotation and shifts are 0 when ``registered``).
    """
    if image.ndim != 2 or labels.shape != image.shape:
        raise ValueError(
            f"image, labels: expected equal (H, W) shapes, got {image.shape}, {labels.shape}"
        )
    rotation = rng.normal(0.0, params.rotation_sd_deg)
    shift = rng.normal(0.0, params.shift_sd_px * px_scale, size=2)
    if params.registered:
        rotation, shift = 0.0, np.zeros(2)
    else:
        image = _rigid(image, rotation, shift, order=1)
        labels = _rigid(labels, rotation, shift, order=0)
    gain, gamma = rng.uniform(*params.gain), rng.uniform(*params.gamma)
    bias = _bias_field(image.shape, rng.uniform(-1.0, 1.0, size=5), params.bias_amplitude)
    drifted = np.clip(gain * bias * image, 0.0, 1.0) ** gamma
    noisy = drifted + rng.normal(0.0, params.noise_sd, size=image.shape)
    record = {
        "rotation_deg": float(rotation),
        "shift_row": float(shift[0]),
        "shift_col": float(shift[1]),
        "gain": float(gain),
        "gamma": float(gamma),
    }
    return np.clip(noisy, 0.0, 1.0).astype(np.float32), labels.astype(np.uint8), record


def _rigid(array: np.ndarray, rotation_deg: float, shift: np.ndarray, order: int) -> np.ndarray:
    """Rotate ``array`` by ``rotation_deg`` about its centre, then shift by ``shift`` pixels."""
    angle = np.deg2rad(rotation_deg)
    matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = (np.array(array.shape) - 1) / 2.0
    offset = centre - matrix @ (centre + shift)  # output x ↦ input matrix·x + offset
    return ndimage.affine_transform(
        array, matrix, offset=offset, order=order, mode="nearest", prefilter=False
    )


def _bias_field(shape: tuple[int, int], coefficients: np.ndarray, amplitude: float) -> np.ndarray:
    """1 + amplitude · p(x, y) / max|p| for p = c·(x, y, x², xy, y²), x, y ∈ [−1, 1]."""
    y, x = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    poly = sum(c * term for c, term in zip(coefficients, (x, y, x * x, x * y, y * y), strict=True))
    return 1.0 + amplitude * poly / max(np.abs(poly).max(), 1e-12)
