"""The crystal training task: a `GenerativeTask` whose checkpoints are marked as crystal (so
``sciflow.load_sampler`` returns a `CrystalSampler`), which records the lattice unit, the
training atom-count histogram and the scaling of a conditioning property, and which checks that
model and data agree on the task."""

from __future__ import annotations

import numpy as np

from sciflow.training import GenerativeTask


def task_of_engine(engine) -> str:
    """``"abinitio"`` when the engine generates atom types (it has a ``types`` part), else
    ``"csp"`` (types given as ``cond["types"]``)."""
    return "abinitio" if "types" in engine.components else "csp"


def _check_histogram(histogram) -> list[int] | None:
    if histogram is None:
        return None
    counts = np.asarray(histogram)
    if (
        counts.ndim != 1
        or counts.size == 0
        or not np.issubdtype(counts.dtype, np.integer)
        or (counts < 0).any()
        or counts.sum() == 0
    ):
        raise ValueError(
            "num_atoms_histogram: expected a list of non-negative int counts (entry n = crystals "
            f"with n atoms), not all zero, got {histogram!r}"
        )
    return [int(c) for c in counts]


def _check_scaling(scaling) -> dict | None:
    if scaling is None:
        return None
    if (
        not isinstance(scaling, dict)
        or set(scaling) != {"name", "mean", "std"}
        or not isinstance(scaling["name"], str)
        or not float(scaling["std"]) > 0
    ):
        raise ValueError(
            "condition_property: expected {'name': column, 'mean': float, 'std': float > 0}, "
            f"got {scaling!r}"
        )
    return {"name": scaling["name"], "mean": float(scaling["mean"]), "std": float(scaling["std"])}


class CrystalTask(GenerativeTask):
    """`GenerativeTask` for crystals; all arguments as there, plus:

    Args:
        lattice_scale: Å per unit of the lattice part, the data module's ``lattice_scale``
            (CrysBFN's ``lattice_std``: 1.96 for Perov-5, 3.87 for MP-20). The sampler multiplies
            sampled lattices by it; fitting checks that the data module uses the same value.
        num_atoms_histogram: entry n = number of training crystals with n atoms; ab initio
            sampling draws crystal sizes from it. ``None`` (the usual setting): filled in from
            the data module's training split when fitting begins and written into the model
            config saved in every checkpoint, so ``load_sampler`` has it without the data.
        condition_property: ``{"name", "mean", "std"}`` of the property a property-conditioned
            network (``CSPNet(num_properties=1)``) reads, standardised as ``(value − mean) /
            std``. ``None`` (the usual setting): filled in from the data module's
            ``property_scaling`` when fitting begins and saved in the checkpoint, so the sampler
            turns target values into the network's units.

    Fitting also checks that the data module's ``task`` (``"csp"`` or ``"abinitio"``) is the
    engine's: ab initio engines have a ``types`` part, CSP engines do not.
    """

    domain = "crystal"

    def __init__(
        self,
        *args,
        lattice_scale: float = 1.0,
        num_atoms_histogram: list[int] | None = None,
        condition_property: dict | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if not lattice_scale > 0:
            raise ValueError(f"lattice_scale: expected a positive float, got {lattice_scale!r}")
        self.lattice_scale = float(lattice_scale)
        self.num_atoms_histogram = _check_histogram(num_atoms_histogram)
        self.condition_property = _check_scaling(condition_property)

    @property
    def task(self) -> str:
        """``"abinitio"`` or ``"csp"`` (see :func:`task_of_engine`)."""
        return task_of_engine(self.engine)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        data = getattr(getattr(self, "trainer", None), "datamodule", None)
        data_scale = getattr(data, "lattice_scale", None)
        if data_scale is not None and abs(data_scale - self.lattice_scale) > 1e-9:
            raise ValueError(
                f"lattice_scale: the model says {self.lattice_scale} Å per unit but the data "
                f"module divides lattices by {data_scale}; set both to the same value"
            )
        data_task = getattr(data, "task", None)
        if data_task is not None and data_task != self.task:
            raise ValueError(
                f"task: the data module's task is {data_task!r} but the engine is for "
                f"{self.task!r} (ab initio engines have a 'types' part, CSP engines none); "
                "set data.init_args.task to match"
            )
        if data is not None:
            self._check_property(data)
        if stage == "fit" and self.num_atoms_histogram is None and data is not None:
            self._record_histogram(data)
        if stage == "fit" and self.condition_property is None and data is not None:
            scaling = getattr(data, "property_scaling", None)
            if scaling is not None:
                self.condition_property = _check_scaling(scaling)
                self._save_init_arg("condition_property", dict(self.condition_property))

    def _check_property(self, data) -> None:
        """The network conditions on a property exactly when the data module provides one."""
        wanted = getattr(data, "condition_property", None)
        reads = getattr(self.network, "num_properties", 0)
        if reads != (1 if wanted else 0):
            raise ValueError(
                f"condition_property: the data module conditions on {wanted!r} but the network "
                f"reads {reads} properties; set data.init_args.condition_property and "
                "model.init_args.network.init_args.num_properties: 1 together"
            )

    def _record_histogram(self, data) -> None:
        """Take the training atom counts from ``data`` and put them into the saved config."""
        histogram = getattr(data, "num_atoms_histogram", None)
        if histogram is None:
            return
        self.num_atoms_histogram = _check_histogram(histogram())
        self._save_init_arg("num_atoms_histogram", list(self.num_atoms_histogram))

    def _save_init_arg(self, name: str, value) -> None:
        """Write ``value`` into the model config that every checkpoint saves."""
        if isinstance(self.model_config, dict):
            self.model_config.setdefault("init_args", {})[name] = value
