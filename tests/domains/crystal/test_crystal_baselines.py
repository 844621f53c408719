"""The no-learning CSP baselines: the ideal cubic perovskite and random positions."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Composition, Element, Lattice, Structure
from sciflow_domains.crystal.baselines import (
    ideal_perovskite,
    perovskite_sites,
    random_positions,
)
from sciflow_domains.crystal.metrics_csp import make_matcher


def test_srtio3_prototype_is_the_textbook_cubic_perovskite():
    reference = Structure(  # SrTiO3, Pm-3m, a = 3.905 Å, origin on Sr
        Lattice.cubic(3.905),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    predicted = ideal_perovskite("SrTiO3")
    assert predicted.composition == Composition("SrTiO3")
    assert predicted.lattice.abc == pytest.approx((predicted.lattice.a,) * 3)
    assert predicted.lattice.angles == pytest.approx((90.0, 90.0, 90.0))
    assert make_matcher().fit(predicted, reference)
    # B in its octahedron: Ti has six O neighbours at a/2
    ti = next(i for i, site in enumerate(predicted) if site.specie == Element("Ti"))
    neighbours = predicted.get_neighbors(predicted[ti], predicted.lattice.a / 2 + 1e-6)
    assert sorted(n.specie.symbol for n in neighbours) == ["O"] * 6


def test_sites_put_the_larger_cation_on_a_and_allow_mixed_anions():
    assert perovskite_sites("TiBaO3")[:2] == (Element("Ba"), Element("Ti"))
    a_site, b_site, anions = perovskite_sites("BaTaO2N")
    assert (a_site, b_site) == (Element("Ba"), Element("Ta"))
    assert sorted(el.symbol for el in anions) == ["N", "O", "O"]
    assert perovskite_sites("NbKO3")[0] == Element("K")


def test_the_other_site_ordering_swaps_the_cations_and_never_matches_the_first():
    assert perovskite_sites("BaTaO2N", a_site="smaller")[:2] == (Element("Ta"), Element("Ba"))
    swapped = ideal_perovskite("SrTiO3", a_site="smaller")
    sr = next(i for i, site in enumerate(swapped) if site.specie == Element("Sr"))
    neighbours = swapped.get_neighbors(swapped[sr], swapped.lattice.a / 2 + 1e-6)
    assert sorted(n.specie.symbol for n in neighbours) == ["O"] * 6  # Sr now in the octahedron
    assert not make_matcher().fit(swapped, ideal_perovskite("SrTiO3"))
    with pytest.raises(ValueError, match="a_site.*'middle'"):
        ideal_perovskite("SrTiO3", a_site="middle")


def test_prototype_rejects_compositions_that_are_not_one_formula_unit():
    with pytest.raises(ValueError, match="'Sr2 Ti2 O6'.*5 atoms.*10"):
        ideal_perovskite("Sr2Ti2O6")
    with pytest.raises(ValueError, match="'Na1 Cl1'"):
        ideal_perovskite("NaCl")


def test_random_positions_are_seeded_and_keep_volume_and_composition():
    comps, volumes = ["SrTiO3", "C8"], [60.0, 45.0]
    first = random_positions(comps, volumes, seed=3)
    again = random_positions(comps, volumes, seed=3)
    other = random_positions(comps, volumes, seed=4)
    for s, comp, volume in zip(first, comps, volumes, strict=True):
        assert s.composition == Composition(comp)
        assert s.volume == pytest.approx(volume)
    assert np.array_equal(first[1].frac_coords, again[1].frac_coords)
    assert not np.array_equal(first[1].frac_coords, other[1].frac_coords)
    with pytest.raises(ValueError, match="2 compositions but 1 volumes"):
        random_positions(comps, [1.0])
