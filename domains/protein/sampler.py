"""Sampling protein backbones from a trained model: chain lengths in, PDB files out.

``sciflow.load_sampler(ckpt)`` returns a :class:`ProteinSampler` for protein checkpoints::

    res = load_sampler("last.ckpt").sample(lengths=[64, 100, 128], num_steps=20, seed=0)
    res.write_pdbs("designs/")          # one poly-GLY PDB per backbone (N, Cα, C, O)
    backbones = res.to_backbones()      # list of Backbone (coords (L, 4, 3) Å)

Mixed lengths share one padded batch with a mask. The model works in units of ``trans_unit`` Å
(10 Å: what `ProteinDataModule` divides translations by); samples are multiplied back to Å.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from sciflow_domains.protein.datamodule import DEFAULT_TRANS_SCALE
from sciflow_domains.protein.frames import backbone_from_frames
from sciflow_domains.protein.io import Backbone, write_pdb

from sciflow.api import Sampler, SampleResult
from sciflow.geometry.quaternion import from_matrix

#: ReQFlow draws reflow lengths from its training set, restricted to 60–128 residues.
REFLOW_LENGTHS = (60, 128)


def as_quaternions(rot: torch.Tensor) -> torch.Tensor:
    """Rotations as unit quaternions: (..., 4) passes through, (..., 9) matrices convert."""
    return from_matrix(rot.unflatten(-1, (3, 3))) if rot.shape[-1] == 9 else rot


@dataclass
class ProteinSamples(SampleResult):
    """Sampled backbones: ``samples["rot"]`` (B, N, 4|9), ``samples["trans"]`` (B, N, 3) in model
    units, ``context["mask"]`` (B, N) and ``lengths`` (B,)."""

    lengths: tuple[int, ...] = ()
    trans_unit: float = DEFAULT_TRANS_SCALE

    def atoms(self, which: str = "samples") -> torch.Tensor:
        """N, Cα, C, O (B, N, 4, 3) in Å of the ``samples`` or of the ``noise`` they came from."""
        frames = self.samples if which == "samples" else self.noise
        if frames is None:
            raise ValueError(f"{which}: not kept in this result")
        mask = self.context["mask"]
        trans = frames["trans"].double() * self.trans_unit
        return backbone_from_frames(as_quaternions(frames["rot"].double()), trans, mask=mask)

    def to_backbones(self, which: str = "samples") -> list[Backbone]:
        """One `Backbone` per sample (``which="noise"``: the prior draws, as backbones)."""
        atoms = self.atoms(which).float().numpy()
        return [
            Backbone(
                name=f"{which[:-1] if which == 'samples' else which}_{i:03d}_len{n}",
                coords=atoms[i, :n],
                res_id=np.arange(1, n + 1),
                sequence="G" * n,
                breaks=np.zeros(0, dtype=np.int64),
            )
            for i, n in enumerate(self.lengths)
        ]

    def write_pdbs(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write ``sample_<i>_len<L>.pdb`` per backbone (poly-GLY, atomically); returns paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for backbone in self.to_backbones():
            path = out / f"{backbone.name}.pdb"
            write_pdb(path, backbone.coords)
            paths.append(path)
        return paths

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        """``samples.npz`` (model units) and one PDB per backbone (Å)."""
        return [*super().write(out_dir), *self.write_pdbs(out_dir)]


class ProteinSampler(Sampler):
    """A `Sampler` that draws backbones of requested lengths (see the module docstring)."""

    trans_unit = DEFAULT_TRANS_SCALE

    def sample(
        self,
        lengths: list[int] | None = None,
        num_steps: int | None = None,
        solver: str | None = None,
        seed: int | None = 0,
        return_trajectory: bool = False,
        progress: bool = False,
        num_samples: int | None = None,
    ) -> ProteinSamples:
        """Draw one backbone per entry of ``lengths`` (residues), all in one padded batch.

        ``num_steps`` Euler steps (default 50), ``seed`` fixes the noise. ``num_samples`` is
        accepted only together with ``lengths`` of that many entries.
        """
        if lengths is None:
            raise ValueError("lengths: protein sampling needs chain lengths, e.g. [64, 100, 128]")
        lengths = [int(n) for n in lengths]
        if not lengths or min(lengths) < 1:
            raise ValueError(f"lengths: expected positive residue counts, got {lengths}")
        if num_samples is not None and num_samples != len(lengths):
            raise ValueError(f"num_samples={num_samples} but {len(lengths)} lengths were given")
        mask = torch.arange(max(lengths)) < torch.tensor(lengths).unsqueeze(1)
        generator = self.generator(seed)
        result = self._draw(
            len(lengths), {"mask": mask.to(self.device)}, generator, num_steps, solver,
            return_trajectory, progress, None, seed,
        )  # fmt: skip
        base = {f.name: getattr(result, f.name) for f in fields(SampleResult)}
        return ProteinSamples(**base, lengths=tuple(lengths), trans_unit=self.trans_unit)

    def reflow_requests(
        self, num_pairs: int, batch_size: int, seed: int, length_range=REFLOW_LENGTHS
    ) -> list[dict]:
        """Batches of one length each, lengths uniform in ``length_range`` (inclusive)."""
        low, high = length_range
        rng = np.random.default_rng(seed)
        requests, made = [], 0
        while made < num_pairs:
            size = min(batch_size, num_pairs - made)
            length = int(rng.integers(low, high + 1))
            requests.append({"lengths": [length] * size, "seed": seed + len(requests)})
            made += size
        return requests
