"""Image batches as the satellite metrics take them: validation and the two pixel conventions.

Every metric accepts a batch ``(B, 3, H, W)`` as a torch tensor or a numpy array, either
``uint8`` (0..255) or floating point in model space ``[-1, 1]`` (what the sampler returns). A
floating batch outside ``[-1, 1]`` by more than :data:`RANGE_TOLERANCE` is refused, so that
0..255 floats are not silently misread. (Floats in [0, 1] cannot be told apart from model space:
convert them, x * 2 - 1, before passing them.)
"""

from __future__ import annotations

import numpy as np
import torch
from sciflow_domains.satellite.io import to_uint8

#: Rec. 601 luma weights of R, G, B.
LUMA = np.array([0.299, 0.587, 0.114])
#: How far outside [-1, 1] a float image may stray (solver overshoot) before it is refused.
RANGE_TOLERANCE = 0.5


def as_array(images, name: str = "images") -> np.ndarray:
    """A (B, 3, H, W) batch (tensor or array, uint8 or [-1, 1] floats) as a numpy array of the
    same dtype family; raises ValueError/TypeError naming ``name``."""
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
    array = np.asarray(array)
    if array.ndim != 4 or array.shape[1] != 3 or array.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty (B, 3, H, W) batch, got {array.shape}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name}: expected uint8 or floats in [-1, 1], got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or inf")
    low, high = float(array.min()), float(array.max())
    if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise ValueError(
            f"{name}: float images must lie in [-1, 1] (model space), got values in "
            f"[{low:.3g}, {high:.3g}]; pass uint8 for 0..255 pixels"
        )
    return array


def unit_rgb(images, name: str = "images") -> np.ndarray:
    """(B, 3, H, W) float64 reflectance-like values in [0, 1]: uint8 / 255, or (x + 1) / 2 of
    model-space floats clipped to [-1, 1]."""
    array = as_array(images, name)
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    return (np.clip(array.astype(np.float64), -1.0, 1.0) + 1.0) / 2.0


def luminance(images, name: str = "images") -> np.ndarray:
    """(B, H, W) luminance 0.299 R + 0.587 G + 0.114 B of :func:`unit_rgb`, in [0, 1]."""
    return np.einsum("bchw,c->bhw", unit_rgb(images, name), LUMA)


def uint8_hwc(images, name: str = "images") -> np.ndarray:
    """(B, H, W, 3) uint8, the layout of PNG tiles (floats rounded as :func:`~.io.to_uint8`)."""
    array = as_array(images, name)
    return np.stack([to_uint8(image) for image in array]).transpose(0, 2, 3, 1)


def model_space(images, name: str = "images") -> torch.Tensor:
    """(B, 3, H, W) float32 tensor in [-1, 1] (uint8 mapped by x / 127.5 - 1)."""
    array = as_array(images, name)
    if array.dtype == np.uint8:
        return torch.from_numpy(array.astype(np.float32) / 127.5 - 1.0)
    return torch.from_numpy(np.clip(array, -1.0, 1.0).astype(np.float32))


def check_pair(generated, real) -> tuple[np.ndarray, np.ndarray]:
    """Both batches as arrays (see :func:`as_array`), which must have the same shape."""
    a, b = as_array(generated, "generated"), as_array(real, "real")
    if a.shape != b.shape:
        raise ValueError(f"generated/real: shapes differ, {a.shape} vs {b.shape}")
    return a, b
