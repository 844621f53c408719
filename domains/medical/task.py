"""The medical training task: one LightningModule for every forecaster of :mod:`.nets`.

It is a :class:`sciflow.training.TrainingTask` (AdamW, warm-up and cosine decay, warmed-up EMA,
training wall time and the model config in checkpoints) whose steps call the forecaster's own
``loss``. Validation and test log the loss terms with the EMA network and, on the last visit of
each item, the mean absolute error of the forecast (``forecast_mae``, clipped to [0, 1]) next to
that of copying the first visit forward (``copy_forward_mae``). When fitting with a
:class:`~.data.LongitudinalDataModule`, it checks the network's channels and size against the
data and keeps a description of the data in the checkpoint (:data:`DATA_INFO_KEY`).
"""

from __future__ import annotations

import torch
from sciflow_domains.medical.nets import Forecaster, later_visits

from sciflow.training import TrainingTask

#: Checkpoint key of the data description: dataset, resolution, channels, time unit.
DATA_INFO_KEY = "sciflow_medical"


class ForecastTask(TrainingTask):
    """Trains a medical :class:`~.nets.Forecaster`.

    Args:
        network: the forecaster (``ImageFlowNet``, ``LatentFlowMatching``,
            ``TimeConditionedUNet``), given in configs by ``class_path``.
        lr, weight_decay, warmup_steps, lr_schedule, ema_decay, init_from: as in
            :class:`sciflow.training.TrainingTask`.
    """

    domain = "medical"
    data_info_key = DATA_INFO_KEY

    def __init__(self, network: Forecaster, **kwargs):
        if not isinstance(network, Forecaster):
            raise TypeError(f"network: expected a medical Forecaster, got {type(network).__name__}")
        super().__init__(network, **kwargs)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        module = getattr(getattr(self, "trainer", None), "datamodule", None)
        if module is None or not hasattr(module, "splits"):
            return
        module.setup(stage)
        hp = module.hparams
        channels = int(next(iter(module.splits.values())).images.shape[1])
        for name, model_value, data_value in (
            ("in_channels", self.network.in_channels, channels),
            ("image_size", self.network.image_size, hp.resolution),
        ):
            if model_value != data_value:
                raise ValueError(
                    f"network.{name}: the model was configured with {model_value} but the data "
                    f"has {data_value}; set model.init_args.network.init_args.{name}: {data_value}"
                )
        self.data_info = {
            "dataset": module.dataset_name,
            "resolution": int(hp.resolution),
            "channels": channels,
            "time_unit": "months",
            "visits_per_item": int(hp.visits_per_item),
        }

    # -- steps ----------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.network.loss(batch)
        self._log_loss("train", loss, batch["x0"].shape[0])
        return loss.total

    def _evaluation_step(self, stage: str, batch: dict, batch_idx: int) -> torch.Tensor:
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        network = self.sampling_network
        loss = network.loss(batch, generator=generator)
        size = batch["x0"].shape[0]
        self._log_loss(stage, loss, size)
        truth = later_visits(batch)[-1][0]
        forecast, _ = network.forecast(batch["x0"], batch["dt"], generator=generator)
        for name, value in (
            ("forecast_mae", (forecast.clamp(0, 1) - truth).abs().mean()),
            ("copy_forward_mae", (batch["x0"] - truth).abs().mean()),
        ):
            self.log(f"{stage}/{name}", value, prog_bar=name == "forecast_mae", batch_size=size)
        return loss.total

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._evaluation_step("val", batch, batch_idx)

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._evaluation_step("test", batch, batch_idx)
