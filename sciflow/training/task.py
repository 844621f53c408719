"""`GenerativeTask`: the LightningModule that trains any engine with any network."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import lightning as L
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from sciflow.engine import GenerativeEngine, batch_size, split_batch
from sciflow.evaluation.distances import categorical_tv, mmd, wasserstein

CHECKPOINT_KEY = "sciflow"


@torch.no_grad()
def warmed_up_ema(averaged: list, current: list, num_averaged: torch.Tensor, decay: float) -> None:
    """One EMA update of the ``averaged`` parameters towards ``current``, in place, with the
    warmed-up decay min(decay, (1 + n)/(10 + n)) after n earlier updates."""
    n = float(num_averaged)
    rate = min(decay, (1 + n) / (10 + n))
    torch._foreach_lerp_(averaged, current, 1 - rate)


class TrainingTask(L.LightningModule):
    """What every sciflow LightningModule shares: AdamW with warm-up and cosine decay, a
    warmed-up EMA of ``self.network``, a warm start from ``init_from``, and checkpoints that
    keep the domain, the resolved model config and the training wall time (which
    `sciflow.load_sampler` reads). Subclasses define ``training_step`` and the evaluation steps.

    Args:
        network: the trained module (its EMA copy is :attr:`sampling_network`).
        lr, weight_decay: AdamW settings.
        warmup_steps: linear learning-rate warm-up.
        lr_schedule: ``"constant"`` or ``"cosine"`` decay to 0 over the run after warm-up.
        ema_decay: decay of the exponential moving average of the weights; 0 disables EMA. It is
            warmed up: after n updates the decay is min(ema_decay, (1 + n)/(10 + n)), so a short
            run's EMA is not dominated by the initial weights (0.999 without warm-up keeps half
            of them after 700 steps).
        init_from: a ``sciflow fit`` checkpoint whose weights start this run's network and EMA
            (its EMA weights when it has them); the optimiser starts fresh. This is the warm
            start of fine-tuning, e.g. rectified flow. It is applied when fitting begins, before
            a ``--ckpt_path`` resume restores the run's own weights, and never when sampling.

    A domain task that describes its data for the sampler (features, normalisers, sizes) sets
    ``data_info_key``; ``self.data_info`` (None until set, e.g. in ``setup``) then travels in
    checkpoints under that key.
    """

    domain = "toy"
    #: Checkpoint key of ``self.data_info`` (None: the task keeps no data description).
    data_info_key: str | None = None

    def __init__(
        self,
        network: nn.Module,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        lr_schedule: Literal["constant", "cosine"] = "cosine",
        ema_decay: float = 0.999,
        init_from: str | None = None,
    ):
        super().__init__()
        if not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay: expected a float in [0, 1), got {ema_decay!r}")
        if lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule: expected 'constant' or 'cosine', got {lr_schedule!r}")
        # Plain attributes rather than save_hyperparameters(): the full, resolved config lives in
        # `model_config` (set by the CLI), and Lightning's own hparams would make `--ckpt_path`
        # resumption try to rebuild the model from an incomplete copy of it.
        self.lr, self.weight_decay, self.warmup_steps = lr, weight_decay, warmup_steps
        self.lr_schedule, self.ema_decay = lr_schedule, ema_decay
        self.init_from = init_from
        if not isinstance(network, nn.Module):
            raise TypeError(f"network: expected an nn.Module, got {network!r}")
        self.network = network
        self.ema = (
            AveragedModel(self.network, multi_avg_fn=partial(warmed_up_ema, decay=ema_decay))
            if ema_decay > 0
            else None
        )
        #: The resolved model config (class_path/init_args), set by the CLI, saved in checkpoints
        #: so that `sciflow.load_sampler` can rebuild this task without the CLI.
        self.model_config: dict | None = None
        #: Wall-clock seconds spent fitting, summed over resumed runs; saved in checkpoints.
        self.train_seconds = 0.0
        #: Optimizer steps of the checkpoint this task was loaded from (None before any load).
        self.trained_steps: int | None = None
        self._fit_started: float | None = None
        self.data_info: dict | None = None

    # -- networks -----------------------------------------------------------------------------
    @property
    def sampling_network(self) -> nn.Module:
        """The EMA network when EMA is on, else the trained one."""
        return self.ema.module if self.ema is not None else self.network

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.init_from is not None:
            self.load_weights(self.init_from)

    def load_weights(self, path: str) -> None:
        """Copy the (EMA) network weights of the checkpoint at ``path`` into this network and
        its EMA; errors name the file and the mismatching parameters."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"init_from: no checkpoint at {path}")
        state = torch.load(path, map_location=self.device, weights_only=False)["state_dict"]
        source = "ema.module." if any(k.startswith("ema.module.") for k in state) else "network."
        weights = {k[len(source) :]: v for k, v in state.items() if k.startswith(source)}
        try:
            self.network.load_state_dict(weights)
        except RuntimeError as err:
            raise ValueError(f"init_from {path}: its network does not fit this one: {err}") from err
        if self.ema is not None:
            self.ema.module.load_state_dict(weights)

    # -- training -----------------------------------------------------------------------------
    def _log_loss(self, stage: str, loss, batch_size: int) -> None:
        on_step = stage == "train"
        self.log(
            f"{stage}/loss",
            loss.total,
            prog_bar=True,
            on_step=on_step,
            on_epoch=not on_step,
            batch_size=batch_size,
        )
        for name, term in loss.terms.items():
            self.log(
                f"{stage}/loss_{name}",
                term,
                on_step=on_step,
                on_epoch=not on_step,
                batch_size=batch_size,
            )

    def on_train_start(self) -> None:
        self._fit_started = time.monotonic()

    def on_train_end(self) -> None:
        self.train_seconds = self._elapsed_train_seconds()
        self._fit_started = None

    def _elapsed_train_seconds(self) -> float:
        if self._fit_started is None:
            return self.train_seconds
        return self.train_seconds + time.monotonic() - self._fit_started

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.network)

    # -- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.network.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        warmup = self.warmup_steps
        cosine = self.lr_schedule == "cosine"
        total = max(int(self.trainer.estimated_stepping_batches), 1) if cosine else 0

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not cosine:
                return 1.0
            progress = min((step - warmup) / max(total - warmup, 1), 1.0)
            return 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # -- checkpoints --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "domain": self.domain,
            "model_config": self.model_config,
            "train_seconds": self._elapsed_train_seconds(),
        }
        if self.data_info_key is not None:
            checkpoint[self.data_info_key] = self.data_info

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        meta = checkpoint.get(CHECKPOINT_KEY, {})
        self.model_config = meta.get("model_config")
        self.train_seconds = float(meta.get("train_seconds", 0.0))
        self.trained_steps = int(checkpoint["global_step"]) if "global_step" in checkpoint else None
        if self.data_info_key is not None:
            self.data_info = checkpoint.get(self.data_info_key)


class GenerativeTask(TrainingTask):
    """Trains ``network`` with ``engine``'s loss; keeps EMA weights; samples during validation.

    Args:
        engine: the generative process (components, coupling, time range).
        network: builds the network from the engine (a class such as ``StateMLP`` given in the
            config by ``class_path``, or any callable ``engine -> nn.Module`` from Python).
        lr, weight_decay, warmup_steps, lr_schedule, ema_decay, init_from: as in
            :class:`TrainingTask`.
        val_num_samples: if > 0, at the end of each validation (and test) epoch draw this many
            samples with the EMA network and log W2 and MMD against as many held-out points
            (dense engines only).
        val_num_steps, val_solver: sampler settings for that sampling (``None``: the engine's
            default — 50 Euler steps for flow matching, the training n and "vanilla" for
            Bayesian flows).
    """

    def __init__(
        self,
        engine: GenerativeEngine,
        network: Callable[[GenerativeEngine], nn.Module],
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        lr_schedule: Literal["constant", "cosine"] = "cosine",
        ema_decay: float = 0.999,
        val_num_samples: int = 0,
        val_num_steps: int | None = None,
        val_solver: str | None = None,
        init_from: str | None = None,
    ):
        if val_num_samples > 0 and any(
            comp.layout != "dense" for comp in engine.components.values()
        ):
            raise ValueError(
                "val_num_samples: sampling metrics in validation need dense parts (one event per "
                "sample); set val_num_samples: 0 for padded or indexed parts"
            )
        built = network(engine)
        if not isinstance(built, nn.Module):
            raise TypeError(f"network: expected a callable returning nn.Module, got {built!r}")
        super().__init__(
            built,
            lr=lr,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            lr_schedule=lr_schedule,
            ema_decay=ema_decay,
            init_from=init_from,
        )
        self.val_num_samples, self.val_num_steps, self.val_solver = (
            val_num_samples,
            val_num_steps,
            val_solver,
        )
        self.engine = engine
        self._val_reference: list[dict[str, torch.Tensor]] = []

    def forward(self, x_t: dict, t: torch.Tensor, context: dict | None = None) -> dict:
        return self.network(x_t, t, context or {})

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.engine.loss(self.network, batch)
        self._log_loss("train", loss, batch_size(*split_batch(batch)))
        return loss.total

    def _evaluation_step(self, stage: str, batch: dict, batch_idx: int) -> torch.Tensor:
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        loss = self.engine.loss(self.sampling_network, batch, generator=generator)
        self._log_loss(stage, loss, batch_size(*split_batch(batch)))
        if self.val_num_samples > 0:
            self._val_reference.append(split_batch(batch)[0])
        return loss.total

    def _evaluation_epoch_end(self, stage: str) -> None:
        """Sample with the EMA network and log W2/MMD against the collected reference points."""
        n = self.val_num_samples
        if n <= 0 or not self._val_reference:
            return
        reference = {
            k: torch.cat([b[k] for b in self._val_reference])[:n] for k in self.engine.components
        }
        self._val_reference.clear()
        n = next(iter(reference.values())).shape[0]
        generator = torch.Generator(device=self.device).manual_seed(0)
        options = {"num_steps": self.val_num_steps, "solver": self.val_solver}
        samples = self.engine.sample(
            self.sampling_network,
            n,
            generator=generator,
            device=self.device,
            **{k: v for k, v in options.items() if v is not None},
        ).x
        manifolds = self.engine.manifolds
        if manifolds:
            self.log(f"{stage}/w2", wasserstein(samples, reference, manifolds), prog_bar=True)
            self.log(f"{stage}/mmd", mmd(samples, reference, manifolds))
        for name, comp in self.engine.components.items():
            if name not in manifolds:  # discrete parts: compare class frequencies
                classes = comp.output_dim
                self.log(
                    f"{stage}/tv_{name}", categorical_tv(samples[name], reference[name], classes)
                )

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._evaluation_step("val", batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        self._evaluation_epoch_end("val")

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._evaluation_step("test", batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        self._evaluation_epoch_end("test")
