"""What every medical forecaster shares: the interface, the multiscale autoencoder, the per-scale
vector field and the batch helpers.

A *forecaster* maps the image of one visit and a gap Δt ahead to the image at t + Δt:

    images: (B, C, R, R) in [0, 1];  dt: (B,) months, >= 0  →  forecast (B, C, R, R)

Networks never see months: they see the *horizon* h = Δt / ``time_scale`` (ImageFlowNet's κΔt),
so with ``time_scale`` = 12 one year of progression is one unit of flow time. The models:

- :class:`~.nets_ode.ImageFlowNet` (``"imageflownet_ode"`` / ``"imageflownet_sde"``): UNet
  latents evolved by autonomous per-scale fields (neural ODE or SDE), then decoded;
- :class:`~.nets_fm.LatentFlowMatching` (``"latent_fm"``): simulation-free flow matching from the
  latents of the earlier visit to those of the later one, conditioned on h;
- :class:`~.nets_unet.TimeConditionedUNet` (``"unet"``): x0 and h → x1 in one UNet pass.

Each implements ``loss(batch)`` on the batches of :mod:`.data` (pairs or triples: every later
visit is a target) and ``forecast(images, dt)``; ``trajectory(images, dts)`` gives several
horizons at once.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sciflow.engine import LossOutput
from sciflow.nn.unet import UNet


class Forecaster(nn.Module, ABC):
    """Base of the medical forecasters.

    Args:
        in_channels: image channels C.
        image_size: image side R (square images).
        time_scale: months per unit of horizon; the networks see h = Δt / time_scale.

    Attributes:
        kind: the model's name (``sampler.model_kind``).
        stochastic: whether ``forecast`` draws from a distribution (uses its ``generator``).
    """

    kind: str = ""

    def __init__(self, in_channels: int, image_size: int, time_scale: float):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("image_size", image_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if not (isinstance(time_scale, (int, float)) and math.isfinite(time_scale)) or not (
            time_scale > 0
        ):
            raise ValueError(
                f"time_scale: expected a positive number of months, got {time_scale!r}"
            )
        self.in_channels, self.image_size = in_channels, image_size
        self.time_scale = float(time_scale)

    @property
    def stochastic(self) -> bool:
        return False

    def horizon(self, dt: torch.Tensor) -> torch.Tensor:
        """dt (B,) months → h (B,) = dt / time_scale."""
        return dt / self.time_scale

    def check_inputs(self, images: torch.Tensor, dt: torch.Tensor) -> None:
        """Raise ValueError unless images is (B, C, R, R) and dt (B,) finite and >= 0."""
        c, r = self.in_channels, self.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (c, r, r):
            raise ValueError(
                f"images: expected (B, {c}, {r}, {r}) (this model's channels and size), got "
                f"{tuple(images.shape)}"
            )
        if dt.shape != (images.shape[0],):
            raise ValueError(f"dt: expected shape ({images.shape[0]},), got {tuple(dt.shape)}")
        if not torch.isfinite(dt).all() or (dt < 0).any():
            raise ValueError(f"dt: expected finite gaps >= 0 months, got {dt.tolist()}")

    @abstractmethod
    def loss(self, batch: Mapping[str, torch.Tensor], generator=None) -> LossOutput:
        """The training loss on a batch of visit tuples (see :mod:`.data`)."""

    @abstractmethod
    def forecast(
        self,
        images: torch.Tensor,
        dt: torch.Tensor,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, int]:
        """images (B, C, R, R), dt (B,) months → (forecast (B, C, R, R) unclipped, NFE).

        NFE counts network evaluations per forecast: the encoder–decoder (or UNet) pass is
        one, every evaluation of the latent vector field (all scales at once) is one more.
        ``num_steps`` overrides the model's solver steps (ignored by one-pass models).
        """

    def trajectory(
        self,
        images: torch.Tensor,
        dts: torch.Tensor,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, int]:
        """images (B, C, R, R), dts (T,) increasing months → ((B, T, C, R, R), total NFE).

        This default forecasts every horizon independently; models with a flow override it to
        continue one path through the horizons.
        """
        outs, nfe = [], 0
        for dt in dts:
            out, n = self.forecast(images, dt.expand(images.shape[0]), num_steps, generator)
            outs.append(out)
            nfe += n
        return torch.stack(outs, dim=1), nfe


def later_visits(batch: Mapping[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The targets of a batch: [(x_k (B, C, R, R), t_k − t0 (B,) months)] for k = 1, 2, …"""
    if "x0" not in batch or "x1" not in batch:
        raise ValueError(f"batch: expected visits 'x0' and 'x1' at least, got keys {sorted(batch)}")
    visits, k = [], 1
    while f"x{k}" in batch:
        visits.append((batch[f"x{k}"], batch[f"t{k}"] - batch["t0"]))
        k += 1
    return visits


def image_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all pixels of a batch (scalar)."""
    return F.mse_loss(prediction, target)


def channel_cosine_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 − cosine similarity of the channel vectors at each position, averaged (scalar);
    a, b: (B, C, h, w)."""
    return (1 - F.cosine_similarity(a, b, dim=1, eps=1e-6)).mean()


def build_autoencoder(
    in_channels: int,
    image_size: int,
    base_channels: int,
    channel_mults: Sequence[int],
    num_res_blocks: int,
    attention_levels: Sequence[int],
    dropout: float,
    norm_groups: int,
    cond_dim: int | None = None,
) -> UNet:
    """The shared UNet (no time embedding) whose ``encode`` gives the multiscale latents."""
    unet = UNet(
        in_channels,
        in_channels,
        base_channels=base_channels,
        channel_mults=tuple(channel_mults),
        num_res_blocks=num_res_blocks,
        attention_levels=tuple(attention_levels),
        time_embedding=False,
        cond_dim=cond_dim,
        dropout=dropout,
        norm_groups=norm_groups,
    )
    if image_size % unet.size_multiple:
        raise ValueError(
            f"image_size: expected a multiple of {unet.size_multiple} for "
            f"{len(unet.channels)} levels, got {image_size}"
        )
    return unet


def latent_shapes(unet: UNet, image_size: int) -> list[tuple[int, int, int]]:
    """(channels, side, side) of each of the L + 1 maps of ``unet.encode`` at ``image_size``."""
    side = image_size // unet.shuffle_factor
    shapes = [(c, side >> i, side >> i) for i, c in enumerate(unet.channels)]
    return [*shapes, shapes[-1]]


def resolve_scales(flow_scales: Sequence[int] | None, num_maps: int) -> tuple[int, ...]:
    """The latent maps that flow: sorted distinct indices in [0, num_maps) (None: all)."""
    if flow_scales is None:
        return tuple(range(num_maps))
    scales = tuple(sorted(set(flow_scales)))
    if not scales or any(not isinstance(i, int) or not 0 <= i < num_maps for i in scales):
        raise ValueError(
            f"flow_scales: expected indices in [0, {num_maps - 1}] (0 = finest skip, "
            f"{num_maps - 1} = bottleneck), got {flow_scales!r}"
        )
    return scales


class ScaleField(nn.Module):
    """A small convolutional vector field on one latent map: (B, C, h, w) → (B, C, h, w).

    GroupNorm-SiLU-conv3x3 (C → hidden), GroupNorm, optional FiLM from ``emb`` (B, emb_dim),
    SiLU-conv3x3 (hidden → C). With ``monotone`` a final ReLU makes f ≥ 0 elementwise (the
    official ImageFlowNet field); otherwise the last conv starts at zero, so an untrained field
    is f ≡ 0 and the flow starts as the identity.
    """

    def __init__(
        self,
        channels: int,
        hidden: int,
        emb_dim: int | None = None,
        monotone: bool = False,
        groups: int = 8,
    ):
        super().__init__()
        self.norm1 = nn.GroupNorm(math.gcd(channels, groups), channels)
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1)
        self.norm2 = nn.GroupNorm(math.gcd(hidden, groups), hidden)
        self.film = nn.Linear(emb_dim, 2 * hidden) if emb_dim else None
        self.conv2 = nn.Conv2d(hidden, channels, 3, padding=1)
        self.monotone = monotone
        if not monotone:
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)

    def forward(self, z: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm2(self.conv1(F.silu(self.norm1(z))))
        if self.film is not None:
            if emb is None:
                raise ValueError("emb: this field is conditioned (emb_dim set); got None")
            scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        out = self.conv2(F.silu(h))
        return F.relu(out) if self.monotone else out


def scale_fields(
    shapes: Sequence[tuple[int, int, int]],
    scales: Sequence[int],
    field_mult: int,
    emb_dim: int | None,
    monotone: bool,
    groups: int,
) -> nn.ModuleDict:
    """One :class:`ScaleField` per flowing map, keyed ``"z{i}"``."""
    if not isinstance(field_mult, int) or field_mult < 1:
        raise ValueError(f"field_mult: expected a positive int, got {field_mult!r}")
    return nn.ModuleDict(
        {
            f"z{i}": ScaleField(shapes[i][0], field_mult * shapes[i][0], emb_dim, monotone, groups)
            for i in scales
        }
    )


def check_weights(**weights: float) -> dict[str, float]:
    """Loss weights as floats, each finite and >= 0 (0 disables the term)."""
    for name, value in weights.items():
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}: expected a loss weight >= 0, got {value!r}")
    return {name: float(value) for name, value in weights.items()}


def total_loss(terms: dict[str, torch.Tensor]) -> LossOutput:
    """The sum of the (already weighted) terms."""
    return LossOutput(total=sum(terms.values()), terms=terms)
