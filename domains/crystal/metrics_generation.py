"""Ab initio generation metrics of the CDVAE protocol: validity, COV-R/COV-P, Wasserstein distances.

* Validity (:mod:`.metrics_validity`) over all generated crystals.
* Coverage over all generated crystals with a fingerprint (failed fingerprints count in the COV-P
  denominator, as in the reference): Euclidean distances between structure fingerprints (raw) and
  between standardised composition fingerprints (:mod:`.metrics_features`). As in the reference
  code, the structure and composition nearest neighbours are taken independently:
  COV-R = share of test crystals whose nearest generated structure fingerprint is within
  ``struct_cutoff`` *and* whose nearest generated composition fingerprint is within
  ``comp_cutoff``; COV-P the same with the roles swapped, over all generated crystals.
  Also reported: the mean nearest-neighbour distances (CDVAE's AMSD/AMCD).
* Wasserstein-1 distances (``scipy.stats.wasserstein_distance``) between the valid generated
  crystals (optionally a random subset of ``n_samples``; the papers use 1 000 of 10 000) and the
  test set, of density (g/cm³) and of the number of distinct elements. The formation-energy
  distance of the papers needs CDVAE's property GNNs and is not computed here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure
from sciflow_domains.crystal.metrics_features import (
    CrystalFeatures,
    compute_features,
    scale_composition_fingerprints,
)
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance

log = logging.getLogger(__name__)

# (struct_cutoff, comp_cutoff) of CDVAE's compute_metrics.py (COV_Cutoffs).
COV_CUTOFFS: dict[str, tuple[float, float]] = {
    "perov_5": (0.2, 4.0),
    "carbon_24": (0.2, 4.0),
    "mp_20": (0.4, 10.0),
}
_ALIASES = {"perovskite": "perov_5", "perov5": "perov_5", "carbon": "carbon_24",
            "carbon24": "carbon_24", "mp20": "mp_20"}  # fmt: skip


def cov_cutoffs(dataset: str) -> tuple[float, float]:
    """(struct_cutoff, comp_cutoff) of a dataset (CDVAE's names ``perovskite``/``carbon``/``mp20``
    are accepted too)."""
    key = _ALIASES.get(dataset.lower(), dataset.lower())
    if key not in COV_CUTOFFS:
        raise ValueError(
            f"no COV thresholds for dataset {dataset!r}; known: {', '.join(COV_CUTOFFS)} "
            "(or pass struct_cutoff and comp_cutoff explicitly)"
        )
    return COV_CUTOFFS[key]


def _min_dists(a: np.ndarray, b: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``a`` its distance to the nearest row of ``b``, and per row of ``b`` to ``a``."""
    to_b = np.empty(len(a))
    to_a = np.full(len(b), np.inf)
    for start in range(0, len(a), chunk):
        d = cdist(a[start : start + chunk], b)
        to_b[start : start + chunk] = d.min(axis=1)
        np.minimum(to_a, d.min(axis=0), out=to_a)
    return to_b, to_a


def coverage(
    generated: CrystalFeatures,
    test: CrystalFeatures,
    struct_cutoff: float,
    comp_cutoff: float,
) -> dict[str, float | None]:
    """COV-R, COV-P and mean nearest-neighbour distances from precomputed fingerprints."""
    gen, ref = generated.subset(generated.fingerprint_ok), test.subset(test.fingerprint_ok)
    if len(ref) == 0:
        raise ValueError("coverage: no test crystal has a fingerprint")
    if len(ref) < len(test):
        log.warning("coverage: %d test crystals without fingerprint left out", len(test) - len(ref))
    if len(gen) == 0:
        empty = dict.fromkeys(("amsd_recall", "amsd_precision", "amcd_recall", "amcd_precision"))
        return {"cov_recall": 0.0, "cov_precision": 0.0, **empty}
    s_prec, s_rec = _min_dists(gen.struct_fp, ref.struct_fp)
    c_prec, c_rec = _min_dists(
        scale_composition_fingerprints(gen.comp_fp), scale_composition_fingerprints(ref.comp_fp)
    )
    recall = (s_rec <= struct_cutoff) & (c_rec <= comp_cutoff)
    precision = (s_prec <= struct_cutoff) & (c_prec <= comp_cutoff)
    return {
        "cov_recall": float(recall.mean()),
        "cov_precision": float(precision.sum() / len(generated)),
        "amsd_recall": float(s_rec.mean()),
        "amsd_precision": float(s_prec.mean()),
        "amcd_recall": float(c_rec.mean()),
        "amcd_precision": float(c_prec.mean()),
    }


def _as_values(items, attribute) -> np.ndarray:
    if len(items) == 0:
        raise ValueError("Wasserstein distance of an empty set")
    if isinstance(items[0], Structure):
        return np.asarray([attribute(s) for s in items], dtype=float)
    return np.asarray(items, dtype=float)


def density_wdist(generated, test) -> float:
    """W1 distance of densities (g/cm³); each argument: Structures or density values."""
    get = lambda s: s.density  # noqa: E731
    return float(wasserstein_distance(_as_values(generated, get), _as_values(test, get)))


def num_elements_wdist(generated, test) -> float:
    """W1 distance of the numbers of distinct elements; Structures or counts."""
    get = lambda s: len(s.composition.elements)  # noqa: E731
    return float(wasserstein_distance(_as_values(generated, get), _as_values(test, get)))


def _features(items, name: str, **kwargs) -> CrystalFeatures:
    if isinstance(items, CrystalFeatures):
        return items
    if len(items) == 0:
        raise ValueError(f"evaluate_generation: no {name} structures given")
    return compute_features(items, desc=f"{name} features", **kwargs)


def evaluate_generation(
    generated: Sequence[Structure] | CrystalFeatures,
    test: Sequence[Structure] | CrystalFeatures,
    dataset: str | None = None,
    *,
    struct_cutoff: float | None = None,
    comp_cutoff: float | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    with_coverage: bool = True,
    oxidation_set: str = "smact14",
    n_jobs: int = 1,
    progress: bool | None = None,
) -> dict[str, float | int | None]:
    """The ab initio table: validity, COV-R/COV-P (+ AMSD/AMCD), W1 of density and #elements.

    ``test`` may be precomputed :class:`CrystalFeatures` (``compute_features(test).save(path)``
    once, ``CrystalFeatures.load(path)`` afterwards), as may ``generated``. Thresholds come from
    ``dataset`` (see :data:`COV_CUTOFFS`) unless both cutoffs are given. ``n_samples``: draw that
    many valid crystals (seeded) for the Wasserstein distances, as the papers do (1 000); fewer
    valid crystals than that use all, with a warning. ``with_coverage=False`` skips the
    fingerprints (fast). Values are None where undefined (no valid crystal).
    """
    if with_coverage and (struct_cutoff is None or comp_cutoff is None):
        if dataset is None:
            raise ValueError(
                f"evaluate_generation: give dataset (one of {', '.join(COV_CUTOFFS)}) "
                "or both struct_cutoff and comp_cutoff"
            )
        ds, dc = cov_cutoffs(dataset)
        struct_cutoff = ds if struct_cutoff is None else struct_cutoff
        comp_cutoff = dc if comp_cutoff is None else comp_cutoff
    kw = dict(fingerprints=with_coverage, oxidation_set=oxidation_set, n_jobs=n_jobs)
    gen = _features(generated, "generated", progress=progress, **kw)
    ref = _features(test, "test", progress=progress, **kw)
    out: dict[str, float | int | None] = {
        "n_generated": len(gen),
        "n_test": len(ref),
        "struct_valid": float(gen.struct_valid.mean()),
        "comp_valid": float(gen.comp_valid.mean()),
        "valid": float(gen.valid.mean()),
    }
    valid_idx = np.flatnonzero(gen.valid)
    if n_samples is not None and len(valid_idx) > n_samples:
        valid_idx = np.random.default_rng(seed).choice(valid_idx, n_samples, replace=False)
    elif n_samples is not None and len(valid_idx) < n_samples:
        log.warning("only %d valid crystals for n_samples=%d; using all", len(valid_idx), n_samples)
    out["n_wdist_samples"] = len(valid_idx)
    has = len(valid_idx) > 0
    out["wdist_density"] = density_wdist(gen.density[valid_idx], ref.density) if has else None
    out["wdist_num_elems"] = (
        num_elements_wdist(gen.n_elements[valid_idx], ref.n_elements) if has else None
    )
    if with_coverage:
        out.update(coverage(gen, ref, struct_cutoff, comp_cutoff))
        out["struct_cutoff"], out["comp_cutoff"] = float(struct_cutoff), float(comp_cutoff)
        out["n_fingerprint_failed"] = int((~gen.fingerprint_ok).sum())
        out["n_test_fingerprint_failed"] = int((~ref.fingerprint_ok).sum())
    return out
