"""Residue frames ↔ backbone atoms, with ideal backbone geometry.

A residue frame is a rigid transform ``T = (q, x)``: ``x`` (3,) is the Cα position in Å and ``q``
(4,) a unit quaternion WXYZ (``w >= 0``) whose rotation matrix ``R = [e1 e2 e3]`` (columns) maps
local coordinates to global ones, ``a_global = R · a_local + x``. The axes come from Gram–Schmidt
on the backbone, the AlphaFold/FrameFlow "backbone rigid group" convention:

* ``e1 = (C − Cα) / |C − Cα|``: C lies on the local +x axis;
* ``e2 = u / |u|`` with ``u = (N − Cα) − ((N − Cα)·e1)·e1``: N lies in the local xy-plane, y > 0;
* ``e3 = e1 × e2``: a right-handed frame, ``det R = +1``.

Ideal geometry (Engh & Huber 1991 values, our own derivation of the local coordinates):

=====================  ==========  ================================================
quantity               value       use
=====================  ==========  ================================================
N–Cα bond              1.458 Å     N_local = 1.458·(cos 111.2°, sin 111.2°, 0)
Cα–C bond              1.525 Å     C_local = (1.525, 0, 0)
N–Cα–C angle (τ)       111.2°      ≈ (−0.5272, 1.3593, 0) for N_local
C–O bond               1.231 Å     O placement (below)
Cα–C–O angle           120.5°      O placement (below)
=====================  ==========  ================================================

The carbonyl O lies in the peptide plane. Residue ``i`` has O placed from the next residue's N
when it exists (and both residues are unmasked): in the plane of Cα_i, C_i, N_{i+1}, at 1.231 Å
from C_i, with the angle Cα–C–O = 120.5°, on the side opposite N_{i+1}. Otherwise (last residue,
masked neighbour, or an explicit ``psi``) O is placed from the backbone torsion ψ_i: the torsion
N–Cα–C–O equals ψ + π, so O = C_local + 1.231·(cos 59.5°, sin 59.5°·cos(ψ+π), sin 59.5°·sin(ψ+π))
in the local frame (59.5° = 180° − 120.5°). The default ψ of a residue without a successor is
``TERMINAL_PSI`` = π (an extended strand; O then eclipses N, torsion N–Cα–C–O = 0).
"""

from __future__ import annotations

import math

import torch

from sciflow.geometry._numerics import check_last_dim
from sciflow.geometry.quaternion import from_matrix, rotate

N_CA = 1.458
CA_C = 1.525
C_O = 1.231
N_CA_C_DEG = 111.2
CA_C_O_DEG = 120.5
TERMINAL_PSI = math.pi

_TAU = math.radians(N_CA_C_DEG)
_THETA_O = math.radians(CA_C_O_DEG)

#: Ideal local coordinates (Å) of N, Cα, C in the residue frame, shape (3, 3).
IDEAL_LOCAL = (
    (N_CA * math.cos(_TAU), N_CA * math.sin(_TAU), 0.0),
    (0.0, 0.0, 0.0),
    (CA_C, 0.0, 0.0),
)


def _unit(v: torch.Tensor, eps: float) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)


def frames_from_backbone(
    n: torch.Tensor, ca: torch.Tensor, c: torch.Tensor, eps: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residue frames from backbone atoms (convention in the module docstring).

    n, ca, c: (..., 3) positions of N, Cα, C in Å, same shape.
    Returns ``quats`` (..., 4) unit quaternions WXYZ (``w >= 0``) and ``trans`` (..., 3) = ``ca``.
    ``eps`` guards the normalisations of degenerate (collinear) residues.
    """
    for name, x in (("n", n), ("ca", ca), ("c", c)):
        check_last_dim(x, 3, name, "points in Å")
    if not n.shape == ca.shape == c.shape:
        raise ValueError(
            f"n, ca, c: expected equal shapes (..., 3), got {tuple(n.shape)}, "
            f"{tuple(ca.shape)}, {tuple(c.shape)}"
        )
    e1 = _unit(c - ca, eps)
    u = n - ca
    e2 = _unit(u - (u * e1).sum(dim=-1, keepdim=True) * e1, eps)
    e3 = torch.linalg.cross(e1, e2, dim=-1)
    R = torch.stack([e1, e2, e3], dim=-1)  # columns e1, e2, e3
    return from_matrix(R), ca.clone()


def _oxygen_from_psi(psi: torch.Tensor) -> torch.Tensor:
    """Local O coordinates (..., 3) for torsions ``psi`` (...,) in radians."""
    chi = psi + math.pi  # torsion N–Cα–C–O
    s = math.sin(math.pi - _THETA_O)
    along = torch.full_like(psi, CA_C + C_O * math.cos(math.pi - _THETA_O))
    return torch.stack([along, C_O * s * torch.cos(chi), C_O * s * torch.sin(chi)], dim=-1)


def _oxygen_from_next_n(ca: torch.Tensor, c: torch.Tensor, n_next: torch.Tensor) -> torch.Tensor:
    """Global O (..., 3) in the plane (Cα_i, C_i, N_{i+1}), anti to N_{i+1}, Cα–C–O = 120.5°."""
    a = _unit(ca - c, 1e-8)
    v = n_next - c
    p = _unit(v - (v * a).sum(dim=-1, keepdim=True) * a, 1e-8)
    return c + C_O * (math.cos(_THETA_O) * a - math.sin(_THETA_O) * p)


def backbone_from_frames(
    quats: torch.Tensor,
    trans: torch.Tensor,
    psi: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Backbone atoms N, Cα, C, O from residue frames with ideal geometry.

    quats: (..., L, 4) unit quaternions WXYZ; trans: (..., L, 3) Cα positions in Å.
    psi: optional (..., L) torsions ψ in radians; when given, every O is placed from ψ. When
    ``None``, residue i's O comes from N_{i+1} if residue i+1 exists (and both are unmasked),
    else from ``TERMINAL_PSI``. mask: optional (..., L) bool, True for real residues (padded
    positions still get atoms, which callers should ignore).
    Returns (..., L, 4, 3) in the order N, Cα, C, O.
    """
    if not isinstance(quats, torch.Tensor) or quats.ndim < 2 or quats.shape[-1] != 4:
        shape = tuple(quats.shape) if isinstance(quats, torch.Tensor) else type(quats).__name__
        raise ValueError(f"quats: expected a tensor of shape (..., L, 4), got {shape}")
    check_last_dim(trans, 3, "trans", "points in Å")
    if trans.shape[:-1] != quats.shape[:-1]:
        raise ValueError(
            f"trans: expected shape {tuple(quats.shape[:-1]) + (3,)} to match quats, "
            f"got {tuple(trans.shape)}"
        )
    local = torch.tensor(IDEAL_LOCAL, dtype=trans.dtype, device=trans.device)  # (3, 3)
    q = quats.unsqueeze(-2)  # (..., L, 1, 4)
    ncac = rotate(q, local) + trans.unsqueeze(-2)  # (..., L, 3, 3)
    terminal = torch.full(trans.shape[:-1], TERMINAL_PSI, dtype=trans.dtype, device=trans.device)
    if psi is not None:
        if psi.shape != trans.shape[:-1]:
            raise ValueError(
                f"psi: expected shape {tuple(trans.shape[:-1])}, got {tuple(psi.shape)}"
            )
        terminal = psi.to(trans.dtype)
    oxygen = rotate(quats, _oxygen_from_psi(terminal)) + trans
    if psi is None and trans.shape[-2] > 1:
        has_next = torch.ones(trans.shape[:-1], dtype=torch.bool, device=trans.device)
        has_next[..., -1] = False
        if mask is not None:
            if mask.shape != trans.shape[:-1]:
                raise ValueError(
                    f"mask: expected shape {tuple(trans.shape[:-1])}, got {tuple(mask.shape)}"
                )
            m = mask.bool()
            has_next[..., :-1] &= m[..., :-1] & m[..., 1:]
        n_next = torch.roll(ncac[..., 0, :], shifts=-1, dims=-2)
        planar = _oxygen_from_next_n(ncac[..., 1, :], ncac[..., 2, :], n_next)
        oxygen = torch.where(has_next.unsqueeze(-1), planar, oxygen)
    return torch.cat([ncac, oxygen.unsqueeze(-2)], dim=-2)


def center(trans: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Subtract the Cα centroid: trans (..., L, 3) -> (..., L, 3).

    mask: optional (..., L) bool; the centroid is taken over True entries only, and masked-out
    entries are returned as zeros. A row with no True entry is returned as zeros.
    """
    check_last_dim(trans, 3, "trans", "points in Å")
    if trans.ndim < 2:
        raise ValueError(f"trans: expected shape (..., L, 3), got {tuple(trans.shape)}")
    if mask is None:
        return trans - trans.mean(dim=-2, keepdim=True)
    if mask.shape != trans.shape[:-1]:
        raise ValueError(f"mask: expected shape {tuple(trans.shape[:-1])}, got {tuple(mask.shape)}")
    w = mask.to(trans.dtype).unsqueeze(-1)
    centroid = (trans * w).sum(dim=-2, keepdim=True) / w.sum(dim=-2, keepdim=True).clamp_min(1.0)
    return (trans - centroid) * w
