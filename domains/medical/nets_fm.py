"""Latent flow matching: a simulation-free flow from the latents of the earlier visit to those of
the later one, conditioned on the gap (the idea of TFM and IMMFM, on ImageFlowNet's autoencoder).

With z0 = E(x0) and z1 = E(x1) the UNet encodings of two visits Δt apart (on the maps listed in
``flow_scales``), the path z_t = (1 − t) z̃0 + t z1 with z̃0 = z0 + ``source_noise``·ε has the
velocity z1 − z̃0; a field v(z_t, t | h), h = Δt/time_scale, is regressed onto it. This is the
engine's flow matching (:class:`sciflow.engine.Engine`) with one dense
:class:`~sciflow.engine.FlowComponent` per latent map, the map (B, C, h, w) being a dense part
with event shape (C, h) and points in R^w; the source points are passed as the batch's paired
prior ``x0`` (the engine's rectified-flow pairs), so no Gaussian prior is involved. A forecast
integrates v from the source latents over t ∈ [0, 1] and decodes the result, the maps that do
not flow being taken from x0.

Training is joint with a stop-gradient: the flow-matching loss sees detached latents, so it
trains the field only, and the autoencoder is trained by reconstruction alone — of x0, and of
x1 from its own latents on the flowing maps and x0's on the others (what the decoder receives
at forecast time). With ``source_noise`` > 0 the forecast is a distribution (different seeds,
different futures); with 0 it is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from sciflow_domains.medical.nets import (
    Forecaster,
    build_autoencoder,
    check_weights,
    image_mse,
    latent_shapes,
    later_visits,
    resolve_scales,
    scale_fields,
    total_loss,
)
from torch import nn

from sciflow.engine import Engine, FlowComponent, LossOutput
from sciflow.manifolds import Euclidean
from sciflow.nn.embeddings import FourierTimeEmbedding
from sciflow.solvers.ode import TABLEAUS


class LatentFlowMatching(Forecaster):
    """Gap-conditioned flow matching between visit latents (module docstring).

    Args:
        in_channels, image_size, base_channels, channel_mults, num_res_blocks,
            attention_levels, dropout, norm_groups: the UNet, as in :class:`.ImageFlowNet`.
        flow_scales: the latent maps that flow (None: all).
        field_mult: hidden width of each field = field_mult × the map's channels.
        time_scale: months per unit of h.
        solver, num_steps: the forecast's fixed-step solver over t ∈ [0, 1].
        source_noise: standard deviation of the Gaussian added to the source latents.
        recon_weight, fm_weight: weights of the reconstruction and flow-matching terms.
    """

    kind = "latent_fm"

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
        flow_scales: Sequence[int] | None = None,
        field_mult: int = 1,
        time_scale: float = 12.0,
        solver: str = "euler",
        num_steps: int = 8,
        source_noise: float = 0.0,
        recon_weight: float = 1.0,
        fm_weight: float = 1.0,
    ):
        super().__init__(in_channels, image_size, time_scale)
        if solver not in TABLEAUS:
            raise ValueError(
                f"solver: expected a fixed-step method {tuple(TABLEAUS)}, got {solver!r}"
            )
        if not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps: expected a positive int, got {num_steps!r}")
        if not (isinstance(source_noise, (int, float)) and source_noise >= 0):
            raise ValueError(
                f"source_noise: expected a standard deviation >= 0, got {source_noise!r}"
            )
        self.weights = check_weights(recon_weight=recon_weight, fm_weight=fm_weight)
        self.source_noise = float(source_noise)
        self.unet = build_autoencoder(
            in_channels, image_size, base_channels, channel_mults, num_res_blocks,
            attention_levels, dropout, norm_groups,
        )  # fmt: skip
        shapes = latent_shapes(self.unet, image_size)
        self.scales = resolve_scales(flow_scales, len(shapes))
        emb_dim = 4 * base_channels
        self.fields = scale_fields(shapes, self.scales, field_mult, emb_dim, False, norm_groups)
        self.time_embed = nn.Sequential(
            FourierTimeEmbedding(2 * base_channels), nn.Linear(2 * base_channels, emb_dim)
        )
        self.gap_embed = nn.Sequential(
            nn.Linear(1, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.solver, self.num_steps = solver, num_steps
        # Per-element mean squared velocity error on every map: the engine sums over the last
        # axis (w), so each part is weighted 1/w.
        self.engine = Engine(
            {
                f"z{i}": FlowComponent(
                    Euclidean(shapes[i][2]), weight=1.0 / shapes[i][2], event_shape=shapes[i][:2]
                )
                for i in self.scales
            }
        )

    @property
    def stochastic(self) -> bool:
        return self.source_noise > 0

    def velocity(
        self, z_t: Mapping[str, torch.Tensor], t: torch.Tensor, context: Mapping
    ) -> dict[str, torch.Tensor]:
        """The engine's network: z_t (maps), t (B,), ``context["cond"]`` = h (B, 1) → velocities."""
        emb = self.time_embed(t) + self.gap_embed(context["cond"])
        emb = torch.nn.functional.silu(emb)
        return {name: self.fields[name](z, emb) for name, z in z_t.items()}

    def _source(self, features: Sequence[torch.Tensor], generator) -> dict[str, torch.Tensor]:
        """The flow's start: x0's latents on the flowing maps, plus source noise."""
        noise = self.source_noise
        source = {}
        for i in self.scales:
            z = features[i]
            if noise > 0:
                z = z + noise * torch.randn(
                    z.shape, generator=generator, dtype=z.dtype, device=z.device
                )
            source[f"z{i}"] = z
        return source

    def _compose(self, base: Sequence[torch.Tensor], flowed: Mapping[str, torch.Tensor]):
        """``base`` with the flowing maps replaced by ``flowed``."""
        return [flowed.get(f"z{i}", z) for i, z in enumerate(base)]

    def forecast(self, images, dt, num_steps=None, generator=None):
        self.check_inputs(images, dt)
        features = self.unet.encode(images)
        solution = self.engine.sample(
            self.velocity,
            images.shape[0],
            context={"cond": self.horizon(dt)[:, None].to(images.dtype)},
            num_steps=num_steps or self.num_steps,
            solver=self.solver,
            generator=generator,
            dtype=images.dtype,
            device=images.device,
            x0=self._source(features, generator),
        )
        decoded = self.unet.decode(self._compose(features, solution.x))
        return decoded, solution.num_function_evals + 1

    def loss(self, batch, generator=None) -> LossOutput:
        x0 = batch["x0"]
        start = self.unet.encode(x0)
        recon = [image_mse(self.unet.decode(start), x0)]
        flow = []
        source = self._source([z.detach() for z in start], generator)
        for target, gap in later_visits(batch):
            encoded = self.unet.encode(target)
            own = {f"z{i}": encoded[i] for i in self.scales}
            recon.append(image_mse(self.unet.decode(self._compose(start, own)), target))
            pairs = {name: z.detach() for name, z in own.items()}
            cond = self.horizon(gap)[:, None].to(x0.dtype)
            fm = self.engine.loss(self.velocity, {**pairs, "x0": source, "cond": cond}, generator)
            flow.append(fm.total)
        w = self.weights
        terms = {
            "recon": w["recon_weight"] * torch.stack(recon).mean(),
            "flow": w["fm_weight"] * torch.stack(flow).mean(),
        }
        return total_loss(terms)
