"""The crystal training task: a `GenerativeTask` whose checkpoints are marked as crystal (so
``sciflow.load_sampler`` returns a `CrystalSampler`) and which records the lattice unit."""

from __future__ import annotations

from sciflow.training import GenerativeTask


class CrystalTask(GenerativeTask):
    """`GenerativeTask` for crystals; all arguments as there, plus:

    Args:
        lattice_scale: Å per unit of the lattice part, the data module's ``lattice_scale``
            (CrysBFN's ``lattice_std``: 1.96 for Perov-5, 3.87 for MP-20). The sampler multiplies
            sampled lattices by it; fitting checks that the data module uses the same value.
    """

    domain = "crystal"

    def __init__(self, *args, lattice_scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        if not lattice_scale > 0:
            raise ValueError(f"lattice_scale: expected a positive float, got {lattice_scale!r}")
        self.lattice_scale = float(lattice_scale)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        data = getattr(getattr(self, "trainer", None), "datamodule", None)
        data_scale = getattr(data, "lattice_scale", None)
        if data_scale is not None and abs(data_scale - self.lattice_scale) > 1e-9:
            raise ValueError(
                f"lattice_scale: the model says {self.lattice_scale} Å per unit but the data "
                f"module divides lattices by {data_scale}; set both to the same value"
            )
