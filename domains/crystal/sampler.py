"""Sampling crystals from a trained model: pymatgen structures and CIFs out.

``sciflow.load_sampler(ckpt)`` returns a :class:`CrystalSampler` for crystal checkpoints. Crystal
structure prediction (CSP models, types given) takes compositions with their atom counts; ab
initio models (with a ``types`` part) generate the types too, for crystal sizes drawn from the
training atom-count histogram stored in the checkpoint or given explicitly::

    res = load_sampler("csp.ckpt").sample(compositions=["SrTiO3", "Ba2Ti2O6"], seed=0)
    res = load_sampler("abinitio.ckpt").sample(num_samples=100, seed=0)
    res = load_sampler("abinitio.ckpt").sample(num_atoms=[5, 5, 10], seed=0)
    # a model trained with a property condition (configs/crystal/*_heat_ref_*.yaml), guided
    res = load_sampler("guided.ckpt").sample(num_samples=100, property=0.5, guidance_scale=1.0)
    structures = res.to_structures()    # pymatgen Structure per sample
    res.write_cifs("generated/")        # one CIF per structure

Lattices come back in Å (times the task's ``lattice_scale``); fractional coordinates in [0, 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from sciflow_domains.crystal.data import class_to_atomic_number, sample_num_atoms
from sciflow_domains.crystal.task import task_of_engine

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
    """Sampled crystals: ``samples["frac"]`` (M, 3), ``samples["lattice"]`` (B, 9) in model units
    (and, ab initio, ``samples["types"]`` (M,) atomic numbers), ``types`` (M,) atomic numbers,
    ``index`` (M,) the crystal of each atom and ``lattice_scale`` (Å per unit)."""

    types: torch.Tensor | None = None
    index: torch.Tensor | None = None
    lattice_scale: float = 1.0

    def to_numpy(self) -> dict[str, np.ndarray]:
        """The samples plus ``types`` and ``index`` (what splits the atoms into crystals)."""
        return {**super().to_numpy(), "types": self.types.numpy(), "index": self.index.numpy()}

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
    """A `Sampler` for crystals: structure prediction for CSP models, generation for ab initio
    models (see the module docstring); the model's task is read from its engine."""

    @property
    def task_kind(self) -> str:
        """``"abinitio"`` (the engine generates atom types) or ``"csp"`` (types are given)."""
        return task_of_engine(self.engine)

    def sample(
        self,
        compositions: list | None = None,
        num_steps: int | None = None,
        solver: str | None = None,
        seed: int | None = 0,
        return_trajectory: bool = False,
        progress: bool = False,
        num_samples: int | None = None,
        num_atoms: list[int] | None = None,
        property: float | list[float] | None = None,
        guidance_scale: float | None = None,
    ) -> CrystalSamples:
        """Sample crystals, all in one batch.

        CSP models: one structure per composition of ``compositions`` (``num_samples``, if
        given, must equal their number). Ab initio models: ``num_samples`` crystals whose atom
        counts are drawn from the training histogram, or one crystal per entry of ``num_atoms``;
        their types are the argmax of the type flow's final distribution (the ``types`` part's
        ``final`` setting). ``num_steps``/``solver`` default to the engine's own (for CrysBFN
        the training n and ``"vanilla"``; ``"end_back"`` is CrysBFN's sampler); ``seed`` fixes
        the atom counts and the samples.

        Models trained with a property condition (the task's ``condition_property``) take a
        target ``property`` in the units of the data column (one value, or one per crystal);
        without it they sample unconditionally (the learned null condition).
        ``guidance_scale`` w mixes ``(1 + w)·out(property) − w·out(null)`` at every step
        (classifier-free guidance; 0 = plain conditional sampling, two network calls per step
        otherwise).
        """
        if compositions is not None and not isinstance(compositions, (list, tuple)):
            raise TypeError(
                f"compositions: expected a list of formulas with atom counts, got "
                f"{type(compositions).__name__}; for ab initio generation pass num_samples=..."
            )
        if self.task_kind == "csp":
            types, counts = self._csp_types(compositions, num_samples, num_atoms)
            cond = {"types": types.to(self.device)}
        else:
            if compositions is not None:
                raise ValueError(
                    "compositions: this model generates atom types (ab initio); give num_samples "
                    "or num_atoms, or use a CSP model to predict structures of compositions"
                )
            histogram = getattr(self.task, "num_atoms_histogram", None)
            counts = crystal_sizes(num_samples, num_atoms, histogram, seed)
            types, cond = None, {}
        if property is not None:
            cond["property"] = self._standardised_property(property, len(counts))
        elif guidance_scale:
            raise ValueError("guidance_scale: guidance needs a target, give property=...")
        index = torch.repeat_interleave(torch.arange(len(counts)), counts)
        context = {"index": index.to(self.device), **({"cond": cond} if cond else {})}
        result = self._draw(
            len(counts), context, self.generator(seed), num_steps, solver, return_trajectory,
            progress, guidance_scale, seed,
        )  # fmt: skip
        if types is None:
            types = class_to_atomic_number(result.samples["types"])
            result.samples["types"] = types
        base = {f.name: getattr(result, f.name) for f in fields(SampleResult)}
        scale = getattr(self.task, "lattice_scale", 1.0)
        return CrystalSamples(**base, types=types, index=index, lattice_scale=scale)

    def _standardised_property(self, value, num_crystals: int) -> torch.Tensor:
        """(B, 1) target ``value`` (one number or B) in the network's standardised units."""
        scaling = getattr(self.task, "condition_property", None)
        if scaling is None:
            raise ValueError(
                "property: this model was trained without a property condition; train one with "
                "data.init_args.condition_property (e.g. configs/crystal/"
                "crysbfn_abinitio_perov5_heat_ref_cpu.yaml)"
            )
        target = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
        if target.numel() == 1:
            target = target.expand(num_crystals)
        if target.numel() != num_crystals or not torch.isfinite(target).all():
            raise ValueError(
                f"property: expected one finite {scaling['name']} value or {num_crystals} (one "
                f"per crystal), got {value!r}"
            )
        standardised = (target - scaling["mean"]) / scaling["std"]
        return standardised.float().unsqueeze(-1).to(self.device)

    @staticmethod
    def _csp_types(compositions, num_samples, num_atoms) -> tuple[torch.Tensor, torch.Tensor]:
        """Atomic numbers (M,) and atom counts (B,) of the CSP compositions."""
        if compositions is None:
            raise ValueError(
                "compositions: this model predicts structures of given compositions (CSP), e.g. "
                "['Sr1 Ti1 O3']; ab initio generation (num_samples alone) needs a model trained "
                "with a 'types' part (configs/crystal/crysbfn_abinitio_*.yaml)"
            )
        if num_atoms is not None:
            raise ValueError("num_atoms: CSP takes the atom counts from the compositions")
        if num_samples is not None and num_samples != len(compositions):
            raise ValueError(f"num_samples={num_samples} but {len(compositions)} compositions")
        per_crystal = [composition_types(c) for c in compositions]
        types = torch.tensor([z for t in per_crystal for z in t], dtype=torch.long)
        return types, torch.tensor([len(t) for t in per_crystal])


def crystal_sizes(
    num_samples: int | None,
    num_atoms: list[int] | torch.Tensor | None,
    histogram: list[int] | None,
    seed: int | None,
) -> torch.Tensor:
    """(B,) int64 atom counts of ab initio samples: ``num_atoms`` as given, else ``num_samples``
    draws from ``histogram`` (entry n = training crystals with n atoms) with a CPU generator
    seeded by ``seed`` (``None``: random)."""
    if num_atoms is not None:
        counts = torch.as_tensor(num_atoms)
        if counts.ndim != 1 or counts.numel() == 0 or counts.is_floating_point():
            raise ValueError(f"num_atoms: expected a non-empty list of ints, got {num_atoms!r}")
        if int(counts.min()) < 1:
            raise ValueError(f"num_atoms: expected atom counts >= 1, got {counts.tolist()}")
        if num_samples is not None and num_samples != len(counts):
            raise ValueError(f"num_samples={num_samples} but {len(counts)} entries in num_atoms")
        return counts.long()
    if num_samples is None:
        raise ValueError("num_samples: give the number of crystals (or num_atoms, one per crystal)")
    if histogram is None:
        raise ValueError(
            "num_atoms: this model has no atom-count histogram (its task's num_atoms_histogram "
            "is unset, e.g. it was not fitted on a CrystalDataModule); pass num_atoms=[...]"
        )
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return sample_num_atoms(histogram, num_samples, generator)
