"""The satellite training task: per-field condition dropout, previous frames as controls, and
the data description the sampler needs kept in the checkpoint."""

from __future__ import annotations

import os

import torch
from sciflow_domains.satellite.nets import IMAGE_KEY
from sciflow_domains.satellite.nets_conditioning import drop_fields

from sciflow.training import GenerativeTask

#: Checkpoint key of the data description (see :class:`SatelliteTask`).
DATA_INFO_KEY = "sciflow_satellite"
#: Batch entries of the time-series data that the networks read as conditions.
CONTROL_ENTRIES = ("previous", "lag")


class SatelliteTask(GenerativeTask):
    """`GenerativeTask` for satellite tiles; arguments as there, plus ``field_drop_prob``.

    Classifier-free guidance needs null conditions in training. Two dropouts act together:
    every condition field of every sample is hidden independently with probability
    ``field_drop_prob`` (its learned null embedding is used instead), and all fields of a sample
    at once with the engine's ``cond_drop_prob``.

    Batches of :class:`~.data.SatelliteDataModule` are passed to the engine with ``previous``
    and ``lag`` moved into ``cond`` and ``meta`` left out. When fitting with that data module
    the task checks the image size and the previous-frame mode against the network and keeps
    ``data_info`` in checkpoints: ``normalizer`` (climate mean/std), ``landcover_names``,
    ``image_size``, ``crops_per_side``, ``tile_gsd_m``, ``gsd_m`` (per output pixel),
    ``fields``, ``model_kind``, ``previous``, ``max_lag``, ``split``, ``test_months``,
    ``locations`` (id → lat, lon, land-cover id of the training tiles).
    """

    domain = "satellite"
    data_info_key = DATA_INFO_KEY

    def __init__(self, *args, field_drop_prob: float = 0.1, **kwargs):
        super().__init__(*args, **kwargs)
        if not 0 <= field_drop_prob < 1:
            raise ValueError(
                f"field_drop_prob: expected a float in [0, 1), got {field_drop_prob!r}"
            )
        if self.val_num_samples > 0 and self.network.model_kind == "timeseries":
            raise ValueError(
                "val_num_samples: validation sampling draws without previous frames, which the "
                "time-series model needs; set val_num_samples: 0"
            )
        self.field_drop_prob = float(field_drop_prob)

    # -- batches ------------------------------------------------------------------------------
    def model_batch(self, batch: dict, train: bool) -> dict:
        """The engine's view of a data batch: ``image`` and ``cond`` (with ``previous``/``lag``
        when present, and the training field dropout when ``train``)."""
        cond = dict(batch.get("cond") or {})
        cond.update({k: batch[k] for k in CONTROL_ENTRIES if k in batch})
        fields = getattr(self.network, "fields", ())
        if train and self.field_drop_prob > 0 and fields:
            cond = drop_fields(cond, fields, self.field_drop_prob)
        return {IMAGE_KEY: batch[IMAGE_KEY], "cond": cond}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return super().training_step(self.model_batch(batch, train=True), batch_idx)

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return super().validation_step(self.model_batch(batch, train=False), batch_idx)

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return super().test_step(self.model_batch(batch, train=False), batch_idx)

    # -- weights ------------------------------------------------------------------------------
    def load_weights(self, path: str) -> None:
        """As `GenerativeTask.load_weights`; a climate-map model also accepts the weights of a
        plain conditional model as its base (its ControlNet branch restarts from them)."""
        load_base = getattr(self.network, "load_base_weights", None)
        if load_base is None or not os.path.isfile(path):
            return super().load_weights(path)
        state = torch.load(path, map_location=self.device, weights_only=False)["state_dict"]
        if any(".control." in k for k in state):  # a climate-map checkpoint: load it whole
            return super().load_weights(path)
        source = "ema.module." if any(k.startswith("ema.module.") for k in state) else "network."
        weights = {k[len(source) :]: v for k, v in state.items() if k.startswith(source)}
        try:
            load_base(weights)
        except ValueError as err:
            raise ValueError(f"init_from {path}: {err}") from err
        if self.ema is not None:
            self.ema.module.load_state_dict(self.network.state_dict())

    # -- data description ---------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        module = getattr(getattr(self, "trainer", None), "datamodule", None)
        if module is None or not hasattr(module, "normalizer"):
            return
        module.setup(stage)
        _, height, width = self.network.image_shape
        if (module.size, module.size) != (height, width):
            raise ValueError(
                f"data.size: the data gives {module.size} px tiles but the engine and network "
                f"are built for {height}x{width}; set the manifold dim and event_shape to match"
            )
        timeseries = self.network.model_kind == "timeseries"
        if module.previous != timeseries:
            raise ValueError(
                f"data.previous: the {self.network.model_kind} network needs previous="
                f"{timeseries}, got {module.previous}"
            )
        if timeseries and module.max_lag > self.network.max_lag:
            raise ValueError(
                f"data.max_lag: {module.max_lag} exceeds the network's max_lag "
                f"{self.network.max_lag}"
            )
        train = module.splits["train"]
        gsd = next(iter(module.tiles.gsd_m.values()))
        self.data_info = {
            "normalizer": module.normalizer.to_dict(),
            "landcover_names": list(module.landcover_names),
            "image_size": module.size,
            "crops_per_side": module.crops_per_side,
            "tile_gsd_m": module.tile_gsd_m,
            "gsd_m": float(gsd),
            "fields": list(self.network.fields),
            "model_kind": self.network.model_kind,
            "previous": module.previous,
            "max_lag": module.max_lag,
            "split": module.split,
            "test_months": list(module.test_months),
            "locations": {
                r.location_id: {"lat": r.lat, "lon": r.lon, "landcover": r.landcover} for r in train
            },
        }
