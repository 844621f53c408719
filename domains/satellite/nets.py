"""Velocity networks of the satellite domain: v(x_t, t | conditions) on (3, H, W) tiles.

Three models share one base, a :class:`~sciflow.nn.unet.UNet` whose FiLM embedding is the time
embedding plus the concatenated per-field condition embeddings
(:class:`~.nets_conditioning.ConditionEncoder`, each field with its own learned null):

* :class:`SatelliteFlowNet`: the conditional model (climate, land cover, month, location); with
  ``fields=[]`` the same network is unconditional.
* :class:`ClimateMapFlowNet`: the base plus a zero-initialised
  :class:`~sciflow.nn.unet.ControlBranch` (ControlNet) that reads a spatial climate map
  ``cond["climate_map"]`` (B, C_map, H, W) of normalised (T, P, R) and adds its residuals to
  the base's encoder features. Without a map the tile's climate vector is broadcast over the
  tile (the example data has one climate value per tile, so that is the training map). The
  map is the spatial form of the climate field and shares its keep mask: where the climate is
  hidden (dropout, guidance's null term) the branch adds nothing, so the null term is exactly
  the base model. ``freeze_base`` trains the branch alone on top of base weights loaded with
  the task's ``init_from``.
* :class:`TimeSeriesFlowNet`: the previous frame of the same place ``cond["previous"]``
  (B, 3, H, W) is concatenated to x_t as extra input channels, plus the ``lag`` field (months).
  Concatenation rather than a ControlBranch: it costs one wider stem convolution instead of a
  second encoder (CPU budget), trains jointly from scratch on the few example series, and the
  climate-map model already shows the ControlNet route.

The engine's state is one dense part ``"image"``: Euclidean(dim=W) with ``event_shape (3, H)``,
i.e. (B, 3, H, W) tensors in [-1, 1] at t = 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from sciflow_domains.satellite.nets_conditioning import (
    ConditionEncoder,
    check_fields,
    keep_mask,
)
from torch import nn

from sciflow.engine import FlowComponent, GenerativeEngine
from sciflow.manifolds import Euclidean
from sciflow.nn.unet import ControlBranch, UNet

IMAGE_KEY = "image"
#: Fields of the single-image models and their default.
IMAGE_FIELDS = ("climate", "landcover", "month", "location")


def image_shape(engine: GenerativeEngine) -> tuple[int, int, int]:
    """(C, H, W) of the engine's single dense Euclidean part ``"image"``; ValueError otherwise."""
    comp = engine.components.get(IMAGE_KEY)
    if (
        set(engine.components) != {IMAGE_KEY}
        or not isinstance(comp, FlowComponent)
        or not isinstance(comp.manifold, Euclidean)
        or comp.layout != "dense"
        or len(comp.event_shape) != 2
    ):
        raise ValueError(
            "engine: the satellite networks need one dense FlowComponent 'image' on "
            "Euclidean(dim=W) with event_shape (C, H); got "
            f"{ {k: repr(c) for k, c in engine.components.items()} }"
        )
    channels, height = comp.event_shape
    return channels, height, comp.manifold.dim


class SatelliteFlowNet(nn.Module):
    """v(x_t, t | climate, land cover, month, location) on (B, C, H, W) tiles.

    Args:
        engine: the flow-matching engine (one part ``"image"``, see :func:`image_shape`).
        fields: condition fields read (any of :data:`IMAGE_FIELDS`; ``[]``: unconditional).
        base_channels, channel_mults, num_res_blocks, attention_levels, dropout, shuffle_factor,
            norm_groups: the UNet's (see :class:`~sciflow.nn.unet.UNet`); ``shuffle_factor``
            2 runs a 64 px tile at 32 px.
        field_dim: embedding width per condition field.
        num_landcover: land-cover classes (17 IGBP). max_lag: largest lag (time series).

    ``forward(x_t, t, context)``: x_t ``{"image": (B, C, H, W)}``, t (B,), context with
    optional ``cond`` (fields as in :mod:`.nets_conditioning`) and ``cond_mask`` (B,) →
    ``{"image": (B, C, H, W)}`` velocities.
    """

    kind = "conditional"
    allowed_fields: tuple[str, ...] = IMAGE_FIELDS

    def __init__(
        self,
        engine: GenerativeEngine,
        fields: Sequence[str] = IMAGE_FIELDS,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_levels: Sequence[int] = (),
        dropout: float = 0.0,
        shuffle_factor: int = 1,
        norm_groups: int = 8,
        field_dim: int = 32,
        num_landcover: int = 17,
        max_lag: int = 6,
    ):
        super().__init__()
        self.image_shape = image_shape(engine)
        self.fields = check_fields(fields, self.allowed_fields)
        self.conditions = (
            ConditionEncoder(self.fields, field_dim, num_landcover, max_lag)
            if self.fields
            else None
        )
        self.num_landcover, self.max_lag = num_landcover, max_lag
        channels = self.image_shape[0]
        self.unet = UNet(
            in_channels=channels + self.extra_channels(),
            out_channels=channels,
            base_channels=base_channels,
            channel_mults=channel_mults,
            num_res_blocks=num_res_blocks,
            attention_levels=attention_levels,
            time_embedding=True,
            cond_dim=self.conditions.out_dim if self.conditions else None,
            dropout=dropout,
            shuffle_factor=shuffle_factor,
            norm_groups=norm_groups,
        )
        _, height, width = self.image_shape
        if height % self.unet.size_multiple or width % self.unet.size_multiple:
            raise ValueError(
                f"engine: tiles of {height}x{width} px do not fit this UNet, whose sizes must be "
                f"multiples of {self.unet.size_multiple} (shuffle_factor x 2**(levels - 1))"
            )

    @property
    def model_kind(self) -> str:
        """``"conditional"``, ``"unconditional"``, ``"climate_map"`` or ``"timeseries"``."""
        return self.kind if self.fields or self.kind != "conditional" else "unconditional"

    def extra_channels(self) -> int:
        """Input channels concatenated to x_t (none here)."""
        return 0

    def condition_vector(self, context: Mapping, batch_size: int) -> torch.Tensor | None:
        """(B, num_fields · field_dim) or None for the unconditional model."""
        if self.conditions is None:
            return None
        return self.conditions(context.get("cond"), batch_size, context.get("cond_mask"))

    def unet_input(self, x: torch.Tensor, context: Mapping) -> torch.Tensor:
        """What the UNet encodes: x_t itself here."""
        return x

    def add_control(
        self, features: list[torch.Tensor], x: torch.Tensor, context: Mapping, emb: torch.Tensor
    ) -> list[torch.Tensor]:
        """Control residuals added to the encoder features (none here)."""
        return features

    def forward(self, x_t: Mapping, t: torch.Tensor, context: Mapping) -> dict:
        x = x_t[IMAGE_KEY]
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                f"x_t['image']: expected (B, {', '.join(map(str, self.image_shape))}), got "
                f"{tuple(x.shape)}"
            )
        batch = x.shape[0]
        emb = self.unet.embed(t, self.condition_vector(context, batch), batch)
        features = self.unet.encode(self.unet_input(x, context), emb)
        features = self.add_control(features, x, context, emb)
        return {IMAGE_KEY: self.unet.decode(features, emb)}


class ClimateMapFlowNet(SatelliteFlowNet):
    """The conditional model plus a ControlNet branch reading a climate map (module docstring).

    Args (besides :class:`SatelliteFlowNet`'s):
        map_channels: channels of ``cond["climate_map"]`` (3: T, P, R normalised like the
            climate vector; the broadcast vector is used when no map is given, which needs 3).
        freeze_base: train the branch only (the UNet and the condition encoder get no
            gradients and stay in eval mode); False trains everything jointly.

    The branch's encoder starts as a copy of the base encoder: at construction, and again when
    :meth:`load_base_weights` loads trained base weights.
    """

    kind = "climate_map"

    def __init__(
        self,
        engine: GenerativeEngine,
        map_channels: int = 3,
        freeze_base: bool = True,
        **kwargs,
    ):
        super().__init__(engine, **kwargs)
        self.map_channels, self.freeze_base = map_channels, freeze_base
        self.control = ControlBranch(self.unet, map_channels)
        if freeze_base:
            for param in self.base_parameters():
                param.requires_grad_(False)

    def base_parameters(self) -> list[nn.Parameter]:
        """The parameters of the base model (UNet and condition encoder)."""
        modules = [self.unet] + ([self.conditions] if self.conditions else [])
        return [p for m in modules for p in m.parameters()]

    def train(self, mode: bool = True) -> ClimateMapFlowNet:
        super().train(mode)
        if self.freeze_base:  # a frozen base keeps eval behaviour (no dropout)
            self.unet.eval()
            if self.conditions is not None:
                self.conditions.eval()
        return self

    def load_base_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Load a base model's state dict (a :class:`SatelliteFlowNet` of the same sizes) and
        restart the branch's encoder as a copy of the loaded encoder."""
        own = {k: v for k, v in self.state_dict().items() if not k.startswith("control.")}
        missing, extra = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
        if missing or extra:
            raise ValueError(
                f"base weights: do not fit this model's base; missing {missing[:5]}, "
                f"unexpected {extra[:5]}"
            )
        self.load_state_dict(dict(weights), strict=False)
        self.control.encoder.load_state_dict(self.unet.encoder.state_dict())

    def climate_map(self, context: Mapping, batch_size: int) -> tuple[torch.Tensor | None, ...]:
        """The map (B, C_map, H, W) (given, or the broadcast climate vector) and its keep mask."""
        cond = context.get("cond") or {}
        _, height, width = self.image_shape
        value = cond.get("climate_map")
        if value is None and cond.get("climate") is not None and self.map_channels == 3:
            value = cond["climate"][:, :, None, None].expand(-1, -1, height, width)
        if value is not None:
            expected = (batch_size, self.map_channels, height, width)
            if tuple(value.shape) != expected:
                raise ValueError(
                    f"cond['climate_map']: expected {expected}, got {tuple(value.shape)}"
                )
        keep = keep_mask(cond, "climate", value, batch_size, context.get("cond_mask"))
        return value, keep

    def add_control(self, features, x, context, emb):
        value, keep = self.climate_map(context, x.shape[0])
        if value is None or not keep.any():
            return features
        keep = keep.to(x.device)[:, None, None, None]
        value = value.to(x).masked_fill(~keep, 0.0)
        residuals = self.control(x, value, emb)
        return [f + r * keep for f, r in zip(features, residuals, strict=True)]


class TimeSeriesFlowNet(SatelliteFlowNet):
    """v(x_t, t | previous frame, lag, conditions of the target month) (module docstring).

    Arguments as :class:`SatelliteFlowNet`; ``fields`` may also hold ``"lag"`` (default: all
    five). ``context["cond"]["previous"]`` (B, C, H, W) in [-1, 1] is required.
    """

    kind = "timeseries"
    allowed_fields = (*IMAGE_FIELDS, "lag")

    def __init__(self, engine: GenerativeEngine, fields: Sequence[str] = allowed_fields, **kwargs):
        super().__init__(engine, fields, **kwargs)

    def extra_channels(self) -> int:
        return self.image_shape[0]

    def unet_input(self, x: torch.Tensor, context: Mapping) -> torch.Tensor:
        previous = (context.get("cond") or {}).get("previous")
        if previous is None or tuple(previous.shape) != tuple(x.shape):
            got = None if previous is None else tuple(previous.shape)
            raise ValueError(
                f"cond['previous']: the time-series model needs the previous frame of shape "
                f"{tuple(x.shape)}, got {got}"
            )
        return torch.cat([x, previous.to(x)], dim=1)
