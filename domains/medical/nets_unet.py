"""The time-conditioned UNet baseline (the paper's T-UNet): x0 and the gap → x1 in one pass.

The gap enters as a condition vector: h = Δt/time_scale goes through the UNet's condition MLP
(``cond``) and modulates every residual block (FiLM). A smooth MLP of h is used rather than the
sinusoidal time embedding, whose high frequencies (up to 100 per unit) would make the forecast
oscillate between the few gaps seen in training. Loss: image MSE of every later visit.
"""

from __future__ import annotations

from collections.abc import Sequence

from sciflow_domains.medical.nets import (
    Forecaster,
    build_autoencoder,
    image_mse,
    later_visits,
    total_loss,
)

from sciflow.engine import LossOutput


class TimeConditionedUNet(Forecaster):
    """x0 (B, C, R, R), h (B,) → forecast (B, C, R, R) with one UNet evaluation.

    Args:
        in_channels, image_size, base_channels, channel_mults, num_res_blocks,
            attention_levels, dropout, norm_groups: the UNet, as in :class:`.ImageFlowNet`.
        time_scale: months per unit of h.
    """

    kind = "unet"

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 64,
        base_channels: int = 16,
        channel_mults: Sequence[int] = (1, 2, 4),
        num_res_blocks: int = 1,
        attention_levels: Sequence[int] = (),
        dropout: float = 0.0,
        norm_groups: int = 8,
        time_scale: float = 12.0,
    ):
        super().__init__(in_channels, image_size, time_scale)
        self.unet = build_autoencoder(
            in_channels, image_size, base_channels, channel_mults, num_res_blocks,
            attention_levels, dropout, norm_groups, cond_dim=1,
        )  # fmt: skip

    def forecast(self, images, dt, num_steps=None, generator=None):
        self.check_inputs(images, dt)
        return self.unet(images, cond=self.horizon(dt)[:, None]), 1

    def loss(self, batch, generator=None) -> LossOutput:
        x0 = batch["x0"]
        errors = [
            image_mse(self.unet(x0, cond=self.horizon(gap)[:, None]), target)
            for target, gap in later_visits(batch)
        ]
        return total_loss({"forecast": sum(errors) / len(errors)})
