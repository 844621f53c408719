"""CDVAE evaluation protocol for crystal generation (the numbers CDVAE, DiffCSP, FlowMM and CrysBFN
report), on pymatgen ``Structure``s; every result is a JSON-serialisable dict.

* CSP (:mod:`.metrics_csp`): :func:`evaluate_csp` / :func:`match_rate_and_rmse`, one sample or
  best-of-k candidates per test composition, ``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)``.
* Ab initio generation (:mod:`.metrics_generation`): :func:`evaluate_generation` with validity,
  COV-R/COV-P at the dataset thresholds and Wasserstein distances of density and #elements; test-set
  features can be cached with :func:`compute_features` + :meth:`CrystalFeatures.save`.
* Validity (:mod:`.metrics_validity`): structural (distances >= 0.5 Å, volume >= 0.1 Å³) and
  compositional (SMACT charge neutrality + Pauling electronegativity).

Not covered: the formation-energy Wasserstein distance (needs CDVAE's property GNNs), the CDVAE
diversity metrics, and stability/S.U.N. (needs a relaxation model and a convex hull).
"""

from sciflow_domains.crystal.metrics_csp import (
    CSP_TOLERANCES,
    evaluate_csp,
    make_matcher,
    match_rate_and_rmse,
    rms_distance,
)
from sciflow_domains.crystal.metrics_features import (
    CrystalFeatures,
    composition_fingerprint,
    compute_features,
    scale_composition_fingerprints,
    structure_fingerprint,
)
from sciflow_domains.crystal.metrics_generation import (
    COV_CUTOFFS,
    cov_cutoffs,
    coverage,
    density_wdist,
    evaluate_generation,
    num_elements_wdist,
)
from sciflow_domains.crystal.metrics_validity import (
    composition_validity,
    min_interatomic_distance,
    structure_validity,
    validity,
    validity_rates,
)

__all__ = [
    "COV_CUTOFFS",
    "CSP_TOLERANCES",
    "CrystalFeatures",
    "composition_fingerprint",
    "composition_validity",
    "compute_features",
    "cov_cutoffs",
    "coverage",
    "density_wdist",
    "evaluate_csp",
    "evaluate_generation",
    "make_matcher",
    "match_rate_and_rmse",
    "min_interatomic_distance",
    "num_elements_wdist",
    "rms_distance",
    "scale_composition_fingerprints",
    "structure_fingerprint",
    "structure_validity",
    "validity",
    "validity_rates",
]
