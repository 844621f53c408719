"""Anatomical backgrounds of SynthProg: the real images when on disk, else built-in phantoms.

Real files (``sciflow data fetch backgrounds``, see :mod:`sciflow_domains.medical.datasets`) live
in ``$SCIFLOW_DATA_DIR/medical/backgrounds/``: the scikit-image fundus photograph
``skimage_retina.jpg`` (CC0) and the MNI ICBM152 2009a T1/GM/WM templates from nilearn.
``choice="auto"`` uses them when all are present and otherwise falls back, with a warning, to the
code-generated phantoms of :mod:`.phantoms` (the choice made is recorded as ``origin``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from sciflow_domains.medical.io import read_nifti, read_slice
from sciflow_domains.medical.synthprog.phantoms import (
    MNI_DEPTH,
    brain_phantom_slice,
    fundus_phantom,
)
from scipy import ndimage

from sciflow.data import data_dir

log = logging.getLogger(__name__)

RETINA_FILE = "skimage_retina.jpg"
#: Side of the real fundus photograph; crop sizes in the config are in its pixels.
RETINA_SIDE_PX = 1411
MNI_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def backgrounds_dir() -> Path:
    """``$SCIFLOW_DATA_DIR/medical/backgrounds``."""
    return data_dir() / "medical" / "backgrounds"


@dataclass(frozen=True)
class RetinaImage:
    """A fundus green channel.

    Attributes:
        green: (rows, cols) float32 in [0, 1].
        fovea: (row, col) of the fovea in pixels (darkest point of the smoothed centre).
        origin: ``"real"`` or ``"builtin"``.
    """

    green: np.ndarray
    fovea: tuple[float, float]
    origin: str
    _reduced: dict = field(default_factory=dict, repr=False, compare=False)

    def reduced(self, factor: int) -> np.ndarray:
        """The image block-averaged by an integer ``factor`` (cached); pixel k covers
        original pixels [k·factor, (k+1)·factor)."""
        if factor not in self._reduced:
            rows, cols = (n // factor * factor for n in self.green.shape)
            blocks = self.green[:rows, :cols].reshape(
                rows // factor, factor, cols // factor, factor
            )
            self._reduced[factor] = blocks.mean(axis=(1, 3), dtype=np.float64)
        return self._reduced[factor]


@dataclass(frozen=True)
class BrainTemplate:
    """Axial tissue maps of an MNI-space head at 1 mm (real template or phantom).

    ``volumes`` holds (x, y, z) uint8 maps ``brain``/``gm``/``wm`` scaled to 0–255 for the real
    template, and is empty for the phantom (slices are computed on demand).
    """

    origin: str
    volumes: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def depth(self) -> int:
        """Number of axial slices."""
        return self.volumes["brain"].shape[2] if self.volumes else MNI_DEPTH

    def axial(self, z: int) -> dict[str, np.ndarray]:
        """Slice ``z``: ``{"brain", "gm", "wm"}``, each (233, 197) float32 in [0, 1], rows
        anterior→posterior and columns patient right→left (radiological display)."""
        if not 0 <= z < self.depth:
            raise ValueError(f"z: expected 0 <= z < {self.depth}, got {z}")
        if not self.volumes:
            return brain_phantom_slice(z)
        return {k: v[:, ::-1, z].T.astype(np.float32) / 255.0 for k, v in self.volumes.items()}


def load_retina(choice: str = "auto") -> RetinaImage:
    """The fundus background for ``choice`` ∈ {"auto", "real", "builtin"} (cached per folder)."""
    return _load_retina(_resolve(choice, [RETINA_FILE]), str(backgrounds_dir()))


def load_brain(choice: str = "auto") -> BrainTemplate:
    """The brain template for ``choice`` ∈ {"auto", "real", "builtin"} (cached per folder)."""
    return _load_brain(_resolve(choice, list(MNI_FILES.values())), str(backgrounds_dir()))


def find_fovea(green: np.ndarray) -> tuple[float, float]:
    """(row, col) of the darkest point of the smoothed central half of a fundus image."""
    if green.ndim != 2:
        raise ValueError(f"green: expected a (rows, cols) image, got shape {green.shape}")
    step = max(1, min(green.shape) // 256)
    small = ndimage.gaussian_filter(green[::step, ::step].astype(np.float64), 8.0)
    r0, c0 = (n // 4 for n in small.shape)
    centre = small[r0 : small.shape[0] - r0, c0 : small.shape[1] - c0]
    row, col = np.unravel_index(np.argmin(centre), centre.shape)
    return (float((row + r0) * step), float((col + c0) * step))


def _resolve(choice: str, files: list[str]) -> str:
    """``"real"`` or ``"builtin"`` for ``choice``; ``"real"`` with a file missing raises."""
    if choice not in ("auto", "real", "builtin"):
        raise ValueError(f"background: expected 'auto', 'real' or 'builtin', got {choice!r}")
    if choice == "builtin":
        return choice
    missing = [name for name in files if not (backgrounds_dir() / name).is_file()]
    if not missing:
        return "real"
    if choice == "real":
        raise FileNotFoundError(
            f"real SynthProg backgrounds missing in {backgrounds_dir()}: {missing}; run "
            "`sciflow data fetch backgrounds` (or set SCIFLOW_DATA_DIR), "
            "or use background='builtin'"
        )
    log.warning("SynthProg: %s not found; using the built-in phantom background", missing)
    return "builtin"


@lru_cache(maxsize=4)
def _load_retina(origin: str, folder: str) -> RetinaImage:
    if origin == "builtin":
        green = fundus_phantom(512)
    else:
        green = read_slice(Path(folder) / RETINA_FILE)[1]  # green channel of (3, rows, cols)
    return RetinaImage(green=green, fovea=find_fovea(green), origin=origin)


@lru_cache(maxsize=4)
def _load_brain(origin: str, folder: str) -> BrainTemplate:
    if origin == "builtin":
        return BrainTemplate(origin=origin)
    data = {k: read_nifti(Path(folder) / name)[0] for k, name in MNI_FILES.items()}
    volumes = {
        "brain": np.where(data["t1"] > 0, 255, 0).astype(np.uint8),
        "gm": data["gm"].astype(np.uint8),
        "wm": data["wm"].astype(np.uint8),
    }
    return BrainTemplate(origin=origin, volumes=volumes)
