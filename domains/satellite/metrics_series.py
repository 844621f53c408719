"""Time-series metrics: roll-out error per month and frame-to-frame similarity.

* :func:`rollout_errors`: SSIM and PSNR (EcoMapper settings, :mod:`.metrics_paired`) of each
  generated month against the real month, (T,) each: how the error grows with the horizon.
* :func:`consecutive_ssim`: SSIM between months t and t + 1 of one series, (T - 1,): computed
  for the generated and the real series, it shows whether the generated year changes as fast as
  the real one (too high: a frozen copy of the start frame; too low: flicker).
"""

from __future__ import annotations

import numpy as np
from sciflow_domains.satellite.metrics_images import as_array
from sciflow_domains.satellite.metrics_paired import psnr, ssim


def rollout_errors(generated, real) -> dict[str, np.ndarray]:
    """``{"ssim": (T,), "psnr": (T,)}`` of generated frames (T, 3, H, W) vs real frames."""
    return {"ssim": ssim(generated, real), "psnr": psnr(generated, real)}


def consecutive_ssim(frames) -> np.ndarray:
    """(T - 1,) SSIM of each frame (T, 3, H, W) with the next one; T must be at least 2."""
    array = as_array(frames, "frames")
    if len(array) < 2:
        raise ValueError(f"frames: expected at least 2 frames, got {len(array)}")
    return ssim(array[1:], array[:-1])
