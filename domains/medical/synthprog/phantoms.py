"""Code-generated anatomy: the built-in fallback when the real backgrounds are not on disk.

Both phantoms are deterministic (no random state) and only stand in for the real images so the
generator, its tests and CI run without ``$SCIFLOW_DATA_DIR``; benchmarks use the real ones.

- :func:`fundus_phantom`: green channel of a left-eye fundus photograph: circular field of view,
  vignetting, bright optic disc on the nasal (left) side, dark fovea at the centre, vessel arcades.
- :func:`brain_phantom_slice`: GM/WM/brain probability maps of an axial slice of an MNI-sized head
  (1 mm pixels, 233 × 197, rows anterior→posterior, columns patient right→left): a folded cortical
  ribbon, white matter, lateral ventricles, deep grey nuclei and the interhemispheric fissure.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Shape of an MNI ICBM152 axial slice at 1 mm in display orientation (rows, columns).
MNI_SLICE_SHAPE = (233, 197)
#: Number of axial slices of the MNI ICBM152 template.
MNI_DEPTH = 189


def fundus_phantom(size: int = 512) -> np.ndarray:
    """A fundus-like green channel, (size, size) float32 in [0, 1], fovea at the centre."""
    if size < 64:
        raise ValueError(f"size: expected >= 64 pixels, got {size}")
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size - 0.5  # [-0.5, 0.5], centre 0
    r = np.hypot(x, y)
    image = 0.36 - 0.12 * (r / 0.47) ** 2
    image -= 0.10 * np.exp(-(r**2) / (2 * 0.035**2)) + 0.04 * np.exp(-(r**2) / (2 * 0.11**2))
    disc = np.hypot(x + 0.33, y - 0.02)
    image += 0.35 * _smoothstep(0.06 - disc, 0.01) + 0.12 * _smoothstep(0.025 - disc, 0.008)
    image -= 0.14 * _vessels(size)
    texture = ndimage.gaussian_filter(_hash_noise((size, size)), size / 256)
    image += 0.015 * texture / (texture.std() + 1e-12)
    image *= _smoothstep(0.47 - r, 0.004)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def brain_phantom_slice(z: int) -> dict[str, np.ndarray]:
    """Tissue maps of axial slice ``z`` (0 ≤ z < 189, MNI numbering, 1 mm).

    Returns ``{"brain", "gm", "wm"}``: each (233, 197) float32 in [0, 1] with ``gm + wm ≤ brain``
    (the rest of the brain is CSF).
    """
    if not 0 <= z < MNI_DEPTH:
        raise ValueError(f"z: expected 0 <= z < {MNI_DEPTH}, got {z}")
    rows, cols = MNI_SLICE_SHAPE
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    y, x = y - 118.0, x - 98.0
    size = np.sqrt(max(1.0 - ((z - 78.0) / 105.0) ** 2, 0.05))
    theta = np.arctan2(y, x)
    radius = np.hypot(y / (82.0 * size), x / (68.0 * size))
    outline = 1.0 + 0.025 * np.sin(7 * theta + 0.1 * z) + 0.015 * np.sin(13 * theta)
    brain = radius < outline
    depth = (outline - radius) * 70.0 * size  # ≈ mm below the surface
    folds = np.sin(23 * theta + 0.2 * z + 0.8 * np.sin(4 * theta))
    ribbon = depth < 8.0 + 4.0 * folds
    sulci = (np.abs(folds) < 0.1) & (depth < 12.0)
    fissure = (np.abs(x) < 1.2) & (np.abs(y) > 25 * size)
    ventricle_size = max(0.0, 1.0 - ((z - 88.0) / 26.0) ** 2)
    ventricles = np.zeros_like(brain)
    deep_grey = np.zeros_like(brain)
    if ventricle_size > 0:
        for side in (-1.0, 1.0):
            ventricles |= _ellipse(x - 8 * side, y + 2, 5 * ventricle_size, 22 * ventricle_size)
            deep_grey |= _ellipse(x - 20 * side, y - 6, 7 * ventricle_size, 11 * ventricle_size)
    csf = brain & (sulci | fissure | ventricles)
    gm = brain & ~csf & (ribbon | deep_grey)
    wm = brain & ~csf & ~gm
    maps = {"brain": brain, "gm": gm, "wm": wm}
    smooth = {k: ndimage.gaussian_filter(v.astype(np.float64), 0.8) for k, v in maps.items()}
    total = np.maximum(smooth["gm"] + smooth["wm"], smooth["brain"])
    scale = np.where(total > 0, smooth["brain"] / np.maximum(total, 1e-12), 0.0)
    smooth["gm"], smooth["wm"] = smooth["gm"] * scale, smooth["wm"] * scale
    return {k: np.clip(v, 0.0, 1.0).astype(np.float32) for k, v in smooth.items()}


def _vessels(size: int) -> np.ndarray:
    """Vessel darkening in [0, 1]: arcades from the disc around the fovea, plus branches."""
    image = np.zeros((size, size))
    s = np.linspace(0.0, 1.0, 4 * size)
    for sign in (-1.0, 1.0):  # superior and inferior arcade, two vessels each
        for width, spread, reach in ((0.006, 0.16, 0.45), (0.004, 0.24, 0.42)):
            cx = -0.33 + reach * 1.6 * s
            cy = 0.02 + sign * spread * np.sin(np.pi * np.minimum(s * 1.3, 1.0))
            image = np.maximum(image, _curve(size, cx, cy, width))
    for k in range(10):  # small branches towards the periphery
        angle = 2 * np.pi * k / 10 + 0.3
        bend = angle + 0.4 + 0.6 * s
        cx = 0.12 * np.cos(angle) + 0.30 * s * np.cos(bend)
        cy = 0.12 * np.sin(angle) + 0.30 * s * np.sin(bend)
        image = np.maximum(image, _curve(size, cx, cy, 0.0025))
    return image


def _curve(size: int, cx: np.ndarray, cy: np.ndarray, width: float) -> np.ndarray:
    """Soft indicator of lying within ``width`` of the curve (cx, cy), coordinates in ±0.5."""
    rows = np.clip(((cy + 0.5) * size).astype(int), 0, size - 1)
    cols = np.clip(((cx + 0.5) * size).astype(int), 0, size - 1)
    off_curve = np.ones((size, size), dtype=bool)
    off_curve[rows, cols] = False
    distance = ndimage.distance_transform_edt(off_curve) / size
    return _smoothstep(width - distance, width / 2)


def _ellipse(x, y, semi_x, semi_y) -> np.ndarray:
    return (x / max(semi_x, 1e-6)) ** 2 + (y / max(semi_y, 1e-6)) ** 2 < 1.0


def _smoothstep(value, width) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(value / width, -50, 50)))


def _hash_noise(shape: tuple[int, int]) -> np.ndarray:
    """Fixed pseudo-random noise in [-1, 1] (a sine hash; no random generator involved)."""
    i, j = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    value = np.sin(i * 12.9898 + j * 78.233) * 43758.5453
    return 2.0 * (value - np.floor(value)) - 1.0
