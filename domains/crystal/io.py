"""Crystals in: CDVAE-format CSV files (a ``cif`` column plus properties) parsed with pymatgen.

Every row's CIF goes through exactly these steps (:func:`canonical_crystal`), the ones of CDVAE's
``build_crystal`` with its defaults ``niggli=True, primitive=False`` that DiffCSP and CrysBFN reuse:

1. ``Structure.from_str(cif, fmt="cif")``;
2. only with ``primitive=True`` (off by default, as in every CDVAE-line config):
   ``get_primitive_structure()``;
3. with ``niggli=True`` (default): ``get_reduced_structure()`` (Niggli reduction of the lattice,
   Cartesian positions kept, sites wrapped into the new cell);
4. canonical orientation: the lattice is rebuilt from its six parameters,
   ``Lattice.from_parameters(a, b, c, α, β, γ)`` (pymatgen's convention: rows are the lattice
   vectors, **a** = (a sin β, 0, a cos β), **c** along z), keeping the *fractional* coordinates,
   so the crystal is only rigidly rotated (or reflected) and any two orientations of one cell
   give the same matrix;
5. fractional coordinates wrapped to [0, 1) (``x mod 1``, with the rounding case 1.0 sent to 0).

Atom types are atomic numbers (H = 1 … Og = 118). Sites must be ordered (one element, occupancy 1).

Errors (:class:`CrystalParseError`, a ``ValueError``) name the file, the data row (0-based,
header not counted, so ``pandas.read_csv(path).iloc[row]`` is that row) and the material id. A
whole-file problem (empty file, no ``cif`` column, no data rows) always raises. A row problem
(malformed CIF, unknown element, disordered site, no sites, degenerate lattice) raises by
default; with ``skip_invalid=True`` the row is skipped instead, recorded in
:attr:`CrystalTable.skipped` and counted in a logged warning. Nothing else is ever dropped.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

log = logging.getLogger(__name__)

#: Bump when the parsed output of a file changes, so that caches from older parsers are unused.
PARSER_VERSION = 1
#: Files with more rows than this show a progress bar unless told otherwise.
PROGRESS_MIN_ROWS = 1000
_UNNAMED = ("", "Unnamed: 0")


class CrystalParseError(ValueError):
    """A CSV file or one of its rows cannot be read; names the file, row and material id."""

    def __init__(self, path: str, reason: str, row: int | None = None, material_id: str = ""):
        self.path, self.reason, self.row, self.material_id = path, reason, row, material_id
        where = "" if row is None else f" data row {row} (0-based), material_id {material_id!r}:"
        super().__init__(f"{path}:{where} {reason}")


@dataclass(frozen=True)
class SkippedRow:
    """A row left out with ``skip_invalid=True``: its 0-based data row, material id and reason."""

    row: int
    material_id: str
    reason: str


@dataclass
class CrystalTable:
    """Parsed crystals of one file, stored as concatenated arrays (B crystals, M atoms in all).

    Attributes:
        types: (M,) int64 atomic numbers, crystal after crystal.
        frac: (M, 3) float64 fractional coordinates in [0, 1).
        lattice: (B, 3, 3) float64 canonical lattices in Å, rows = lattice vectors, so the
            Cartesian positions of crystal b are ``frac[rows of b] @ lattice[b]``.
        lengths: (B, 3) float64 a, b, c in Å; angles: (B, 3) float64 α, β, γ in degrees.
        num_atoms: (B,) int64 atoms per crystal.
        material_id: B ids (the ``material_id`` column, else ``"row<k>"``).
        rows: (B,) int64 the 0-based data row of each crystal in the source file.
        properties: the other columns, by name, each (B,) float64 (NaN where empty) when every
            value is a number, else a list of B strings; the unnamed leading index column of the
            CDVAE files is called ``source_row``.
        skipped: rows left out with ``skip_invalid=True`` (empty otherwise).
        source: the file the crystals came from.
    """

    types: np.ndarray
    frac: np.ndarray
    lattice: np.ndarray
    lengths: np.ndarray
    angles: np.ndarray
    num_atoms: np.ndarray
    material_id: list[str]
    rows: np.ndarray
    properties: dict[str, np.ndarray | list[str]] = field(default_factory=dict)
    skipped: list[SkippedRow] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        b, m = len(self.num_atoms), int(np.sum(self.num_atoms))
        shapes = {
            "types": (self.types.shape, (m,)),
            "frac": (self.frac.shape, (m, 3)),
            "lattice": (self.lattice.shape, (b, 3, 3)),
            "lengths": (self.lengths.shape, (b, 3)),
            "angles": (self.angles.shape, (b, 3)),
            "rows": (self.rows.shape, (b,)),
        }
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"CrystalTable.{name}: expected shape {want}, got {got}")
        if len(self.material_id) != b:
            raise ValueError(
                f"CrystalTable.material_id: expected {b} ids, got {len(self.material_id)}"
            )
        for name, values in self.properties.items():
            if len(values) != b:
                raise ValueError(f"CrystalTable.properties[{name!r}]: expected {b} values")

    def __len__(self) -> int:
        return len(self.num_atoms)

    @property
    def offsets(self) -> np.ndarray:
        """(B + 1,) int64 start of each crystal's atoms in ``types``/``frac``, then M."""
        return np.concatenate([[0], np.cumsum(self.num_atoms)]).astype(np.int64)

    def atoms(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(types (N,), frac (N, 3))`` of crystal ``i``."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return self.types[lo:hi], self.frac[lo:hi]

    def structure(self, i: int):
        """Crystal ``i`` as a pymatgen ``Structure`` (canonical lattice, fractional coordinates)."""
        from pymatgen.core import Lattice, Structure

        types, frac = self.atoms(i)
        return Structure(Lattice(self.lattice[i]), types.tolist(), frac, coords_are_cartesian=False)


@dataclass(frozen=True)
class Crystal:
    """One canonical crystal: ``types`` (N,) int64, ``frac`` (N, 3) in [0, 1), ``lattice`` (3, 3)
    Å rows = lattice vectors, ``lengths`` (3,) Å and ``angles`` (3,) degrees."""

    types: np.ndarray
    frac: np.ndarray
    lattice: np.ndarray
    lengths: np.ndarray
    angles: np.ndarray


def wrap_unit(frac: np.ndarray) -> np.ndarray:
    """``frac mod 1`` in [0, 1): a tiny negative value rounds to 1.0 in floating point and is
    sent to 0.0 (the same point of the torus)."""
    out = np.mod(frac, 1.0)
    out[out >= 1.0] = 0.0
    return out


def canonical_crystal(structure, niggli: bool = True, primitive: bool = False) -> Crystal:
    """Steps 2–5 of the module docstring applied to a pymatgen ``Structure``.

    Raises:
        ValueError: no sites, a disordered site, a site without a real element, or a degenerate
            lattice.
    """
    from pymatgen.core import Lattice
    from pymatgen.core.periodic_table import DummySpecies, Element

    if len(structure) == 0:
        raise ValueError("the structure has no sites")
    for k, site in enumerate(structure):
        if not site.is_ordered:
            raise ValueError(
                f"site {k} is disordered ({site.species}); only ordered sites are read"
            )
        specie = site.specie  # an Element, or a Species (element with oxidation state)
        if isinstance(specie, DummySpecies) or not isinstance(
            specie if isinstance(specie, Element) else getattr(specie, "element", None), Element
        ):
            raise ValueError(f"site {k} has the unknown element {specie.symbol!r}")
    if primitive:
        structure = structure.get_primitive_structure()
    if niggli:
        structure = structure.get_reduced_structure()
    params = structure.lattice.parameters
    lattice = Lattice.from_parameters(*params)
    matrix = np.asarray(lattice.matrix, dtype=np.float64)
    if not np.all(np.isfinite(matrix)) or not abs(np.linalg.det(matrix)) > 1e-8:
        raise ValueError(f"degenerate lattice with parameters {tuple(map(float, params))}")
    return Crystal(
        types=np.asarray(structure.atomic_numbers, dtype=np.int64),
        frac=wrap_unit(np.asarray(structure.frac_coords, dtype=np.float64)),
        lattice=matrix,
        lengths=np.asarray(params[:3], dtype=np.float64),
        angles=np.asarray(params[3:], dtype=np.float64),
    )


def parse_cif(cif: str, niggli: bool = True, primitive: bool = False) -> Crystal:
    """One CIF string to a canonical :class:`Crystal` (steps 1–5 of the module docstring).

    Raises:
        ValueError: empty or malformed CIF (pymatgen's warnings are quoted), or any error of
            :func:`canonical_crystal`.
    """
    from pymatgen.core import Structure

    if not cif or not cif.strip():
        raise ValueError("empty cif")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            structure = Structure.from_str(cif, fmt="cif")
        except Exception as err:  # pymatgen raises ValueError, KeyError, IndexError, ...
            notes = "; ".join(dict.fromkeys(str(w.message) for w in caught))
            extra = f" (pymatgen warnings: {notes})" if notes else ""
            raise ValueError(f"malformed CIF: {type(err).__name__}: {err}{extra}") from err
    try:
        return canonical_crystal(structure, niggli=niggli, primitive=primitive)
    except ValueError:
        raise
    except Exception as err:  # e.g. a Niggli reduction that does not converge
        raise ValueError(f"cannot canonicalise the structure: {type(err).__name__}: {err}") from err


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8")
    return open(path, newline="", encoding="utf-8")


def read_rows(path: str | os.PathLike) -> tuple[list[str], list[list[str]]]:
    """The header and data rows of a ``.csv`` or ``.csv.gz`` file.

    Raises:
        CrystalParseError: empty file, no ``cif`` column, no data rows, or a row whose number
            of fields differs from the header's.
    """
    path = Path(path)
    try:
        with _open_text(path) as handle:
            records = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise CrystalParseError(str(path), f"cannot read the file as CSV: {err}") from err
    if not records:
        raise CrystalParseError(str(path), "empty file: no header and no rows")
    header, rows = records[0], records[1:]
    if "cif" not in header:
        raise CrystalParseError(
            str(path), f"header row: no 'cif' column (columns: {', '.join(map(repr, header))})"
        )
    if not rows:
        raise CrystalParseError(str(path), "no data rows (header only)")
    mid_col = header.index("material_id") if "material_id" in header else None
    for k, values in enumerate(rows):
        if len(values) != len(header):
            mid = values[mid_col] if mid_col is not None and mid_col < len(values) else ""
            raise CrystalParseError(
                str(path),
                f"{len(values)} fields where the header has {len(header)}",
                row=k,
                material_id=mid,
            )
    return header, rows


def _property_columns(header: list[str], rows: list[list[str]], kept: list[int]) -> dict:
    """Every column but ``cif`` and ``material_id``, as float64 arrays when numeric."""
    properties: dict[str, np.ndarray | list[str]] = {}
    for col, name in enumerate(header):
        if name in ("cif", "material_id"):
            continue
        values = [rows[k][col] for k in kept]
        key = "source_row" if name in _UNNAMED else name
        try:
            properties[key] = np.array(
                [float(v) if v.strip() else np.nan for v in values], dtype=np.float64
            )
        except ValueError:
            properties[key] = values
    return properties


def read_crystal_csv(
    path: str | os.PathLike,
    niggli: bool = True,
    primitive: bool = False,
    skip_invalid: bool = False,
    progress: bool | None = None,
) -> CrystalTable:
    """Parse every row of a CDVAE-format CSV (``.csv`` or ``.csv.gz``) into a :class:`CrystalTable`.

    No cache here: :func:`sciflow_domains.crystal.data.load_crystals` caches this on disk.

    Args:
        path: the file; must have a ``cif`` column, ``material_id`` is used when present.
        niggli, primitive: see the module docstring (defaults as CDVAE/DiffCSP/CrysBFN).
        skip_invalid: skip (and log, with a count) rows that fail to parse instead of raising.
        progress: show a tqdm bar; ``None`` shows it for files of more than
            :data:`PROGRESS_MIN_ROWS` rows.

    Raises:
        CrystalParseError: see the module docstring.
    """
    path = Path(path)
    header, rows = read_rows(path)
    cif_col = header.index("cif")
    mid_col = header.index("material_id") if "material_id" in header else None
    show = len(rows) > PROGRESS_MIN_ROWS if progress is None else progress
    crystals: list[Crystal] = []
    kept: list[int] = []
    ids: list[str] = []
    skipped: list[SkippedRow] = []
    for k, values in enumerate(tqdm(rows, desc=f"parsing {path.name}", disable=not show)):
        mid = values[mid_col] if mid_col is not None else f"row{k}"
        try:
            crystal = parse_cif(values[cif_col], niggli=niggli, primitive=primitive)
        except ValueError as err:
            if not skip_invalid:
                raise CrystalParseError(str(path), str(err), row=k, material_id=mid) from err
            skipped.append(SkippedRow(k, mid, str(err)))
            continue
        crystals.append(crystal)
        kept.append(k)
        ids.append(mid)
    if not crystals:
        first = skipped[0]
        raise CrystalParseError(
            str(path),
            f"all {len(rows)} rows failed to parse; the first: {first.reason}",
            row=first.row,
            material_id=first.material_id,
        )
    table = CrystalTable(
        types=np.concatenate([c.types for c in crystals]),
        frac=np.concatenate([c.frac for c in crystals]),
        lattice=np.stack([c.lattice for c in crystals]),
        lengths=np.stack([c.lengths for c in crystals]),
        angles=np.stack([c.angles for c in crystals]),
        num_atoms=np.array([len(c.types) for c in crystals], dtype=np.int64),
        material_id=ids,
        rows=np.array(kept, dtype=np.int64),
        properties=_property_columns(header, rows, kept),
        skipped=skipped,
        source=str(path),
    )
    log_skipped(table)
    return table


def log_skipped(table: CrystalTable) -> None:
    """Log a warning with the number of skipped rows of ``table`` and the first few reasons."""
    if not table.skipped:
        return
    first = "; ".join(f"row {s.row} ({s.material_id}): {s.reason}" for s in table.skipped[:3])
    log.warning(
        "%s: skipped %d of %d rows that failed to parse (skip_invalid=True); first: %s",
        table.source,
        len(table.skipped),
        len(table) + len(table.skipped),
        first,
    )
