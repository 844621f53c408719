"""Medical file formats: NIfTI volumes, 2-D slice images, ITK affine transforms, PNG panels.

Intensity convention: readers of images return float32 arrays; :func:`read_slice` maps integer
images to [0, 1] (8-bit / 255, 16-bit / 65535). NIfTI data is returned as stored (scaled by the
header's slope/intercept), since MR intensities have no fixed range; normalise it yourself (the
datasets of this domain use [0, 1]).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PathLike = str | os.PathLike
_AFFINE_ATOL = 1e-4


def read_nifti(
    path: PathLike, dtype: np.dtype | type = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file (``.nii`` or ``.nii.gz``).

    Returns:
        data: the voxel array, (X, Y, Z[, T]) in ``dtype`` (voxel axes as stored; the affine says
            where they point).
        affine: (4, 4) float64 voxel → world (RAS, mm) matrix.
    """
    import nibabel as nib

    image = nib.load(str(path))
    return np.asarray(image.get_fdata(dtype=np.float64), dtype=dtype), np.asarray(image.affine)


def write_nifti(
    path: PathLike, data: np.ndarray, affine: np.ndarray, header: object | None = None
) -> Path:
    """Write ``data`` (2-D to 4-D array) with ``affine`` ((4, 4), voxel → world) to ``path``.

    ``header`` (a nibabel ``Nifti1Header``) is copied when given, e.g. from the input volume;
    the data type is taken from ``data``. Returns the path.
    """
    import nibabel as nib

    data = np.asarray(data)
    if not 2 <= data.ndim <= 4:
        raise ValueError(f"data: expected a 2-D to 4-D array, got shape {data.shape}")
    affine = check_affine(affine)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    image = nib.Nifti1Image(data, affine, header=header)
    image.set_data_dtype(data.dtype)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))
    return path


def write_nifti_like(path: PathLike, data: np.ndarray, reference: PathLike) -> Path:
    """Write ``data`` with the affine and header of the NIfTI file ``reference`` (e.g. a
    prediction in the space of its input visit); the spatial shapes must agree."""
    import nibabel as nib

    ref = nib.load(str(reference))
    data = np.asarray(data)
    if data.shape[:3] != ref.shape[:3]:
        raise ValueError(
            f"data: expected the spatial shape {ref.shape[:3]} of {reference}, got {data.shape}"
        )
    return write_nifti(path, data, ref.affine, header=ref.header.copy())


def check_affine(affine: np.ndarray, name: str = "affine") -> np.ndarray:
    """``affine`` as a (4, 4) float64 array with last row (0, 0, 0, 1) and an invertible 3×3."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(f"{name}: expected a finite (4, 4) matrix, got shape {affine.shape}")
    if not np.allclose(affine[3], (0, 0, 0, 1)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"{name}: expected last row (0, 0, 0, 1) and an invertible 3x3 part")
    return affine


def same_affine(a: np.ndarray, b: np.ndarray, atol: float = _AFFINE_ATOL) -> bool:
    """Whether two affines agree to ``atol`` (mm)."""
    return bool(np.allclose(a, b, atol=atol, rtol=0.0))


def read_slice(path: PathLike) -> np.ndarray:
    """Read a 2-D image as (C, H, W) float32.

    PNG/JPEG/TIFF (Pillow): 8-bit values / 255, 16-bit / 65535, so in [0, 1]; grey images have
    C = 1, RGB C = 3 (alpha dropped). ``.npy``: a (H, W) or (C, H, W) array, unchanged.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        array = np.load(path).astype(np.float32)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise ValueError(f"{path}: expected a (H, W) or (C, H, W) array, got {array.shape}")
        return array
    from PIL import Image

    with Image.open(path) as image:
        mode = image.mode
        if mode in ("RGBA", "P", "CMYK", "YCbCr", "LA"):
            image = image.convert("RGB" if mode != "LA" else "L")
        array = np.asarray(image)
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    elif array.dtype in (np.uint16, np.int32) and mode.startswith("I"):
        array = array.astype(np.float32) / 65535.0
    else:
        array = array.astype(np.float32)
    return array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)


def read_mask(path: PathLike, require_nonempty: bool = True) -> np.ndarray:
    """A label mask from NIfTI, ``.npy`` or a grey image file as a uint8 array (stored values,
    rounded: 0 is background).

    Raises ValueError when ``require_nonempty`` and the mask is all zero.
    """
    path = Path(path)
    if path.name.endswith((".nii", ".nii.gz")):
        data = read_nifti(path)[0]
    elif path.suffix.lower() == ".npy":
        data = np.load(path)
    else:
        from PIL import Image

        with Image.open(path) as image:
            data = np.asarray(image.convert("L"))
    mask = np.rint(data).astype(np.uint8)
    if require_nonempty and not mask.any():
        raise ValueError(f"mask {path} is empty (all zeros); a non-empty mask is required here")
    return mask


@dataclass(frozen=True)
class ItkAffine:
    """An ITK ``MatrixOffsetTransformBase`` in LPS mm: ``p_moving = A·(p − c) + c + t``.

    Attributes:
        matrix: (3, 3) A. translation: (3,) t. center: (3,) c (the ``FixedParameters``).
    """

    matrix: np.ndarray
    translation: np.ndarray
    center: np.ndarray

    def homogeneous(self) -> np.ndarray:
        """The (4, 4) matrix of the map, acting on homogeneous LPS column vectors."""
        out = np.eye(4)
        out[:3, :3] = self.matrix
        out[:3, 3] = self.center + self.translation - self.matrix @ self.center
        return out


def read_itk_affine(path: PathLike) -> ItkAffine:
    """Read an ITK text transform file holding one 3-D affine (``Parameters``: 9 matrix entries,
    row-major, then 3 translations; ``FixedParameters``: the centre)."""
    text = Path(path).read_text()
    values = {}
    for key in ("Parameters", "FixedParameters"):
        match = re.search(rf"^{key}:\s*(.+)$", text, flags=re.MULTILINE)
        if match is None:
            raise ValueError(f"{path}: no '{key}:' line in the ITK transform file")
        values[key] = np.array([float(v) for v in match.group(1).split()])
    params, fixed = values["Parameters"], values["FixedParameters"]
    if params.shape != (12,) or fixed.shape != (3,):
        raise ValueError(
            f"{path}: expected 12 Parameters and 3 FixedParameters (a 3-D affine), got "
            f"{params.size} and {fixed.size}"
        )
    return ItkAffine(params[:9].reshape(3, 3), params[9:], fixed)


def normalise_intensity(
    image: np.ndarray, mask: np.ndarray | None = None, percentile: float = 99.5
) -> np.ndarray:
    """Divide by the ``percentile`` of the intensities inside ``mask`` (default: all non-zero
    voxels) and clip to [0, 1], as done for the open MS data; returns float32, same shape."""
    image = np.asarray(image, dtype=np.float32)
    region = image > 0 if mask is None else np.asarray(mask, dtype=bool)
    if region.shape != image.shape:
        raise ValueError(f"mask: expected the image shape {image.shape}, got {region.shape}")
    if not region.any():
        raise ValueError("mask: is empty (or the image is all zero); nothing to normalise by")
    scale = np.percentile(image[region], percentile)
    if not scale > 0:
        raise ValueError(f"image: the {percentile} percentile inside the mask is {scale}, not > 0")
    return np.clip(image / np.float32(scale), 0.0, 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Map [0, 1] intensities to uint8 0–255 (clipped, rounded)."""
    return np.rint(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def write_panel(
    path: PathLike,
    input: np.ndarray,
    predicted: np.ndarray,
    truth: np.ndarray,
    difference: np.ndarray | None = None,
    difference_range: float = 0.5,
    zoom: int = 2,
    titles: tuple[str, str, str, str] = ("input", "predicted", "truth", "difference"),
) -> Path:
    """Write a PNG of four panels side by side: input, predicted, truth, difference.

    Args:
        input, predicted, truth: (H, W) or (1, H, W) intensities in [0, 1] (clipped for display).
        difference: (H, W) signed map; defaults to ``predicted − truth``. Shown red where
            positive and blue where negative, saturating at ±``difference_range``.
        zoom: integer upscaling of every panel (nearest neighbour), for small images.
        titles: the four captions drawn above the panels.
    """
    from PIL import Image, ImageDraw

    arrays = [_panel_array(a, name) for a, name in ((input, "input"), (predicted, "predicted"))]
    arrays.append(_panel_array(truth, "truth"))
    shape = arrays[0].shape
    for name, array in zip(("predicted", "truth"), arrays[1:], strict=True):
        if array.shape != shape:
            raise ValueError(f"{name}: expected shape {shape} like input, got {array.shape}")
    diff = arrays[1] - arrays[2] if difference is None else _panel_array(difference, "difference")
    if diff.shape != shape:
        raise ValueError(f"difference: expected shape {shape} like input, got {diff.shape}")
    if not difference_range > 0:
        raise ValueError(f"difference_range: expected > 0, got {difference_range}")
    if not isinstance(zoom, int) or zoom < 1:
        raise ValueError(f"zoom: expected a positive int, got {zoom!r}")
    grey = [np.repeat(to_uint8(a)[..., None], 3, axis=-1) for a in arrays]
    signed = np.clip(diff / difference_range, -1.0, 1.0)
    red, blue = np.clip(signed, 0, 1), np.clip(-signed, 0, 1)
    coloured = np.stack([1 - blue, 1 - red - blue, 1 - red], axis=-1)  # white at 0
    tiles = [*grey, to_uint8(np.clip(coloured, 0, 1))]
    tiles = [np.kron(t, np.ones((zoom, zoom, 1), dtype=np.uint8)) for t in tiles]
    gap, header = 4, 14
    height, width = tiles[0].shape[:2]
    canvas = np.full((height + header, 4 * width + 3 * gap, 3), 255, dtype=np.uint8)
    for k, tile in enumerate(tiles):
        canvas[header:, k * (width + gap) : k * (width + gap) + width] = tile
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for k, title in enumerate(titles):
        draw.text((k * (width + gap) + 2, 1), title, fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _panel_array(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a (H, W) or (1, H, W) array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return array
