"""Per-crystal features of the CDVAE generation protocol, computed once and cacheable on disk.

* Structure fingerprint: matminer ``CrystalNNFingerprint.from_preset("ops")`` of every site,
  averaged over sites (61 numbers). Not rescaled. This is the slow part (~0.07 s per 5-atom
  Perov-5 crystal, ~0.2 s for 20-atom MP-20 crystals, on one core).
* Composition fingerprint: matminer ``ElementProperty.from_preset("magpie", impute_nan=False)``
  (132 numbers, raw; standardised with CDVAE's fixed statistics only when distances are taken,
  :func:`scale_composition_fingerprints`). ``impute_nan=False`` matches the matminer the reference
  used (newer matminer imputes by default); the standardisation then maps NaN to 0, as CDVAE does.
* Density (g/cm³), number of distinct elements, structural and compositional validity.

A fingerprint that raises gives a NaN row (counted, and left out of the coverage as in the
reference). So does a cell of less than :data:`MIN_FINGERPRINT_VOLUME_PER_ATOM` (1 Å³ per atom;
real crystals have 5 Å³ or more): CrystalNN's neighbour search grows as 1/volume, and a collapsed
generated lattice would otherwise take minutes and gigabytes per crystal. The reference tries
such cells anyway; generated ones are practically never structurally valid. Both matminer
featurizers read only files bundled with matminer; nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Structure
from sciflow_domains.crystal._magpie_scaler import MAGPIE_MEANS, MAGPIE_STDS
from sciflow_domains.crystal.metrics_validity import (
    composition_validity,
    structure_validity,
)
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

STRUCT_FP_DIM = 61
COMP_FP_DIM = 132
MIN_FINGERPRINT_VOLUME_PER_ATOM = 1.0  # Å³


@functools.lru_cache(maxsize=1)
def _site_featurizer():
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

    return CrystalNNFingerprint.from_preset("ops")


@functools.lru_cache(maxsize=1)
def _comp_featurizer():
    from matminer.featurizers.composition.composite import ElementProperty

    return ElementProperty.from_preset("magpie", impute_nan=False)


def structure_fingerprint(structure: Structure) -> np.ndarray:
    """Site-averaged CrystalNN "ops" fingerprint (61,) of ``structure``; raises on failure."""
    featurizer = _site_featurizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CrystalNN warns about missing oxidation states
        sites = [featurizer.featurize(structure, i) for i in range(len(structure))]
    return np.asarray(sites, dtype=float).mean(axis=0)


def composition_fingerprint(composition: Composition | Structure) -> np.ndarray:
    """Raw Magpie ``ElementProperty`` vector (132,) of a composition (NaN where data is missing)."""
    if isinstance(composition, Structure):
        composition = composition.composition
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(_comp_featurizer().featurize(composition), dtype=float)


def scale_composition_fingerprints(fps: np.ndarray) -> np.ndarray:
    """CDVAE's standardisation: ``(x - mean) / std`` with its fixed statistics, NaN -> 0."""
    fps = np.asarray(fps, dtype=float)
    if fps.shape[-1] != COMP_FP_DIM:
        raise ValueError(
            f"composition fingerprints must have {COMP_FP_DIM} columns, got {fps.shape}"
        )
    scaled = (fps - np.asarray(MAGPIE_MEANS)) / np.asarray(MAGPIE_STDS)
    return np.where(np.isnan(scaled), 0.0, scaled)


@dataclasses.dataclass
class CrystalFeatures:
    """Features of n crystals (arrays of length n); rows of a failed fingerprint are NaN."""

    struct_fp: np.ndarray  # (n, 61)
    comp_fp: np.ndarray  # (n, 132), raw Magpie
    density: np.ndarray  # (n,) g/cm³
    n_elements: np.ndarray  # (n,)
    struct_valid: np.ndarray  # (n,) bool
    comp_valid: np.ndarray  # (n,) bool

    def __len__(self) -> int:
        return len(self.density)

    @property
    def valid(self) -> np.ndarray:
        return self.struct_valid & self.comp_valid

    @property
    def fingerprint_ok(self) -> np.ndarray:
        return ~(np.isnan(self.struct_fp).any(axis=1) | np.isnan(self.comp_fp).all(axis=1))

    def subset(self, index) -> CrystalFeatures:
        return CrystalFeatures(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` (with the matminer/pymatgen versions) for reuse across evaluations."""
        from importlib.metadata import version

        meta = {p: version(p) for p in ("matminer", "pymatgen", "smact")}
        arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        path = Path(path)
        np.savez_compressed(path, meta=json.dumps(meta), **arrays)
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load(cls, path: str | os.PathLike) -> CrystalFeatures:
        with np.load(Path(path), allow_pickle=False) as npz:
            missing = [f.name for f in dataclasses.fields(cls) if f.name not in npz]
            if missing:
                raise ValueError(f"{path}: not a CrystalFeatures file (missing {missing})")
            log.info("loaded crystal features from %s (%s)", path, npz["meta"])
            return cls(*(npz[f.name] for f in dataclasses.fields(cls)))


def _features_one(args) -> tuple:
    structure, fingerprints, oxidation_set = args
    struct_fp = np.full(STRUCT_FP_DIM, np.nan)
    comp_fp = np.full(COMP_FP_DIM, np.nan)
    collapsed = not structure.volume >= MIN_FINGERPRINT_VOLUME_PER_ATOM * len(structure)
    if fingerprints and not collapsed:
        try:
            struct_fp = structure_fingerprint(structure)
            comp_fp = composition_fingerprint(structure)
        except Exception as err:  # the reference drops crystals whose fingerprint fails
            log.debug("fingerprint failed for %s: %s", structure.composition.reduced_formula, err)
            struct_fp = np.full(STRUCT_FP_DIM, np.nan)
    try:
        density = float(structure.density)
    except (ZeroDivisionError, ValueError):  # a degenerate generated lattice
        density = np.nan
    return (
        struct_fp,
        comp_fp,
        density,
        len(structure.composition.elements),
        structure_validity(structure),
        composition_validity(structure, oxidation_set=oxidation_set),
    )


def compute_features(
    structures: Sequence[Structure],
    *,
    fingerprints: bool = True,
    oxidation_set: str = "smact14",
    n_jobs: int = 1,
    progress: bool | None = None,
    desc: str = "crystal features",
) -> CrystalFeatures:
    """:class:`CrystalFeatures` of ``structures`` (``fingerprints=False``: NaN fingerprints, fast).

    ``n_jobs > 1`` spreads the structures over that many processes.
    """
    if len(structures) == 0:
        raise ValueError("compute_features: no structures given")
    for i, s in enumerate(structures):
        if not isinstance(s, Structure):
            raise TypeError(f"structures[{i}] must be a pymatgen Structure, got {type(s).__name__}")
    jobs = [(s, fingerprints, oxidation_set) for s in structures]
    bar = dict(total=len(jobs), desc=desc, disable=None if progress is None else not progress)
    if n_jobs > 1:
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            chunk = max(1, len(jobs) // (8 * n_jobs))
            rows = list(tqdm(pool.map(_features_one, jobs, chunksize=chunk), **bar))
    else:
        rows = [_features_one(j) for j in tqdm(jobs, **bar)]
    cols = list(zip(*rows, strict=True))
    feats = CrystalFeatures(
        struct_fp=np.stack(cols[0]),
        comp_fp=np.stack(cols[1]),
        density=np.asarray(cols[2], dtype=float),
        n_elements=np.asarray(cols[3], dtype=int),
        struct_valid=np.asarray(cols[4], dtype=bool),
        comp_valid=np.asarray(cols[5], dtype=bool),
    )
    if fingerprints and not feats.fingerprint_ok.all():
        log.warning("%d of %d fingerprints failed", (~feats.fingerprint_ok).sum(), len(feats))
    return feats
