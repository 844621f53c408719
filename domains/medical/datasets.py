"""Named datasets of the medical domain: download registrations and loaders.

``sciflow data fetch <name>`` (registered on import) downloads into
``$SCIFLOW_DATA_DIR/medical/<name>/``:

- ``backgrounds``: the SynthProg anatomy. ``skimage_retina.jpg`` (scikit-image v0.26.0, CC0; its
  SHA-256 is the one in scikit-image's own data registry) and the MNI ICBM152 2009a T1/GM/WM maps
  (nilearn 0.14.1, ``nilearn/datasets/data/``; digests of the files in that wheel).
- ``open_ms_longitudinal``: the 4 patients of ``muschellij2/open_ms_data`` @ 65704901 (CC-BY,
  Lesjak et al. 2016) with both raw FLAIR volumes, their ITK transforms to the common space, and
  that space's lesion-change and brain masks. Digests are those of the snapshot copied into the
  shared data folder from that commit.

Loaders (all intensities in [0, 1], times in months):

- :func:`load_ms_pairs`: the 163 axial 128×128 slice pairs of
  ``open_ms_longitudinal/derived/ms_flair_pairs_axial128.npz`` (Track R of the methods doc).
- :func:`load_ms_volumes`: the raw FLAIR pairs resampled onto the common-space grid (trilinear,
  ITK transform as the data README describes), normalised by the 99.5th percentile in the brain.
- :func:`load_dataset`: any of :data:`DATASETS` by name (used by the datamodule).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sciflow_domains.medical.data import DAYS_PER_MONTH, LongitudinalDataset, Series, Visit
from sciflow_domains.medical.io import (
    ItkAffine,
    normalise_intensity,
    read_itk_affine,
    read_mask,
    read_nifti,
)
from sciflow_domains.medical.synthprog import SynthProgConfig, generate
from scipy import ndimage

from sciflow.data import DatasetSpec, RemoteFile, data_dir, get_dataset, list_datasets
from sciflow.data import register_dataset as _register_dataset

#: Names accepted by :func:`load_dataset`.
DATASETS = ("synthprog_ga", "synthprog_ms", "synthprog_tumour", "ms_flair_pairs")
MS_PATIENTS = ("patient01", "patient03", "patient12", "patient19")
MS_PAIRS_FILE = "derived/ms_flair_pairs_axial128.npz"

_SKIMAGE = "https://raw.githubusercontent.com/scikit-image/scikit-image/v0.26.0/skimage/data/"
_NILEARN = "https://raw.githubusercontent.com/nilearn/nilearn/0.14.1/nilearn/datasets/data/"
_OPEN_MS = (
    "https://raw.githubusercontent.com/muschellij2/open_ms_data/"
    "65704901f60650824565aa5a4818611aa89716f4/longitudinal/"
)
_BACKGROUND_FILES = {
    "skimage_retina.jpg": (
        _SKIMAGE + "retina.jpg",
        "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
    ),
    "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz": (
        _NILEARN + "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
    ),
    "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz": (
        _NILEARN + "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
        "97a5ca69bd24db37a9cb7b32525e1733a209af904129bf1cd36da06d24243bed",
    ),
    "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz": (
        _NILEARN + "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
        "382d92812de4744f9c86c7a0e4f680dc317a0a50e4da1f0153618a6798c7b7db",
    ),
}
#: Where each file of an MS patient goes in the dataset folder (``common_space`` is named
#: ``coregistered`` upstream).
_OPEN_MS_PATHS = {
    "flair1": "raw/{patient}/study1_FLAIR.nii.gz",
    "xfm1": "raw/{patient}/study1_FLAIR_to_common_space.txt",
    "flair2": "raw/{patient}/study2_FLAIR.nii.gz",
    "xfm2": "raw/{patient}/study2_FLAIR_to_common_space.txt",
    "gt": "common_space/{patient}/gt.nii.gz",
    "brainmask": "common_space/{patient}/brainmask.nii.gz",
}
_OPEN_MS_SHA256 = {
    "patient01": {
        "flair1": "3a2ab438704776ad75b67cd8609740a14782cc590b26fc695dff4216ad67d231",
        "xfm1": "ea7ff438fc338334e6545fed7ece9be5d020422a0f48434f643fcb953f5025c5",
        "flair2": "d3bb8754526f291e787f522520af7011d5bcfadd121f7d1e8cad16e4daf70f27",
        "xfm2": "9ab1ab52c491ed6b25429669722ed2a472f4d0b2a239eef46f3aeb10c9eaf282",
        "gt": "04c5ac5810369a6048672987e2af4593a13099cdbf4c505fd2ba79abec943425",
        "brainmask": "0b56f5ec20b031484b594495f69a73040514a6dbf278cd4f10a7bd5717f47080",
    },
    "patient03": {
        "flair1": "bed2dc7a40f812ef89434d6aaf0cf83116a0eef3c903422e3732a74b3e1bfbd8",
        "xfm1": "3059fd87343860ddb0c15aaefb9c34eea4a792567a0744ee74f543bb921969a8",
        "flair2": "e0ec8ec77763a5fb7177325bb6c6372cb6e744242b9700bc9fc0ba00a27aeff0",
        "xfm2": "7585bdfd18027559a9842948ca51909a8d7056a8a07ed33878fca96f4fea3e4f",
        "gt": "0153288190aeddce5aee1a4daeb1ed00b5bdc821029367a6d97374f0e6efb761",
        "brainmask": "5a3083395e16780cd15206d4dc9e04685addd43ccf77c36ad6d22f8726c9a21b",
    },
    "patient12": {
        "flair1": "c0c030d766062305d4f6215d2fe7706f995f98bb8234de246dd506cdcbda2734",
        "xfm1": "ce0d04053ed198011c3ac4e40fd014fea5c3bf44af94821223bf261ef7b89a18",
        "flair2": "38a68c69ed8a58db14055d0a39cb901dedb0d2cac9f1aa059136ada212b2f805",
        "xfm2": "805b6a8b3d327fb597cbe84badab1b4a7136cd0dde457a62b217467982f02d93",
        "gt": "0e51c3b4c5ede5fb8f947a92dc23494152489efd288924081394e3a29c991724",
        "brainmask": "ebf6a3c9503125d7c29d254105b6b916b6f69310061ff5da8a986869b3eb4a4c",
    },
    "patient19": {
        "flair1": "7810456d4881173d8c0f5ee1fc3eb1a14e84d6cf7418f0b95fbebd5bb0a4eb5b",
        "xfm1": "32d273589f1e6b110ca10e52e0b4a560f47132c3c7a51d402bf77fcb35311e3d",
        "flair2": "524371988486b5cbd758d82d873a883a9ea3c87177fb209c82babd4309d3f76f",
        "xfm2": "5c99d449262ce311e8c69cfa8d6662cb15bdedfa44e9213324c60a3841d4fb7c",
        "gt": "e044bfe86af22fa574e4ecda4357e437ddc56928d330a06853934bee59e29fb7",
        "brainmask": "5c774ba326684507f655fff87979ebdfe32ddd14ce789e80798f51bf7b60efbf",
    },
}
#: Days between the two studies (``days_between_studies`` of the database's demographics).
MS_DAYS_BETWEEN = {"patient01": 203.0, "patient03": 671.0, "patient12": 81.0, "patient19": 228.0}


def dataset_specs() -> list[DatasetSpec]:
    """The ``backgrounds`` and ``open_ms_longitudinal`` download specs."""
    backgrounds = tuple(
        RemoteFile(url=url, sha256=digest, relative_path=name)
        for name, (url, digest) in _BACKGROUND_FILES.items()
    )
    open_ms = []
    for patient, digests in _OPEN_MS_SHA256.items():
        for key, digest in digests.items():
            path = _OPEN_MS_PATHS[key].format(patient=patient)
            url = _OPEN_MS + path.replace("common_space/", "coregistered/")
            open_ms.append(RemoteFile(url=url, sha256=digest, relative_path=path))
    return [
        DatasetSpec(
            "backgrounds",
            "medical",
            backgrounds,
            "SynthProg anatomy: fundus photograph and MNI ICBM152 2009a T1/GM/WM (1 mm)",
            "retina.jpg CC0 1.0 (Häggström 2014, via scikit-image); MNI ICBM152 2009a: "
            "permissive McGill notice, cite Fonov et al. 2009 and 2011",
        ),
        DatasetSpec(
            "open_ms_longitudinal",
            "medical",
            tuple(open_ms),
            "longitudinal MS FLAIR pairs (4 patients, raw + transforms + change masks)",
            "CC-BY; cite Lesjak et al., Neuroinformatics 2016",
        ),
    ]


def register() -> None:
    """Register :func:`dataset_specs` (a spec already registered unchanged is left alone)."""
    for spec in dataset_specs():
        if spec.name in list_datasets() and get_dataset(spec.name) == spec:
            continue
        _register_dataset(spec)


def ms_dir(root: str | os.PathLike | None = None) -> Path:
    """``<root>/medical/open_ms_longitudinal`` (``root`` defaults to ``$SCIFLOW_DATA_DIR``)."""
    return (data_dir() if root is None else Path(root)) / "medical" / "open_ms_longitudinal"


def load_ms_pairs(root: str | os.PathLike | None = None) -> LongitudinalDataset:
    """The real axial MS slice pairs: one series per (patient, slice), two visits each.

    Visit 0 at t = 0 (no mask), visit 1 at ``days_between / DAYS_PER_MONTH`` months with the
    lesion-change mask; images (1, 128, 128) in [0, 1]; ``mask_meaning="change"``; no split
    stored (4 patients: use leave-one-patient-out).
    """
    path = ms_dir(root) / MS_PAIRS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"MS slice pairs not found at {path}; set SCIFLOW_DATA_DIR to the folder holding "
            "medical/open_ms_longitudinal (the derived file is described in its README)"
        )
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    ids = [str(p) for p in arrays["patient_ids"]]
    series = []
    for n in range(len(arrays["x_study1"])):
        patient = ids[int(arrays["patient_index"][n])]
        months = float(arrays["days_between"][n]) / DAYS_PER_MONTH
        first = Visit(arrays["x_study1"][n][None] / 255.0, 0.0)
        second = Visit(arrays["x_study2"][n][None] / 255.0, months, arrays["change_mask"][n])
        name = f"{patient}/z={int(arrays['slice_z'][n])}"
        series.append(Series(patient, (first, second), name=name))
    return LongitudinalDataset(series, mask_meaning="change", name="ms_flair_pairs")


def load_ms_volumes(
    root: str | os.PathLike | None = None, patients: tuple[str, ...] = MS_PATIENTS
) -> LongitudinalDataset:
    """The raw FLAIR pairs of ``patients`` on their common-space grid, one 3-D series each.

    Each visit holds a (1, X, Y, Z) image normalised by the 99.5th percentile inside the brain
    mask, the grid's affine; visit 1 holds the lesion-change mask (must be non-empty).
    """
    folder = ms_dir(root)
    series = []
    for patient in patients:
        if patient not in MS_DAYS_BETWEEN:
            raise ValueError(
                f"patients: {patient!r} has no raw FLAIR pair; choose from {MS_PATIENTS}"
            )
        common = folder / "common_space" / patient
        if not (common / "brainmask.nii.gz").is_file():
            raise FileNotFoundError(
                f"{common / 'brainmask.nii.gz'} not found; run `sciflow data fetch "
                "open_ms_longitudinal` or set SCIFLOW_DATA_DIR"
            )
        brain, grid = read_nifti(common / "brainmask.nii.gz")
        change = read_mask(common / "gt.nii.gz", require_nonempty=True)
        visits = []
        for k, study in enumerate(("study1", "study2")):
            raw, raw_affine = read_nifti(folder / "raw" / patient / f"{study}_FLAIR.nii.gz")
            transform = read_itk_affine(
                folder / "raw" / patient / f"{study}_FLAIR_to_common_space.txt"
            )
            image = resample_itk(raw, raw_affine, transform, grid, brain.shape)
            image = normalise_intensity(image, brain > 0.5)
            months = k * MS_DAYS_BETWEEN[patient] / DAYS_PER_MONTH
            visits.append(Visit(image[None], months, change if k else None, grid))
        series.append(Series(patient, tuple(visits), name=patient))
    return LongitudinalDataset(series, mask_meaning="change", name="ms_flair_volumes")


def resample_itk(
    moving: np.ndarray,
    moving_affine: np.ndarray,
    transform: ItkAffine,
    grid_affine: np.ndarray,
    grid_shape: tuple[int, ...],
    order: int = 1,
) -> np.ndarray:
    """Resample ``moving`` (X', Y', Z') onto a fixed grid through an ITK fixed → moving transform.

    Grid voxel → RAS (``grid_affine``) → LPS (flip x, y) → ``transform`` → RAS → moving voxel
    (inverse ``moving_affine``); interpolation of ``order`` (1: trilinear), 0 outside.
    Returns a ``grid_shape`` float32 array.
    """
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS
    matrix = np.linalg.inv(moving_affine) @ flip @ transform.homogeneous() @ flip @ grid_affine
    values = ndimage.affine_transform(
        np.asarray(moving, dtype=np.float32),
        matrix[:3, :3],
        offset=matrix[:3, 3],
        output_shape=tuple(grid_shape),
        order=order,
        mode="constant",
        cval=0.0,
    )
    return values.astype(np.float32)


def load_dataset(
    name: str,
    config: str | os.PathLike | None = None,
    n_subjects: int | None = None,
    seed: int = 0,
    resolution: int = 64,
    root: str | os.PathLike | None = None,
) -> LongitudinalDataset:
    """Load dataset ``name`` (one of :data:`DATASETS`).

    SynthProg names generate a cohort from ``config`` (a YAML path; default: built-in defaults)
    with ``kind`` from the name and ``n_subjects``/``resolution`` overriding it, using ``seed``.
    ``ms_flair_pairs`` reads the real slice pairs under ``root`` (default ``$SCIFLOW_DATA_DIR``).
    """
    if name not in DATASETS:
        raise ValueError(f"name: expected one of {DATASETS}, got {name!r}")
    if name == "ms_flair_pairs":
        return load_ms_pairs(root)
    overrides = {"kind": name.removeprefix("synthprog_"), "resolution": resolution}
    if n_subjects is not None:
        overrides["n_subjects"] = n_subjects
    if config is None:
        cfg = SynthProgConfig(**overrides)
    else:
        cfg = SynthProgConfig.from_yaml(config, **overrides)
    return generate(cfg, seed=seed).to_longitudinal()


register()
