"""Offline evaluation of generated protein backbones (CPU only, no structure predictor).

What :func:`evaluate_backbones` computes, following the "small but honest benchmark" of the
protein methods report (ReQFlow's metrics, minus everything that needs ESMFold or the PDB):

* geometry: consecutive Cα–Cα distances within 3.8 ± 0.1 Å, Cα clash rate, radius of gyration
  normalised as Rg / L^0.4, compared with a reference set;
* backbone dihedrals φ/ψ and the fraction that falls in Ramachandran regions *derived from the
  reference chains* (a 2-D histogram; allowed = the densest bins holding 98 % of the mass);
* secondary structure from pydssp (3 states, DSSP-like, from N, Cα, C, O): helix/strand/coil
  fractions, their L1 distance to the reference, the fraction of samples with any strand (a
  run of >= 2 strand residues);
* diversity (mean pairwise TM-score among samples of equal length, TM-align via ``tmtools``)
  and the number of single-linkage clusters at TM ≥ 0.5; novelty (max TM-score to training
  chains within ±20 % of the sample's length);
* a designability *proxy* from ProteinMPNN (:mod:`.designability`): mean per-residue NLL of
  sequences it samples at temperature 0.1, and the composition entropy of those sequences. Read
  them together: on random backbones ProteinMPNN designs near poly-proline with a *lower* NLL
  than on real chains, which only the low composition entropy gives away;
* scRMSD and the designable fraction only when the caller passes a ``structure_predictor``
  (``sequence -> (L, 3) Cα``); otherwise the result says plainly that they were not computed.

Inputs are numpy arrays (or :class:`~.io.Backbone`), outputs plain floats and a flat dict that
``json.dumps`` accepts (NaN is reported as ``None``). Angles are in radians, distances in Å.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sciflow_domains.protein.frames import backbone_from_frames
from sciflow_domains.protein.io import Backbone, find_breaks
from tqdm import tqdm

CA_CA_IDEAL = 3.8
CA_CA_TOLERANCE = 0.1
CLASH_DISTANCE = 3.0
CLASH_MIN_SEPARATION = 3
RG_EXPONENT = 0.4
#: Mean Rg / L^0.4 (Å) of the 418 break-free bundled chains of 40–300 residues (sd 0.24).
DATA_RG_NORM = 2.06
RAMA_BINS = 36
RAMA_MASS = 0.98
TM_CLUSTER_THRESHOLD = 0.5
NOVELTY_LENGTH_WINDOW = 0.2
DESIGNABLE_RMSD = 2.0
SS_STATES = ("helix", "strand", "coil")
#: A "strand" for the any-strand rate: a run of >= 2 strand residues (DSSP's E, a ladder),
#: not an isolated bridge (DSSP's B); pydssp's 3 states fold both into "E".
STRAND_MIN_RUN = 2
NO_PREDICTOR_MESSAGE = (
    "no structure predictor given: scRMSD / designability not computed (needs a folding model "
    "such as ESMFold, not installable here)"
)
StructurePredictor = Callable[[str], np.ndarray]


def _points(x, name: str, min_len: int = 1) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3 or len(a) < min_len:
        raise ValueError(f"{name}: expected shape (L, 3) with L >= {min_len}, got {a.shape}")
    return a


def _backbone_coords(coords, min_len: int = 2) -> np.ndarray:
    a = np.asarray(coords, dtype=np.float64)
    if a.ndim != 3 or a.shape[1:] != (4, 3) or len(a) < min_len:
        raise ValueError(f"coords: expected shape (L, 4, 3) with L >= {min_len}, got {a.shape}")
    return a


# ---------------------------------------------------------------------------------------------
# Geometry


def ca_ca_distances(ca) -> np.ndarray:
    """Distances (L − 1,) between consecutive Cα atoms; ca: (L, 3)."""
    ca = _points(ca, "ca", 2)
    return np.linalg.norm(np.diff(ca, axis=0), axis=-1)


def ca_ca_valid_fraction(
    ca, ideal: float = CA_CA_IDEAL, tolerance: float = CA_CA_TOLERANCE
) -> float:
    """Fraction of consecutive Cα–Cα distances with ``|d − ideal| <= tolerance`` (3.8 ± 0.1 Å).

    ca: (L, 3). Real chains score ≈ 0.99 (cis-peptides have Cα–Cα ≈ 2.9 Å).
    """
    return float(np.mean(np.abs(ca_ca_distances(ca) - ideal) <= tolerance))


def ca_clash_rate(
    ca, distance: float = CLASH_DISTANCE, min_separation: int = CLASH_MIN_SEPARATION
) -> float:
    """Clash rate: among residue pairs (i, j) with ``|i − j| >= min_separation`` (default 3),
    the fraction whose Cα–Cα distance is strictly below ``distance`` (default 3.0 Å).

    ca: (L, 3) with L > min_separation; there are (L − s)(L − s + 1)/2 such pairs for s =
    min_separation. Pairs closer in sequence are bonded or angle-constrained and not counted.
    """
    ca = _points(ca, "ca", min_separation + 1)
    i, j = np.triu_indices(len(ca), k=min_separation)
    d = np.linalg.norm(ca[i] - ca[j], axis=-1)
    return float(np.mean(d < distance))


def radius_of_gyration(ca) -> float:
    """Rg = sqrt(mean_i |x_i − x̄|²) of the Cα atoms (Å), unweighted; ca: (L, 3)."""
    ca = _points(ca, "ca")
    return float(np.sqrt(np.mean(np.sum((ca - ca.mean(axis=0)) ** 2, axis=-1))))


def normalized_rg(ca, exponent: float = RG_EXPONENT) -> float:
    """Rg / L^exponent (Å), L = number of residues: removes most of the length dependence of
    compact chains (real chains: ≈ 2.06 ± 0.24 for exponent 0.4). ca: (L, 3)."""
    ca = _points(ca, "ca")
    return radius_of_gyration(ca) / len(ca) ** exponent


# ---------------------------------------------------------------------------------------------
# Dihedrals and Ramachandran regions


def dihedral(p0, p1, p2, p3) -> np.ndarray:
    """Torsion angles (...,) in (−π, π] of the atom quadruples p0–p1–p2–p3, each (..., 3).

    IUPAC sign: positive when, looking along p1→p2, the far bond p2–p3 is rotated clockwise from
    the near bond p1–p0 (α-helix φ ≈ −57°, ψ ≈ −47°). Angle between the planes' normals
    n1 = b0 × b1 and n2 = b1 × b2, signed by (n1 × n2)·b1.
    """
    p0, p1, p2, p3 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2, p3))
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = np.cross(b0, b1), np.cross(b1, b2)
    axis = b1 / np.linalg.norm(b1, axis=-1, keepdims=True)
    return np.arctan2(np.sum(np.cross(n1, n2) * axis, axis=-1), np.sum(n1 * n2, axis=-1))


def backbone_dihedrals(coords, breaks=()) -> tuple[np.ndarray, np.ndarray]:
    """Backbone torsions φ_i = (C_{i−1}, N_i, Cα_i, C_i) and ψ_i = (N_i, Cα_i, C_i, N_{i+1}).

    coords: (L, 4, 3) N, Cα, C, O. breaks: indices i with no bond between residues i and i+1
    (e.g. :attr:`Backbone.breaks`); ψ_i and φ_{i+1} are NaN there, as are φ_0 and ψ_{L−1}.
    Returns ``(phi, psi)``, each (L,) in radians.
    """
    x = _backbone_coords(coords)
    n, ca, c = x[:, 0], x[:, 1], x[:, 2]
    phi = np.full(len(x), np.nan)
    psi = np.full(len(x), np.nan)
    phi[1:] = dihedral(c[:-1], n[1:], ca[1:], c[1:])
    psi[:-1] = dihedral(n[:-1], ca[:-1], c[:-1], n[1:])
    breaks = np.asarray(breaks, dtype=np.int64)
    psi[breaks] = np.nan
    phi[breaks + 1] = np.nan
    return phi, psi


def _rama_bin(angle: np.ndarray, bins: int) -> np.ndarray:
    idx = np.floor((angle + np.pi) / (2 * np.pi) * bins).astype(np.int64)
    return np.clip(idx, 0, bins - 1)


def rama_allowed_grid(phi, psi, bins: int = RAMA_BINS, mass: float = RAMA_MASS) -> np.ndarray:
    """Ramachandran "allowed" bins learnt from reference torsions.

    phi, psi: (N,) radians (pairs with a NaN are ignored). The (φ, ψ) square [−π, π)² is cut
    into ``bins × bins`` cells (10° for 36); cells are ranked by their reference count and the
    densest are taken until they hold at least ``mass`` of all pairs (the cell that crosses the
    threshold is included; ties broken by cell order). Returns a (bins, bins) bool grid indexed
    [φ-bin, ψ-bin].
    """
    phi, psi = np.asarray(phi, dtype=np.float64), np.asarray(psi, dtype=np.float64)
    ok = np.isfinite(phi) & np.isfinite(psi)
    if not ok.any() or not 0 < mass <= 1:
        raise ValueError(f"phi, psi: need finite pairs and 0 < mass <= 1, got mass {mass}")
    counts = np.zeros((bins, bins), dtype=np.int64)
    np.add.at(counts, (_rama_bin(phi[ok], bins), _rama_bin(psi[ok], bins)), 1)
    order = np.argsort(-counts, axis=None, kind="stable")
    cumulative = np.cumsum(counts.ravel()[order])
    keep = int(np.searchsorted(cumulative, mass * cumulative[-1] - 1e-9)) + 1
    grid = np.zeros(bins * bins, dtype=bool)
    grid[order[:keep]] = True
    return grid.reshape(bins, bins)


def rama_allowed_fraction(phi, psi, grid: np.ndarray) -> float:
    """Fraction of (φ, ψ) pairs (NaN pairs ignored) falling in allowed cells of ``grid``
    (from :func:`rama_allowed_grid`); NaN when no pair is defined."""
    phi, psi = np.asarray(phi, dtype=np.float64), np.asarray(psi, dtype=np.float64)
    ok = np.isfinite(phi) & np.isfinite(psi)
    if not ok.any():
        return math.nan
    bins = grid.shape[0]
    return float(np.mean(grid[_rama_bin(phi[ok], bins), _rama_bin(psi[ok], bins)]))


# ---------------------------------------------------------------------------------------------
# Secondary structure


def dssp_states(coords) -> np.ndarray:
    """3-state secondary structure (L,) of ``'H'`` (helix), ``'E'`` (strand/bridge), ``'-'``
    (coil) from pydssp's DSSP-like hydrogen-bond assignment; coords: (L, 4, 3) N, Cα, C, O."""
    try:
        import pydssp
    except ImportError as err:
        raise ImportError("secondary structure needs pydssp: pip install pydssp") from err
    return np.asarray(pydssp.assign(_backbone_coords(coords, 5), out_type="c3"))


def _fractions(states: np.ndarray) -> dict[str, float]:
    helix, strand = float(np.mean(states == "H")), float(np.mean(states == "E"))
    return {"helix": helix, "strand": strand, "coil": 1.0 - helix - strand}


def ss_fractions(coords) -> dict[str, float]:
    """Helix, strand and coil fractions (summing to 1) of one backbone; coords: (L, 4, 3).
    Strand counts every ``'E'`` residue, isolated bridges included (as ``chains.csv``)."""
    return _fractions(dssp_states(coords))


def has_strand(states, min_run: int = STRAND_MIN_RUN) -> bool:
    """Whether 3-state ``states`` (L,) (from :func:`dssp_states`) hold a run of at least
    ``min_run`` consecutive ``'E'`` residues (default 2: a ladder, not an isolated bridge)."""
    is_e = np.concatenate([[0], np.asarray(states) == "E", [0]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(is_e))
    runs = edges[1::2] - edges[::2]
    return bool(runs.size and runs.max() >= min_run)


def _ss_table(backbones: Sequence[Backbone]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) helix/strand/coil fractions and (n,) any-strand flags of backbones."""
    states = [dssp_states(bb.coords) for bb in backbones]
    fractions = np.array([[_fractions(s)[k] for k in SS_STATES] for s in states])
    return fractions, np.array([has_strand(s) for s in states])


# ---------------------------------------------------------------------------------------------
# TM-score: diversity and novelty


def _tm_align():
    try:
        from tmtools import tm_align
    except ImportError as err:
        raise ImportError("TM-scores need tmtools: pip install tmtools") from err
    return tm_align


def tm_score(ca_query, ca_target) -> float:
    """TM-score of a TM-align superposition, normalised by the *query* length.

    ca_query: (L1, 3), ca_target: (L2, 3) Cα in Å. Both are given poly-alanine sequences, so the
    alignment is purely structural. Self-score is 1; unrelated folds score ≈ 0.2–0.3.
    """
    tm_align = _tm_align()
    a = np.ascontiguousarray(_points(ca_query, "ca_query", 3))
    b = np.ascontiguousarray(_points(ca_target, "ca_target", 3))
    return float(tm_align(a, b, "A" * len(a), "A" * len(b)).tm_norm_chain1)


def tm_score_matrix(cas: Sequence[np.ndarray], progress: bool = False) -> np.ndarray:
    """Pairwise TM-scores (n, n); entry [i, j] is normalised by the length of chain i (one
    TM-align call per pair fills both entries), diagonal 1. cas: n arrays (L_i, 3)."""
    tm_align = _tm_align()
    cas = [np.ascontiguousarray(_points(c, f"cas[{i}]", 3)) for i, c in enumerate(cas)]
    tm = np.eye(len(cas))
    pairs = [(i, j) for i in range(len(cas)) for j in range(i + 1, len(cas))]
    for i, j in tqdm(pairs, desc="TM-align (diversity)", disable=not progress, leave=False):
        res = tm_align(cas[i], cas[j], "A" * len(cas[i]), "A" * len(cas[j]))
        tm[i, j], tm[j, i] = res.tm_norm_chain1, res.tm_norm_chain2
    return tm


def mean_pairwise_tm(tm: np.ndarray) -> float:
    """Mean off-diagonal entry of a TM-score matrix (n, n), n >= 2 (both normalisations
    averaged; for equal lengths they coincide). Lower = more diverse."""
    n = len(tm)
    if n < 2:
        raise ValueError(f"tm: need at least 2 chains, got {n}")
    return float((tm.sum() - np.trace(tm)) / (n * (n - 1)))


def tm_clusters(tm: np.ndarray, threshold: float = TM_CLUSTER_THRESHOLD) -> int:
    """Number of single-linkage clusters: chains are linked when their TM-score (mean of both
    normalisations) is ``>= threshold``, and a cluster is a connected component of that graph
    (order-independent, unlike greedy centroid clustering). tm: (n, n)."""
    from scipy.sparse.csgraph import connected_components

    linked = (tm + tm.T) / 2 >= threshold
    return int(connected_components(linked, directed=False)[0])


def novelty_max_tm(
    ca, training_cas: Sequence[np.ndarray], window: float = NOVELTY_LENGTH_WINDOW
) -> float:
    """Max TM-score (normalised by the sample's length L) of a sample against the training
    chains whose length is within ``L·(1 ± window)``; NaN when none is in that window.
    ca: (L, 3); training_cas: arrays (L_t, 3). Lower = more novel."""
    ca = _points(ca, "ca", 3)
    length = len(ca)
    near = [t for t in training_cas if abs(len(t) - length) <= window * length]
    return max((tm_score(ca, t) for t in near), default=math.nan)


# ---------------------------------------------------------------------------------------------
# Self-consistency RMSD (only with a user-supplied structure predictor)


def kabsch_rmsd(x, y) -> float:
    """Cα RMSD (Å) between x and y, (N, 3) each, after the optimal proper rigid superposition
    of x onto y (Kabsch: SVD of the centred covariance, reflection excluded)."""
    x, y = _points(x, "x"), _points(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x, y: expected equal shapes, got {x.shape} and {y.shape}")
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    u, _, vt = np.linalg.svd(x.T @ y)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ np.diag([1.0, 1.0, d]) @ vt
    return float(np.sqrt(np.mean(np.sum((x @ rot - y) ** 2, axis=-1))))


def self_consistency_rmsd(ca, sequences: Sequence[str], predictor: StructurePredictor) -> float:
    """scRMSD: the minimum over ``sequences`` of the Kabsch Cα RMSD between
    ``predictor(sequence)`` ((L, 3) Cα in Å) and the designed backbone's Cα ``ca`` (L, 3)."""
    ca = _points(ca, "ca", 3)
    if not sequences:
        raise ValueError("sequences: need at least one sequence to fold")
    rmsds = []
    for seq in sequences:
        pred = np.asarray(predictor(seq), dtype=np.float64)
        if pred.shape != ca.shape:
            raise ValueError(
                f"structure_predictor: returned shape {pred.shape} for a sequence of length "
                f"{len(seq)}; expected Cα coordinates {ca.shape}"
            )
        rmsds.append(kabsch_rmsd(pred, ca))
    return min(rmsds)


# ---------------------------------------------------------------------------------------------
# Noise floor


def noise_backbones(
    lengths: Sequence[int], seed: int = 0, rg_norm: float = DATA_RG_NORM
) -> list[Backbone]:
    """Random backbones for the benchmark's floor, one per entry of ``lengths``.

    Cα positions are i.i.d. isotropic Gaussians, centred, with per-axis sd
    ``rg_norm · L^0.4 / √3`` so that the expected Rg matches real chains (Rg/L^0.4 ≈ 2.06);
    residue orientations are uniform random rotations; N, C, O are placed with ideal geometry
    by :func:`~.frames.backbone_from_frames`. Named ``noise_<i>``, poly-glycine.
    """
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i, length in enumerate(lengths):
        if length < 2:
            raise ValueError(f"lengths: each must be >= 2, got {length}")
        q = torch.randn(length, 4, generator=gen, dtype=torch.float64)
        q = q / q.norm(dim=-1, keepdim=True)
        sd = rg_norm * length**RG_EXPONENT / math.sqrt(3.0)
        t = torch.randn(length, 3, generator=gen, dtype=torch.float64) * sd
        coords = backbone_from_frames(q, t - t.mean(dim=0)).numpy().astype(np.float32)
        res_id = np.arange(1, length + 1)
        out.append(Backbone(f"noise_{i}", coords, res_id, "G" * length, find_breaks(coords)))
    return out


# ---------------------------------------------------------------------------------------------
# Reference statistics and the full evaluation


@dataclass
class ReferenceStats:
    """What the evaluation needs from the reference chains, computed once.

    rg_norm: (n,) Rg / L^0.4; ss: (n, 3) helix/strand/coil fractions; any_strand: (n,) bool
    (:func:`has_strand`); rama_grid: (bins, bins) bool allowed cells
    (:func:`rama_allowed_grid`, torsions across chain breaks excluded).
    """

    rg_norm: np.ndarray
    ss: np.ndarray
    any_strand: np.ndarray
    rama_grid: np.ndarray


def reference_stats(
    reference: Sequence[Backbone], bins: int = RAMA_BINS, mass: float = RAMA_MASS
) -> ReferenceStats:
    """:class:`ReferenceStats` of real (training or held-out) chains."""
    if not reference:
        raise ValueError("reference: expected at least one chain, got none")
    torsions = [backbone_dihedrals(bb.coords, bb.breaks) for bb in reference]
    phi = np.concatenate([t[0] for t in torsions])
    psi = np.concatenate([t[1] for t in torsions])
    if not (np.isfinite(phi) & np.isfinite(psi)).any():
        raise ValueError("reference: no residue has both φ and ψ defined (breaks everywhere?)")
    ss, any_strand = _ss_table(reference)
    rg = np.array([normalized_rg(bb.coords[:, 1]) for bb in reference])
    return ReferenceStats(rg, ss, any_strand, rama_allowed_grid(phi, psi, bins, mass))


def _num(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _by_length(samples: Sequence[Backbone]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, bb in enumerate(samples):
        groups.setdefault(len(bb), []).append(i)
    return dict(sorted(groups.items()))


def _geometry_metrics(samples: Sequence[Backbone], ref: ReferenceStats) -> dict:
    from scipy.stats import wasserstein_distance

    cas = [bb.coords[:, 1] for bb in samples]
    rg = np.array([normalized_rg(ca) for ca in cas])
    torsions = [backbone_dihedrals(bb.coords) for bb in samples]
    phi = np.concatenate([t[0] for t in torsions])
    psi = np.concatenate([t[1] for t in torsions])
    return {
        "ca_ca_valid_fraction": float(np.mean([ca_ca_valid_fraction(ca) for ca in cas])),
        "clash_rate": float(np.mean([ca_clash_rate(ca) for ca in cas])),
        "rg_norm_mean": float(rg.mean()),
        "rg_norm_ref_mean": float(ref.rg_norm.mean()),
        "rg_norm_abs_diff": float(abs(rg.mean() - ref.rg_norm.mean())),
        "rg_norm_w1": float(wasserstein_distance(rg, ref.rg_norm)),
        "rama_allowed_fraction": _num(rama_allowed_fraction(phi, psi, ref.rama_grid)),
    }


def _ss_metrics(samples: Sequence[Backbone], ref: ReferenceStats) -> dict:
    ss, any_strand = _ss_table(samples)
    mean, ref_mean = ss.mean(axis=0), ref.ss.mean(axis=0)
    out = {f"ss_{k}": float(v) for k, v in zip(SS_STATES, mean, strict=True)}
    out |= {f"ss_ref_{k}": float(v) for k, v in zip(SS_STATES, ref_mean, strict=True)}
    out["ss_l1_to_ref"] = float(np.abs(mean - ref_mean).sum())
    out["any_strand_fraction"] = float(np.mean(any_strand))
    out["any_strand_fraction_ref"] = float(np.mean(ref.any_strand))
    return out


def _diversity_metrics(
    samples: Sequence[Backbone], groups: dict[int, list[int]], progress: bool
) -> dict:
    out: dict = {}
    per_length, clusters = [], 0
    for length, idx in groups.items():
        tm = tm_score_matrix([samples[i].coords[:, 1] for i in idx], progress)
        clusters += tm_clusters(tm)
        if len(idx) >= 2:
            per_length.append(mean_pairwise_tm(tm))
            out[f"diversity_tm_L{length}"] = per_length[-1]
    out["diversity_tm"] = float(np.mean(per_length)) if per_length else None
    out["n_clusters_tm05"] = clusters
    out["cluster_fraction"] = clusters / len(samples)
    return out


def _novelty_metrics(
    samples: Sequence[Backbone], training: Sequence[Backbone] | None, progress: bool
) -> dict:
    if training is None:
        return {"novelty_tm": None, "novelty_n": 0}
    train_cas = [bb.coords[:, 1] for bb in training]
    values = [
        novelty_max_tm(bb.coords[:, 1], train_cas)
        for bb in tqdm(samples, desc="TM-align (novelty)", disable=not progress, leave=False)
    ]
    found = [v for v in values if not math.isnan(v)]
    return {"novelty_tm": float(np.mean(found)) if found else None, "novelty_n": len(found)}


def _mpnn_metrics(
    samples: Sequence[Backbone],
    groups: dict[int, list[int]],
    num_sequences: int,
    temperature: float,
    seed: int,
    progress: bool,
) -> tuple[dict, list]:
    from sciflow_domains.protein.designability import composition_entropy, design_sequences

    designs = [
        design_sequences(bb.coords, num_sequences, temperature, seed)
        for bb in tqdm(samples, desc="ProteinMPNN (proxy)", disable=not progress, leave=False)
    ]
    nll = np.array([d.nll.mean() for d in designs])
    out = {
        "mpnn_nll_proxy": float(nll.mean()),
        "mpnn_composition_entropy_proxy": float(
            np.mean([composition_entropy(d.sequences) for d in designs])
        ),
    }
    for length, idx in groups.items():
        out[f"mpnn_nll_proxy_L{length}"] = float(nll[idx].mean())
    return out, designs


def _scrmsd_metrics(
    samples: Sequence[Backbone],
    groups: dict[int, list[int]],
    designs: list,
    predictor: StructurePredictor,
) -> dict:
    sc = np.array(
        [
            self_consistency_rmsd(bb.coords[:, 1], d.sequences, predictor)
            for bb, d in zip(samples, designs, strict=True)
        ]
    )
    out = {"scrmsd": float(sc.mean()), "scrmsd_sd": float(sc.std())}
    fractions = []
    for length, idx in groups.items():
        fractions.append(float(np.mean(sc[idx] < DESIGNABLE_RMSD)))
        out[f"designable_fraction_L{length}"] = fractions[-1]
    out["designable_fraction"] = float(np.mean(fractions))
    return out


def evaluate_backbones(
    samples: Sequence[Backbone],
    reference: Sequence[Backbone] | ReferenceStats,
    training: Sequence[Backbone] | None = None,
    mpnn: bool = True,
    structure_predictor: StructurePredictor | None = None,
    progress: bool = False,
    *,
    num_sequences: int = 4,
    temperature: float = 0.1,
    seed: int = 38,
) -> dict:
    """All offline metrics of ``samples`` as one flat, JSON-serialisable dict.

    samples: generated backbones (coords (L, 4, 3)); lengths may differ, and diversity,
    clusters, the MPNN proxy and the designable fraction are also reported per length
    (``*_L<length>`` keys). reference: real chains (or their :class:`ReferenceStats`) defining
    the Rg, secondary-structure and Ramachandran targets. training: chains for novelty (None:
    ``novelty_tm`` is None). mpnn: run the ProteinMPNN designability *proxy*
    (``num_sequences`` sequences at ``temperature``, ``seed``; needs ``proteinmpnn``):
    ``mpnn_nll_proxy`` (mean per-residue NLL, also per length) and
    ``mpnn_composition_entropy_proxy`` (nats; low = degenerate designs), None when off.
    structure_predictor: optional ``sequence -> (L, 3) Cα`` folding callable; with it, scRMSD
    (min over the MPNN sequences) and the designable fraction (scRMSD < 2 Å, mean over lengths
    of the per-length fraction, as ReQFlow) are computed; without it they are None and
    ``scrmsd_message`` says why. progress: tqdm bars over TM-align and ProteinMPNN loops.
    Sample torsions are computed across every residue pair (a generated chain has no breaks).
    """
    if not samples:
        raise ValueError("samples: expected at least one backbone, got none")
    if structure_predictor is not None and not mpnn:
        raise ValueError("structure_predictor: needs mpnn=True (ProteinMPNN designs the sequences)")
    ref = reference if isinstance(reference, ReferenceStats) else reference_stats(reference)
    groups = _by_length(samples)
    out: dict = {"n_samples": len(samples), "n_lengths": len(groups)}
    out |= _geometry_metrics(samples, ref)
    out |= _ss_metrics(samples, ref)
    start = time.perf_counter()
    out |= _diversity_metrics(samples, groups, progress)
    out |= _novelty_metrics(samples, training, progress)
    out["seconds_tm_align"] = time.perf_counter() - start
    designs = None
    if mpnn:
        start = time.perf_counter()
        mpnn_out, designs = _mpnn_metrics(
            samples, groups, num_sequences, temperature, seed, progress
        )
        out |= mpnn_out
        out["seconds_mpnn"] = time.perf_counter() - start
    else:
        out |= {"mpnn_nll_proxy": None, "mpnn_composition_entropy_proxy": None}
    if structure_predictor is None:
        out |= {"scrmsd": None, "designable_fraction": None, "scrmsd_message": NO_PREDICTOR_MESSAGE}
    else:
        out |= _scrmsd_metrics(samples, groups, designs, structure_predictor)
    return out
