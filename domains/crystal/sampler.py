"""Sampling crystals from a trained model: compositions in, pymatgen structures and CIFs out.

``sciflow.load_sampler(ckpt)`` returns a :class:`CrystalSampler` for crystal checkpoints.
Crystal structure prediction (CSP) takes compositions with their atom counts::

    res = load_sampler("last.ckpt").sample(compositions=["SrTiO3", "Ba2Ti2O6"], seed=0)
    structures = res.to_structures()    # pymatgen Structure per composition
    res.write_cifs("predicted/")        # one CIF per structure

Lattices come back in Å (times the task's ``lattice_scale``); fractional coordinates in [0, 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from sciflow.api import Sampler, SampleResult
from sciflow.atomic import write_text_atomic


def composition_types(composition) -> list[int]:
    """Atomic numbers of every atom of ``composition`` (a formula string or a pymatgen
    `Composition` with whole atom counts, e.g. ``"Sr1 Ti1 O3"``), grouped by element."""
    from pymatgen.core import Composition, Element

    try:
        comp = Composition(composition)
    except Exception as err:  # pymatgen raises several types for bad formulas
        raise ValueError(f"composition {composition!r}: not a chemical formula ({err})") from err
    types = []
    for element, amount in comp.items():
        if not isinstance(element, Element):
            raise ValueError(f"composition {composition!r}: {element} is not a chemical element")
        if abs(amount - round(amount)) > 1e-8 or round(amount) < 1:
            raise ValueError(
                f"composition {composition!r}: {element} has {amount} atoms; give whole atom "
                "counts of the cell (e.g. 'Sr1 Ti1 O3', not a reduced fraction)"
            )
        types += [element.Z] * round(amount)
    if not types:
        raise ValueError(f"composition {composition!r}: no atoms")
    return types


@dataclass
class CrystalSamples(SampleResult):
    """Sampled crystals: ``samples["frac"]`` (M, 3), ``samples["lattice"]`` (B, 9) in model units,
    ``types`` (M,) atomic numbers, ``index`` (M,) and ``lattice_scale`` (Å per unit)."""

    types: torch.Tensor | None = None
    index: torch.Tensor | None = None
    lattice_scale: float = 1.0

    def lattices(self) -> np.ndarray:
        """(B, 3, 3) lattices in Å, rows = lattice vectors."""
        return (self.samples["lattice"].double() * self.lattice_scale).reshape(-1, 3, 3).numpy()

    def to_structures(self) -> list:
        """One pymatgen `Structure` per sample (fractional coordinates wrapped to [0, 1))."""
        from pymatgen.core import Lattice, Structure

        frac = torch.remainder(self.samples["frac"].double(), 1.0).numpy()
        index, types = self.index.numpy(), self.types.numpy()
        return [
            Structure(Lattice(lattice), types[index == b].tolist(), frac[index == b])
            for b, lattice in enumerate(self.lattices())
        ]

    def write_cifs(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write ``crystal_<i>_<formula>.cif`` per sample, atomically; returns the paths."""
        from pymatgen.io.cif import CifWriter

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, structure in enumerate(self.to_structures()):
            path = out / f"crystal_{i:04d}_{structure.composition.formula.replace(' ', '')}.cif"
            write_text_atomic(path, str(CifWriter(structure)))
            paths.append(path)
        return paths

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        """``samples.npz`` (model units) and one CIF per crystal."""
        return [*super().write(out_dir), *self.write_cifs(out_dir)]


class CrystalSampler(Sampler):
    """A `Sampler` for crystal structure prediction (see the module docstring)."""

    def sample(
        self,
        compositions: list | None = None,
        num_steps: int | None = None,
        solver: str | None = None,
        seed: int | None = 0,
        return_trajectory: bool = False,
        progress: bool = False,
        num_samples: int | None = None,
    ) -> CrystalSamples:
        """Predict one structure per composition (CSP), all in one batch.

        ``num_steps``/``solver`` default to the engine's own (for CrysBFN the training n and
        ``"vanilla"``; ``"end_back"`` is CrysBFN's sampler). ``num_samples``, if given, must
        equal the number of compositions.
        """
        if compositions is None:
            raise ValueError(
                "compositions: crystal structure prediction needs compositions with atom "
                "counts, e.g. ['Sr1 Ti1 O3']; ab initio generation is not implemented yet"
            )
        if "types" in self.engine.components:
            raise ValueError("compositions: this model generates atom types (ab initio), not CSP")
        if num_samples is not None and num_samples != len(compositions):
            raise ValueError(f"num_samples={num_samples} but {len(compositions)} compositions")
        per_crystal = [composition_types(c) for c in compositions]
        types = torch.tensor([z for t in per_crystal for z in t], dtype=torch.long)
        counts = torch.tensor([len(t) for t in per_crystal])
        index = torch.repeat_interleave(torch.arange(len(per_crystal)), counts)
        context = {"index": index.to(self.device), "cond": {"types": types.to(self.device)}}
        generator = self.generator(seed)
        result = self._draw(
            len(per_crystal), context, generator, num_steps, solver, return_trajectory,
            progress, None, seed,
        )  # fmt: skip
        base = {f.name: getattr(result, f.name) for f in fields(SampleResult)}
        scale = getattr(self.task, "lattice_scale", 1.0)
        return CrystalSamples(**base, types=types, index=index, lattice_scale=scale)
