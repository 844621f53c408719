"""Validity of crystals as in the CDVAE protocol: structural, compositional (SMACT), both.

* Structural: every distance between two different sites (minimum image under periodic boundary
  conditions, pymatgen's ``Structure.distance_matrix``) is at least ``cutoff`` (0.5 Å) and the cell
  volume is at least 0.1 Å³. As in the reference, the distance of a site to its own periodic images
  (the shortest lattice vector) is not checked.
* Compositional: the reduced formula passes SMACT's charge-neutrality test for some combination of
  oxidation states, and that combination passes the Pauling electronegativity test (cations less
  electronegative than anions). Single-element compositions and all-metal compositions (alloys)
  count as valid; an element SMACT has no data for makes a composition invalid. Written against
  the SMACT >= 3 API (``neutral_ratios`` returns the list of ratios; ``Element.oxidation_states``
  now means the ICSD-2024 set). The reference pinned SMACT 2.2.1, whose default set is the 2014
  SMACT list, so that set (``"smact14"``) is the default here.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Composition, Structure

log = logging.getLogger(__name__)

STRUCT_DISTANCE_CUTOFF = 0.5  # Å
MIN_VOLUME = 0.1  # Å³

_OXIDATION_SETS = {
    "smact14": "oxidation_states_smact14",
    "icsd16": "oxidation_states_icsd16",
    "icsd24": "oxidation_states_icsd24",
}


def _check_structure(obj, what: str = "structure") -> Structure:
    if not isinstance(obj, Structure):
        raise TypeError(f"{what} must be a pymatgen Structure, got {type(obj).__name__}")
    return obj


def min_interatomic_distance(structure: Structure) -> float:
    """Smallest distance (Å) between two different sites under PBC; ``inf`` for one site."""
    _check_structure(structure)
    if len(structure) < 2:
        return math.inf
    dist = np.array(structure.distance_matrix, dtype=float)
    np.fill_diagonal(dist, np.inf)
    return float(dist.min())


def structure_validity(structure: Structure, cutoff: float = STRUCT_DISTANCE_CUTOFF) -> bool:
    """True when all interatomic distances are >= ``cutoff`` Å and the volume is >= 0.1 Å³."""
    _check_structure(structure)
    volume = float(structure.volume)
    if not np.isfinite(volume) or volume < MIN_VOLUME:
        return False
    return min_interatomic_distance(structure) >= cutoff


@functools.lru_cache(maxsize=256)
def _smact_elements(symbols: tuple[str, ...]):
    import smact

    return smact.element_dictionary(symbols)


@functools.lru_cache(maxsize=65536)
def _composition_validity_cached(
    symbols: tuple[str, ...], counts: tuple[int, ...], oxidation_set: str, include_alloys: bool
) -> bool:
    import smact
    from smact.screening import pauling_test

    if len(symbols) == 1:
        return True
    if include_alloys and all(s in smact.metals for s in symbols):
        return True
    try:
        elements = _smact_elements(symbols)
    except KeyError as err:  # an element SMACT has no data for (e.g. Og)
        log.warning("composition %s counted invalid: %s", "".join(symbols), err)
        return False
    ox_lists = [getattr(elements[s], _OXIDATION_SETS[oxidation_set]) or [] for s in symbols]
    enegs = [elements[s].pauling_eneg for s in symbols]
    stoichs = [(c,) for c in counts]
    for ox_states in itertools.product(*ox_lists):
        if not smact.neutral_ratios(ox_states, stoichs=stoichs, threshold=max(counts)):
            continue
        # The reference treats a missing electronegativity (TypeError in SMACT 2) as a pass.
        if any(e is None for e in enegs) or pauling_test(ox_states, enegs):
            return True
    return False


def composition_validity(
    composition: Composition | Structure | str,
    *,
    oxidation_set: str = "smact14",
    include_alloys: bool = True,
) -> bool:
    """SMACT charge neutrality + Pauling electronegativity of the reduced formula.

    ``composition`` may be a ``Composition``, a formula string or a ``Structure``.
    ``oxidation_set`` picks SMACT's oxidation-state list: ``"smact14"`` (default, what the
    CDVAE/DiffCSP/CrysBFN numbers were computed with), ``"icsd16"`` or ``"icsd24"``.
    """
    if oxidation_set not in _OXIDATION_SETS:
        raise ValueError(
            f"unknown oxidation_set {oxidation_set!r}; valid: {', '.join(_OXIDATION_SETS)}"
        )
    if isinstance(composition, Structure):
        composition = composition.composition
    elif isinstance(composition, str):
        composition = Composition(composition)
    elif not isinstance(composition, Composition):
        raise TypeError(
            f"composition must be a Composition, Structure or formula string, "
            f"got {type(composition).__name__}"
        )
    amounts = composition.get_el_amt_dict()
    if not amounts:
        raise ValueError("empty composition")
    if any(abs(v - round(v)) > 1e-6 for v in amounts.values()):
        raise ValueError(f"composition {composition} has non-integer amounts (disordered?)")
    symbols = tuple(sorted(amounts))
    counts = [round(amounts[s]) for s in symbols]
    gcd = math.gcd(*counts)
    reduced = tuple(c // gcd for c in counts)
    return _composition_validity_cached(symbols, reduced, oxidation_set, include_alloys)


def validity(structure: Structure, *, oxidation_set: str = "smact14") -> dict[str, bool]:
    """``{"struct_valid", "comp_valid", "valid"}`` of one structure (valid = both)."""
    struct_ok = structure_validity(structure)
    comp_ok = composition_validity(structure, oxidation_set=oxidation_set)
    return {"struct_valid": struct_ok, "comp_valid": comp_ok, "valid": struct_ok and comp_ok}


def validity_rates(
    structures: Sequence[Structure], *, oxidation_set: str = "smact14"
) -> dict[str, float]:
    """Fractions of structurally, compositionally and fully valid structures."""
    if len(structures) == 0:
        raise ValueError("validity_rates: no structures given")
    flags = [validity(s, oxidation_set=oxidation_set) for s in structures]
    return {
        k: float(np.mean([f[k] for f in flags])) for k in ("struct_valid", "comp_valid", "valid")
    }
