"""Brain pseudo-subjects for the MS and tumour laws: an axial template slice cropped to the brain.

A subject takes slice z ~ U{z_low..z_high} of the MNI template (or the phantom), a square crop
around the brain's bounding box, an optional left/right flip and a resampling to H × H. Its
FLAIR-like map is ``0.6·GM + 0.45·WM + 0.05·CSF`` with ``CSF = max(brain − GM − WM, 0)``.
"""

from __future__ import annotations

import numpy as np
from sciflow_domains.medical.synthprog.backgrounds import BrainTemplate
from scipy import ndimage

#: Margin around the brain's bounding box, mm.
CROP_MARGIN_MM = 6.0


def draw_brain_slice(
    template: BrainTemplate, rng: np.random.Generator, resolution: int, slice_z: tuple[int, int]
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Draw a subject's anatomy.

    Returns:
        fields: ``background`` (FLAIR-like), ``brain``, ``gm``, ``wm``: (H, H) float32 in [0, 1].
        params: ``slice_z``, ``flip`` (0/1) and ``mm_per_px`` (pixel size in mm).
    """
    z = int(rng.integers(slice_z[0], slice_z[1] + 1))
    flip = bool(rng.integers(0, 2))
    maps = template.axial(z)
    inside = np.argwhere(maps["brain"] > 0.5)
    if inside.size == 0:
        raise ValueError(f"slice_z: template slice {z} holds no brain; choose slices inside it")
    low, high = inside.min(0), inside.max(0)
    centre = (low + high) / 2.0
    side = float((high - low).max()) + 1.0 + 2 * CROP_MARGIN_MM
    step = side / resolution
    q = np.arange(resolution) - (resolution - 1) / 2
    rows, cols = centre[0] + q[:, None] * step, centre[1] + q[None, :] * step
    coords = np.stack(np.broadcast_arrays(rows, cols))
    fields = {}
    for name, image in maps.items():
        smooth = ndimage.gaussian_filter(image.astype(np.float64), 0.4 * step)
        sample = ndimage.map_coordinates(smooth, coords, order=1, mode="constant", cval=0.0)
        fields[name] = np.clip(sample[:, ::-1] if flip else sample, 0.0, 1.0).astype(np.float32)
    fields["background"] = flair_like(fields["gm"], fields["wm"], fields["brain"])
    return fields, {"slice_z": float(z), "flip": float(flip), "mm_per_px": step}


def flair_like(gm: np.ndarray, wm: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """``0.6·GM + 0.45·WM + 0.05·CSF`` (same shape, float32), CSF = max(brain − GM − WM, 0)."""
    csf = np.clip(brain - gm - wm, 0.0, None)
    return (0.6 * gm + 0.45 * wm + 0.05 * csf).astype(np.float32)


def white_matter_sites(fields: dict[str, np.ndarray], threshold: float, margin_px: float):
    """(N, 2) pixel (row, col) of white matter (WM > ``threshold``) at least ``margin_px`` from
    CSF (ventricles, sulci: CSF probability > 0.5). Falls back to WM > 0.5 when none qualify."""
    csf = np.clip(fields["brain"] - fields["gm"] - fields["wm"], 0.0, None) > 0.5
    far = ndimage.distance_transform_edt(~csf) > margin_px if csf.any() else True
    for level in (threshold, 0.5):
        sites = np.argwhere((fields["wm"] > level) & far)
        if len(sites):
            return sites.astype(np.float64)
    raise ValueError("this brain slice has no white matter to place lesions or a tumour seed in")
