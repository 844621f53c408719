"""Protein backbones in and out: PDB/mmCIF reading (biotite) and PDB writing.

A :class:`Backbone` holds one chain's N, Cα, C, O coordinates. Reading keeps model 1, the first
altloc and amino-acid residues only (modified residues such as MSE included); residues lacking any
backbone atom are dropped with a logged count, and chain breaks are detected and reported.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sciflow.atomic import atomic_write

log = logging.getLogger(__name__)

BACKBONE_ATOMS = ("N", "CA", "C", "O")
#: A break between residues i and i+1: Cα–Cα above this (Å) ...
MAX_CA_CA = 4.2
#: ... or peptide C_i–N_{i+1} above this (Å).
MAX_C_N = 2.0

_THREE = {
    "A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU",
    "G": "GLY", "H": "HIS", "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE",
    "P": "PRO", "S": "SER", "T": "THR", "W": "TRP", "Y": "TYR", "V": "VAL", "X": "UNK",
}  # fmt: skip


@dataclass
class Backbone:
    """One protein chain's backbone.

    name: label such as ``"1abc_A"``; coords: (L, 4, 3) float32, atoms N, Cα, C, O in Å;
    res_id: (L,) int author residue numbers; sequence: one-letter, length L (``X`` = unknown);
    breaks: (B,) int indices i with a break between residues i and i+1 (see :func:`find_breaks`);
    coil_fraction: fraction of coil residues when known (else None).
    """

    name: str
    coords: np.ndarray
    res_id: np.ndarray
    sequence: str
    breaks: np.ndarray
    coil_fraction: float | None = None

    def __post_init__(self) -> None:
        self.coords = np.asarray(self.coords, dtype=np.float32)
        if self.coords.ndim != 3 or self.coords.shape[1:] != (4, 3):
            raise ValueError(
                f"Backbone {self.name!r}: coords must have shape (L, 4, 3), got {self.coords.shape}"
            )
        self.res_id = np.asarray(self.res_id, dtype=np.int64)
        self.breaks = np.asarray(self.breaks, dtype=np.int64)
        if self.res_id.shape != (len(self.coords),) or len(self.sequence) != len(self.coords):
            raise ValueError(
                f"Backbone {self.name!r}: res_id {self.res_id.shape} and sequence length "
                f"{len(self.sequence)} must match L = {len(self.coords)}"
            )

    def __len__(self) -> int:
        return len(self.coords)


def find_breaks(coords: np.ndarray) -> np.ndarray:
    """Indices i (B,) where residues i, i+1 are not bonded: Cα–Cα > 4.2 Å or C–N > 2.0 Å.

    coords: (L, 4, 3) N, Cα, C, O.
    """
    coords = np.asarray(coords)
    if coords.ndim != 3 or coords.shape[1:] != (4, 3):
        raise ValueError(f"coords: expected shape (L, 4, 3), got {coords.shape}")
    ca_ca = np.linalg.norm(coords[1:, 1] - coords[:-1, 1], axis=-1)
    c_n = np.linalg.norm(coords[1:, 0] - coords[:-1, 2], axis=-1)
    return np.flatnonzero((ca_ca > MAX_CA_CA) | (c_n > MAX_C_N))


def _load_atoms(path: Path):
    """Model 1, first altloc, amino acids only, as a biotite AtomArray; ValueError if unusable."""
    import biotite.structure as struc
    import biotite.structure.io as strucio

    if not path.is_file():
        raise ValueError(f"{path}: no such structure file")
    try:
        atoms = strucio.load_structure(str(path), model=1, altloc="first")
    except Exception as err:  # biotite raises many types for malformed input
        raise ValueError(
            f"{path}: cannot parse as PDB/mmCIF ({type(err).__name__}: {err})"
        ) from err
    if len(atoms) == 0:
        raise ValueError(f"{path}: the structure contains no atoms")
    atoms = atoms[struc.filter_amino_acids(atoms)]
    if len(atoms) == 0:
        raise ValueError(f"{path}: the structure contains no amino-acid residues")
    return atoms


def _letter(res_name: str) -> str:
    from biotite.sequence import ProteinSequence

    try:
        return ProteinSequence.convert_letter_3to1(res_name)
    except KeyError:
        return "X"


def _chain_backbone(atoms, name: str) -> Backbone | None:
    """Backbone of one chain's atoms; residues missing backbone atoms are dropped and logged."""
    import biotite.structure as struc

    starts = struc.get_residue_starts(atoms)
    residue = np.searchsorted(starts, np.arange(len(atoms)), side="right") - 1
    coords = np.full((len(starts), 4, 3), np.nan, dtype=np.float32)
    for k, atom in enumerate(BACKBONE_ATOMS):
        sel = np.flatnonzero(atoms.atom_name == atom)
        res, first = np.unique(residue[sel], return_index=True)
        coords[res, k] = atoms.coord[sel[first]]
    complete = ~np.isnan(coords).any(axis=(1, 2))
    res_id = atoms.res_id[starts]
    res_name = atoms.res_name[starts]
    if not complete.all():
        missing = [f"{res_name[i]}{res_id[i]}" for i in np.flatnonzero(~complete)]
        log.warning(
            "%s: dropped %d residue(s) missing a backbone atom (N, CA, C or O): %s",
            name,
            len(missing),
            ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""),
        )
    if not complete.any():
        log.warning("%s: skipped, no residue has all backbone atoms", name)
        return None
    coords = coords[complete]
    breaks = find_breaks(coords)
    if len(breaks):
        log.warning(
            "%s: %d chain break(s) after residue(s) %s",
            name,
            len(breaks),
            ", ".join(str(r) for r in res_id[complete][breaks][:10]),
        )
    sequence = "".join(_letter(r) for r in res_name[complete])
    return Backbone(name, coords, res_id[complete], sequence, breaks)


def read_structure(path: str | os.PathLike, chain: str | None = None) -> list[Backbone]:
    """Read the protein chains of a PDB (``.pdb``/``.ent``) or mmCIF (``.cif``) file.

    Model 1, first altloc, amino acids only. chain: a chain id to keep (default: all chains, in
    file order). Returns one :class:`Backbone` per chain that keeps at least one complete residue,
    named ``"<file stem>_<chain id>"``. Raises ``ValueError`` naming the file (and chain) for a
    missing, malformed or empty file, an unknown chain, or no usable residue.
    """
    path = Path(path)
    atoms = _load_atoms(path)
    chain_ids = list(dict.fromkeys(atoms.chain_id.tolist()))
    if chain is not None:
        if chain not in chain_ids:
            raise ValueError(f"{path}: chain {chain!r} not found among protein chains {chain_ids}")
        chain_ids = [chain]
    backbones = []
    for cid in chain_ids:
        bb = _chain_backbone(atoms[atoms.chain_id == cid], f"{path.stem}_{cid}")
        if bb is not None:
            backbones.append(bb)
    if not backbones:
        which = f"chain {chain!r}" if chain is not None else "any chain"
        raise ValueError(f"{path}: no residue with a complete backbone in {which}")
    return backbones


def _pdb_atom_line(serial: int, atom: str, res: str, chain: str, seq: int, xyz, b: float) -> str:
    name = f" {atom:<3s}"  # one-letter elements start in column 14
    x, y, z = xyz
    return (
        f"ATOM  {serial % 100000:5d} {name}{'':1s}{res:3s} {chain:1s}{seq % 10000:4d}{'':1s}   "
        f"{x:8.3f}{y:8.3f}{z:8.3f}{1.0:6.2f}{b:6.2f}          {atom[0]:>2s}  "
    )


def write_pdb(
    path: str | os.PathLike,
    coords,
    sequence: str | None = None,
    chain_id: str = "A",
    b_factors=None,
) -> None:
    """Write backbones as PDB ATOM records (no CONECT), atomically.

    coords: (L, 4, 3) N, Cα, C, O in Å, or (M, L, 4, 3) for M models (MODEL/ENDMDL records).
    sequence: one-letter, length L (``X`` is written as ``UNK``); default poly-glycine: GLY is the
    residue whose heavy atoms are exactly N, CA, C, O, so the file is complete as written.
    chain_id: one character. b_factors: optional (L,) per-residue values (default 0).
    Residues are numbered 1..L. Coordinates must be finite and within the PDB field range.
    """
    xyz = np.asarray(coords, dtype=np.float64)
    if xyz.ndim == 3:
        xyz = xyz[None]
    if xyz.ndim != 4 or xyz.shape[2:] != (4, 3) or xyz.shape[1] == 0:
        raise ValueError(f"coords: expected shape (L, 4, 3) or (M, L, 4, 3), got {xyz.shape}")
    if not np.isfinite(xyz).all() or np.abs(xyz).max() >= 1000.0:
        raise ValueError(f"coords: must be finite with |x| < 1000 Å for PDB, file {path}")
    length = xyz.shape[1]
    if sequence is None:
        sequence = "G" * length
    if len(sequence) != length:
        raise ValueError(f"sequence: expected length {length}, got {len(sequence)}")
    bad = sorted(set(sequence) - set(_THREE))
    if bad:
        raise ValueError(f"sequence: unknown one-letter code(s) {bad}; allowed {''.join(_THREE)}")
    if not isinstance(chain_id, str) or len(chain_id) != 1:
        raise ValueError(f"chain_id: expected one character, got {chain_id!r}")
    b = np.zeros(length) if b_factors is None else np.asarray(b_factors, dtype=np.float64)
    if b.shape != (length,):
        raise ValueError(f"b_factors: expected shape ({length},), got {b.shape}")
    lines = []
    for m, model in enumerate(xyz):
        if len(xyz) > 1:
            lines.append(f"MODEL     {m + 1:4d}")
        serial = 0
        for i in range(length):
            for k, atom in enumerate(BACKBONE_ATOMS):
                serial += 1
                res = _THREE[sequence[i]]
                lines.append(_pdb_atom_line(serial, atom, res, chain_id, i + 1, model[i, k], b[i]))
        lines.append(f"TER   {serial + 1:5d}      {_THREE[sequence[-1]]} {chain_id}{length:4d}")
        if len(xyz) > 1:
            lines.append("ENDMDL")
    lines.append("END")
    with atomic_write(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
