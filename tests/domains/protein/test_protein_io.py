"""PDB/mmCIF reading and PDB writing of protein backbones."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

pytest.importorskip("biotite")

from sciflow_domains.protein.frames import (  # noqa: E402
    backbone_from_frames,
    frames_from_backbone,
)
from sciflow_domains.protein.io import find_breaks, read_structure, write_pdb  # noqa: E402


def _place(a, b, c, r, theta, chi):
    """Atom d with |cd| = r, angle bcd = theta, torsion abcd = chi (NeRF)."""
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    return c + r * (
        -math.cos(theta) * bc + math.sin(theta) * (math.cos(chi) * m + math.sin(chi) * n)
    )


def _chain(n: int = 12) -> np.ndarray:
    """An ideal α-helix backbone (n, 4, 3): φ = −57°, ψ = −47°, ω = 180°, O from the frames."""
    rad = math.radians
    atoms = [np.array([0.0, 1.458, 0.0]), np.zeros(3)]
    atoms.append(_place(np.array([1.0, 1.0, 0.0]), atoms[0], atoms[1], 1.525, rad(111.2), 0.0))
    for _ in range(n - 1):
        atoms.append(_place(*atoms[-3:], 1.329, rad(116.2), rad(-47.0)))  # N: ψ
        atoms.append(_place(*atoms[-3:], 1.458, rad(121.7), rad(180.0)))  # CA: ω
        atoms.append(_place(*atoms[-3:], 1.525, rad(111.2), rad(-57.0)))  # C: φ
    x = torch.tensor(np.array(atoms)).reshape(n, 3, 3)
    q, t = frames_from_backbone(x[:, 0], x[:, 1], x[:, 2])
    return backbone_from_frames(q, t).numpy()


def test_write_read_round_trip(tmp_path):
    x = _chain()
    seq = "ACDEFGHIKLMX"
    path = tmp_path / "out.pdb"
    write_pdb(path, x, sequence=seq, chain_id="B", b_factors=np.linspace(0, 50, len(x)))
    (bb,) = read_structure(path)
    assert bb.name == "out_B" and bb.sequence == seq and len(bb.breaks) == 0
    np.testing.assert_allclose(bb.coords, x, atol=1e-3)
    np.testing.assert_array_equal(bb.res_id, np.arange(1, 13))
    assert "CONECT" not in path.read_text()


def test_default_sequence_is_glycine_and_models(tmp_path):
    x = _chain()
    path = tmp_path / "two.pdb"
    write_pdb(path, np.stack([x, x + 1.0]))
    text = path.read_text()
    assert text.count("MODEL") == 2 and "UNK" not in text and "GLY" in text
    (bb,) = read_structure(path)  # model 1
    np.testing.assert_allclose(bb.coords, x, atol=1e-3)
    assert bb.sequence == "G" * len(x)


def test_missing_backbone_atom_and_break_are_reported(tmp_path, caplog):
    x = _chain(20)
    x[10:] += np.array([10.0, 0.0, 0.0])  # a gap between residues 10 and 11 (1-based)
    path = tmp_path / "gap.pdb"
    write_pdb(path, x)
    lines = path.read_text().splitlines()
    # remove the O of residue 4 (lines are 4 per residue, residue 4 = indices 12..15)
    lines = [
        ln
        for ln in lines
        if not (ln.startswith("ATOM") and ln[22:26].strip() == "4" and ln[12:16] == " O  ")
    ]
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING):
        (bb,) = read_structure(path, chain="A")
    assert len(bb) == 19 and 4 not in bb.res_id
    assert "dropped 1 residue(s) missing a backbone atom" in caplog.text and "GLY4" in caplog.text
    # the dropped residue and the shift are both breaks: after res 3 and after res 10
    np.testing.assert_array_equal(bb.res_id[bb.breaks], [3, 10])
    assert "2 chain break(s)" in caplog.text
    np.testing.assert_array_equal(find_breaks(bb.coords), bb.breaks)


def test_mmcif_is_read(tmp_path):
    import biotite.structure.io as strucio

    x = _chain()
    pdb = tmp_path / "a.pdb"
    write_pdb(pdb, x, sequence="ACDEFGHIKLMV")
    cif = tmp_path / "a.cif"
    strucio.save_structure(str(cif), strucio.load_structure(str(pdb)))
    (bb,) = read_structure(cif)
    assert bb.sequence == "ACDEFGHIKLMV"
    np.testing.assert_allclose(bb.coords, x, atol=1e-3)


@pytest.mark.parametrize(
    ("name", "text"),
    [("junk.pdb", "this is not a structure\n"), ("empty.pdb", ""), ("junk.cif", "data_x\nfoo\n")],
)
def test_malformed_file_raises_naming_it(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=name):
        read_structure(path)


def test_unknown_chain_and_missing_file_raise(tmp_path):
    path = tmp_path / "a.pdb"
    write_pdb(path, _chain())
    with pytest.raises(ValueError, match=r"a\.pdb.*chain 'Z'"):
        read_structure(path, chain="Z")
    with pytest.raises(ValueError, match="nothere.pdb"):
        read_structure(tmp_path / "nothere.pdb")


def test_write_pdb_rejects_bad_input(tmp_path):
    x = _chain()
    with pytest.raises(ValueError, match="coords"):
        write_pdb(tmp_path / "a.pdb", x[:, :3])
    with pytest.raises(ValueError, match="sequence"):
        write_pdb(tmp_path / "a.pdb", x, sequence="AC")
    with pytest.raises(ValueError, match="unknown one-letter"):
        write_pdb(tmp_path / "a.pdb", x, sequence="B" * len(x))
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        write_pdb(tmp_path / "a.pdb", bad)
    assert not (tmp_path / "a.pdb").exists()
