"""No-learning CSP baselines: the ideal cubic perovskite prototype and random positions.

A learned structure predictor has shown something only where it beats these on the same
compositions and the same matcher.

- :func:`ideal_perovskite`: for an ABX₃ composition, the cubic Pm-3m perovskite with B at the
  cell corner (0, 0, 0), A at the body centre (½, ½, ½) and X at the face centres (½, 0, 0),
  (0, ½, 0), (0, 0, ½). The three most electronegative atoms are the anions X (mixed anions
  such as O₂N allowed); of the two cations the one with the larger ionic radius goes on the
  12-coordinated A site (``a_site="smaller"`` gives the other site ordering, which Perov-5
  holds as a second entry of the same composition). The lattice constant is the B–X bond
  doubled, a = 2 (r_B + r̄_X), from the same radii (the CSP matcher scales volumes, so this only
  sets the scale of the CIF).
- :func:`random_positions`: the composition's atoms at uniform random fractional positions in a
  cubic cell of a given volume.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Composition, Element, Lattice, Structure


def ionic_radius(element: Element) -> float:
    """The element's average ionic radius in Å (pymatgen), or its atomic radius when pymatgen has
    no ionic radius for it (radius 0)."""
    radius = float(element.average_ionic_radius)
    if radius > 0:
        return radius
    if element.atomic_radius is None:
        raise ValueError(f"{element}: pymatgen knows neither an ionic nor an atomic radius")
    return float(element.atomic_radius)


def perovskite_sites(
    composition: Composition | str, a_site: str = "larger"
) -> tuple[Element, Element, list[Element]]:
    """(A, B, [X, X, X]) of a 5-atom ABX₃ composition, mixed anions allowed (Perov-5 has e.g.
    ABO₂N): the three most electronegative atoms (Pauling) are the anions X, and of the other two
    A is the one with the larger :func:`ionic_radius` (``a_site="smaller"``: the smaller one).

    Raises:
        ValueError: naming the composition when it does not have 5 atoms, or a bad ``a_site``.
    """
    if a_site not in ("larger", "smaller"):
        raise ValueError(f"a_site: expected 'larger' or 'smaller', got {a_site!r}")
    comp = Composition(composition)
    atoms = [el for el, n in comp.items() for _ in range(int(round(n)))]
    if len(atoms) != 5 or abs(comp.num_atoms - 5) > 1e-6:
        raise ValueError(
            f"composition {comp.formula!r}: the perovskite prototype places one ABX3 formula "
            f"unit (5 atoms), got {comp.num_atoms:g} atoms"
        )
    atoms.sort(key=lambda el: el.X)
    larger, smaller = sorted(atoms[:2], key=ionic_radius, reverse=True)
    return (larger, smaller, atoms[2:]) if a_site == "larger" else (smaller, larger, atoms[2:])


def ideal_perovskite(composition: Composition | str, a_site: str = "larger") -> Structure:
    """The ideal cubic ABX₃ prototype of a 5-atom ``composition`` (module docstring); ``a_site``
    as in :func:`perovskite_sites`.

    Raises:
        ValueError: for a composition that is not one ABX₃ formula unit (5 atoms), or a bad
            ``a_site``.
    """
    a_cation, b_cation, anions = perovskite_sites(composition, a_site)
    r_x = float(np.mean([ionic_radius(el) for el in anions]))
    side = 2.0 * (ionic_radius(b_cation) + r_x)
    species = [b_cation, a_cation, *anions]
    coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]
    return Structure(Lattice.cubic(side), species, coords)


def random_positions(
    compositions: Sequence[Composition | str], volumes: Sequence[float], seed: int = 0
) -> list[Structure]:
    """For each composition, its atoms at uniform random fractional coordinates in a cubic cell of
    the given volume (Å³); seeded, so the floor is reproducible."""
    if len(compositions) != len(volumes):
        raise ValueError(
            f"random_positions: {len(compositions)} compositions but {len(volumes)} volumes"
        )
    rng = np.random.default_rng(seed)
    out = []
    for comp, volume in zip(compositions, volumes, strict=True):
        if not volume > 0:
            raise ValueError(f"random_positions: volume must be positive, got {volume!r}")
        comp = Composition(comp)
        species = [el for el, n in comp.items() for _ in range(int(round(n)))]
        lattice = Lattice.cubic(float(volume) ** (1 / 3))
        out.append(Structure(lattice, species, rng.random((len(species), 3))))
    return out
