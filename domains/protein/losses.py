"""ReQFlow's auxiliary losses on predicted backbones (backbone atoms and pairwise distances).

Given the network's predicted clean frames and the data frames, both are turned into ideal
N, Cα, C atoms (``IDEAL_LOCAL``), in the batch's length unit (``length_unit`` Å, 10 Å by
default: the nm of ReQFlow). With s = 1 − min(t, ``time_clip``) per sample and N its residues:

* L_bb   = Σ_i Σ_{a∈N,Cα,C} |(a_i − â_i)/s|² / (3N);
* L_pair = Σ_{a,b} (d_ab − d̂_ab)² / s² / (#pairs + 1) over all pairs of the 3N atoms, with d the
  distances between data atoms and d̂ between predicted ones;
* L_aux  = min(weight · (L_bb + L_pair) · 1[t > threshold], max_loss).

ReQFlow trains with threshold 0.5 on PDB (0.25 on SCOPe), weight 1, time_clip 0.9, max_loss 5.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from sciflow_domains.protein.frames import IDEAL_LOCAL

from sciflow.auxiliary import AuxiliaryLoss
from sciflow.geometry.quaternion import to_matrix


def rotation_matrices(rot: torch.Tensor) -> torch.Tensor:
    """(…, 4) unit quaternions WXYZ or (…, 9) row-major rotation matrices → (…, 3, 3)."""
    if rot.shape[-1] == 4:
        return to_matrix(rot)
    if rot.shape[-1] == 9:
        return rot.unflatten(-1, (3, 3))
    raise ValueError(f"rot: expected quaternions (..., 4) or matrices (..., 9), got {rot.shape}")


def backbone_atoms(rot: torch.Tensor, trans: torch.Tensor, length_unit: float) -> torch.Tensor:
    """Ideal N, Cα, C of frames rot (B, N, 4|9), trans (B, N, 3) → (B, N, 3, 3) in the unit of
    ``trans`` (``length_unit`` Å)."""
    local = torch.tensor(IDEAL_LOCAL, dtype=trans.dtype, device=trans.device) / length_unit
    return torch.einsum("bnij,aj->bnai", rotation_matrices(rot), local) + trans.unsqueeze(-2)


def _distances(points: torch.Tensor) -> torch.Tensor:
    """Pairwise distances (B, M, M) of points (B, M, 3), with a finite gradient at 0."""
    diff = points.unsqueeze(1) - points.unsqueeze(2)
    return (diff.pow(2).sum(-1) + 1e-10).sqrt()


class BackboneAuxiliaryLoss(AuxiliaryLoss):
    """ReQFlow's backbone-atom + pairwise-distance loss for t > ``threshold`` (module docstring).

    Expects the parts ``rot`` and ``trans`` (padded, with ``context["mask"]``); returns the
    per-sample term ``{"aux": (B,)}``.
    """

    def __init__(
        self,
        threshold: float = 0.5,
        weight: float = 1.0,
        time_clip: float = 0.9,
        max_loss: float = 5.0,
        length_unit: float = 10.0,
    ):
        if not 0 <= threshold < 1 or not 0 < time_clip < 1:
            raise ValueError(
                f"threshold and time_clip: expected [0, 1) and (0, 1), got {threshold}, {time_clip}"
            )
        if weight < 0 or max_loss <= 0 or length_unit <= 0:
            raise ValueError(
                "weight >= 0, max_loss > 0 and length_unit > 0 expected, got "
                f"{weight}, {max_loss}, {length_unit}"
            )
        self.threshold, self.weight, self.time_clip = threshold, weight, time_clip
        self.max_loss, self.length_unit = max_loss, length_unit

    def __call__(
        self,
        predicted: Mapping[str, torch.Tensor],
        data: Mapping[str, torch.Tensor],
        t: torch.Tensor,
        context: Mapping[str, object],
    ) -> dict[str, torch.Tensor]:
        true = backbone_atoms(data["rot"], data["trans"], self.length_unit)  # (B, N, 3, 3)
        pred = backbone_atoms(predicted["rot"], predicted["trans"], self.length_unit)
        b, n = true.shape[:2]
        mask = context.get("mask")
        mask = torch.ones(b, n, dtype=torch.bool, device=t.device) if mask is None else mask
        scale = 1 - t.clamp(max=self.time_clip)  # (B,)
        residue = mask.to(true.dtype)
        num_residues = residue.sum(1).clamp_min(1)
        atom_err = (true - pred).pow(2).sum((-1, -2)) * residue  # (B, N)
        bb = atom_err.sum(1) / (3 * num_residues) / scale.pow(2)
        atom_mask = residue.repeat_interleave(3, dim=1)  # (B, 3N)
        pair_mask = atom_mask.unsqueeze(1) * atom_mask.unsqueeze(2)
        d_true, d_pred = _distances(true.flatten(1, 2)), _distances(pred.flatten(1, 2))
        pair_err = ((d_true - d_pred).pow(2) * pair_mask).sum((1, 2))
        pair = pair_err / (pair_mask.sum((1, 2)) + 1) / scale.pow(2)
        gate = (t > self.threshold).to(true.dtype)
        return {"aux": (self.weight * (bb + pair) * gate).clamp(max=self.max_loss)}
