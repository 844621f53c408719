"""ReQFlow's auxiliary backbone/pair loss: a hand-computed case, the time gate, the clamp, the
invariance to a global rigid motion, and quaternion/matrix agreement."""

from __future__ import annotations

import torch
from sciflow_domains.protein.frames import IDEAL_LOCAL
from sciflow_domains.protein.losses import BackboneAuxiliaryLoss, backbone_atoms

from sciflow.geometry.quaternion import multiply, random_uniform, rotate, to_matrix


def _identity_frames(trans: torch.Tensor) -> dict:
    rot = torch.zeros(*trans.shape[:-1], 4, dtype=trans.dtype)
    rot[..., 0] = 1.0
    return {"rot": rot, "trans": trans}


def test_hand_computed_case():
    """Two residues with identity rotations; the prediction moves residue 1 by δ = (0.3, 0, 0)
    (units of 10 Å). Each of its 3 atoms moves by δ: L_bb = 3·0.09 / (3·2) / s². The pair
    term: the 9 distances between residue-1 atoms and residue-0 atoms change; summed over
    ordered pairs (both orders) and divided by (#pairs + 1) = 37."""
    trans = torch.tensor([[[0.0, 0.0, 0.0], [0.38, 0.0, 0.0]]], dtype=torch.float64)
    data = _identity_frames(trans)
    moved = data["trans"].clone()
    moved[0, 1, 0] += 0.3
    predicted = _identity_frames(moved)
    t = torch.tensor([0.8], dtype=torch.float64)
    s = 1 - 0.8
    local = torch.tensor(IDEAL_LOCAL, dtype=torch.float64) / 10.0
    true0, true1 = local, local + data["trans"][0, 1]
    pred1 = local + moved[0, 1]
    cross_true = torch.cdist(true0, true1)
    cross_pred = torch.cdist(true0, pred1)
    pair = 2 * (cross_true - cross_pred).pow(2).sum() / 37
    bb = 3 * 0.09 / 6
    loss = BackboneAuxiliaryLoss(threshold=0.5, max_loss=100.0)(predicted, data, t, {})
    torch.testing.assert_close(loss["aux"], ((bb + pair) / s**2).reshape(1))


def test_gate_clamp_and_mask():
    g = torch.Generator().manual_seed(0)
    trans = torch.randn(3, 6, 3, generator=g, dtype=torch.float64)
    data = {"rot": random_uniform(3, 6, generator=g, dtype=torch.float64), "trans": trans}
    predicted = {"rot": data["rot"], "trans": trans + 0.5}
    t = torch.tensor([0.2, 0.6, 0.99], dtype=torch.float64)
    loss = BackboneAuxiliaryLoss(threshold=0.5, max_loss=5.0)(predicted, data, t, {})["aux"]
    assert loss[0] == 0  # t below the threshold
    assert loss[2] == 5.0  # s = 0.1 makes it large: clamped
    # the normaliser stops at t = 0.9: t = 0.99 and t = 0.9 give the same unclamped value
    big = BackboneAuxiliaryLoss(threshold=0.5, max_loss=1e9)
    at_99 = big(predicted, data, torch.full((3,), 0.99, dtype=torch.float64), {})["aux"]
    at_90 = big(predicted, data, torch.full((3,), 0.9, dtype=torch.float64), {})["aux"]
    torch.testing.assert_close(at_99, at_90)
    # padded residues do not count, whatever they hold
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[:, 4:] = False
    garbage = {k: v.clone() for k, v in predicted.items()}
    garbage["trans"][:, 4:] += 100.0
    with_mask = big(predicted, data, t, {"mask": mask})["aux"]
    torch.testing.assert_close(big(garbage, data, t, {"mask": mask})["aux"], with_mask)


def test_invariant_to_a_global_rigid_motion_and_equal_for_matrices():
    g = torch.Generator().manual_seed(1)
    data = {
        "rot": random_uniform(2, 7, generator=g, dtype=torch.float64),
        "trans": torch.randn(2, 7, 3, generator=g, dtype=torch.float64),
    }
    predicted = {
        "rot": random_uniform(2, 7, generator=g, dtype=torch.float64),
        "trans": torch.randn(2, 7, 3, generator=g, dtype=torch.float64),
    }
    t = torch.tensor([0.7, 0.95], dtype=torch.float64)
    loss = BackboneAuxiliaryLoss(max_loss=1e9)
    base = loss(predicted, data, t, {})["aux"]
    q = random_uniform(1, generator=g, dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)

    def move(frames):
        return {"rot": multiply(q, frames["rot"]), "trans": rotate(q, frames["trans"]) + shift}

    torch.testing.assert_close(loss(move(predicted), move(data), t, {})["aux"], base)
    as_matrix = {k: {"rot": to_matrix(v["rot"]).flatten(-2), "trans": v["trans"]}
                 for k, v in {"p": predicted, "d": data}.items()}  # fmt: skip
    torch.testing.assert_close(loss(as_matrix["p"], as_matrix["d"], t, {})["aux"], base)


def test_backbone_atoms_have_ideal_bond_lengths():
    g = torch.Generator().manual_seed(2)
    rot = random_uniform(1, 4, generator=g, dtype=torch.float64)
    atoms = backbone_atoms(rot, torch.randn(1, 4, 3, generator=g, dtype=torch.float64), 10.0)
    n_ca = (atoms[..., 0, :] - atoms[..., 1, :]).norm(dim=-1) * 10
    ca_c = (atoms[..., 2, :] - atoms[..., 1, :]).norm(dim=-1) * 10
    torch.testing.assert_close(n_ca, torch.full_like(n_ca, 1.458))
    torch.testing.assert_close(ca_c, torch.full_like(ca_c, 1.525))
