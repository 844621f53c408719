"""The single-cell training task: a `GenerativeTask` that records what the sampler needs to
apply the model to new AnnData (features, conditions, training populations, the fitted
preprocessing) and checks the network's sizes against the data."""

from __future__ import annotations

from sciflow.training import GenerativeTask

#: Checkpoint key of the data description (see :meth:`SingleCellTask.data_info`).
DATA_INFO_KEY = "sciflow_singlecell"


class SingleCellTask(GenerativeTask):
    """`GenerativeTask` for population flows; arguments as there.

    When fitting with a :class:`~.data.PopulationDataModule`, it checks that the network's
    ``num_conditions`` (and, for CGFM, ``num_train_populations``) equal the data's, and keeps
    ``data_info``: ``features``, ``conditions``, ``populations`` (training populations, id
    order), ``control``, the AnnData keys (``population_key``, ``condition_key``, ``rep``),
    ``cells_per_population`` (the size of the populations the encoder saw) and the fitted
    ``preprocessor`` state (or None). Checkpoints carry it, so
    ``sciflow.load_sampler`` can preprocess new AnnData the way the training data was.
    """

    domain = "singlecell"
    data_info_key = DATA_INFO_KEY

    def setup(self, stage: str) -> None:
        super().setup(stage)
        module = getattr(getattr(self, "trainer", None), "datamodule", None)
        if module is None or not hasattr(module, "num_conditions"):
            return
        module.setup(stage)
        checks = [("num_conditions", module.num_conditions)]
        if getattr(self.network, "mode", None) == "cgfm":
            checks.append(("num_train_populations", module.num_train_populations))
        for name, value in checks:
            if getattr(self.network, name, value) != value:
                raise ValueError(
                    f"network.{name}: the model was configured with "
                    f"{getattr(self.network, name)} but the data has {value}; set "
                    f"model.init_args.network.init_args.{name}: {value}"
                )
        data = module.data
        train = data.populations[: data.num_train_populations]
        self.data_info = {
            "features": list(data.features),
            "conditions": list(data.conditions),
            "populations": list(train),
            "control": data.control,
            "population_key": module.anndata_args["population_key"] if module.path else None,
            "condition_key": module.anndata_args["condition_key"] if module.path else None,
            "rep": module.anndata_args["rep"] if module.path else None,
            "cells_per_population": module.cells_per_population,
            "preprocessor": None if data.preprocessor is None else data.preprocessor.state(),
        }
