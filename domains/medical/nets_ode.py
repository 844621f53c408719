"""ImageFlowNet: multiscale UNet latents evolved by autonomous neural ODEs (or SDEs) over the gap.

After Liu et al. 2024 (ImageFlowNet), re-implemented from the mathematics. The UNet encoder turns
the earlier visit x into L + 1 latent maps z^l; every map listed in ``flow_scales`` evolves by
its own *position-parameterised* field f_l (no time input), over the horizon h = Δt/time_scale:

    dz^l/dτ = f_l(z^l),   τ ∈ [0, h]            (ODE)
    dz^l = f_l(z^l) dτ + σ_l dW_τ                (SDE, one learnable σ_l per map)

and the decoder turns the evolved maps into the forecast. A batch mixes gaps by rescaling time,
s = τ/h ∈ [0, 1]:

    dz/ds = h_b f(z)                     dz = h_b f(z) ds + sqrt(h_b) σ dW_s,

which is the same flow (or the same SDE in law) for every item while all items share one solver
grid, so the engine's fixed-step solvers integrate the whole batch at once. Because f does not
depend on time the flow is a semigroup, Φ_{a+b} = Φ_b ∘ Φ_a, and h = 0 is exactly the identity
(the forecast at Δt = 0 is the autoencoder's reconstruction).

Training loss (each weight in the config; 0 disables the term):

- ``forecast``: image MSE of every later visit of the batch item, forecast from x0 (triples are
  reached by continuing the first path: Φ_{h2} = Φ_{h2−h1} ∘ Φ_{h1});
- ``recon`` (``recon_weight``): MSE of the autoencoding of x0;
- ``latent`` (``latent_weight``), the latent-organisation term: a SimSiam-style predictor head
  per flowing map, cosine distance between head(ẑ_k) and the stop-gradient encoding of x_k;
- ``smooth`` (``smooth_weight``): the kinetic energy of the path, mean ‖h f(z)‖² over all field
  evaluations (the dynamic-OT reading of the paper's smoothness prior);
- ``visual`` (``visual_weight``): cosine distance between the features of the forecast and of
  the truth under the model's own encoder with its weights held fixed for this term (a
  perceptual loss without ImageNet weights).

Deviations from the official code: fixed-step solvers (rk4 by default; ``dopri5`` optional) on
chosen scales instead of adaptive dopri5 on all 13 maps; a batch of mixed gaps instead of batch
size 1; the prediction loss trains the whole network (the official code lets it train only the
ODE); no final ReLU in f unless ``monotone``; the SDE σ is per map (official: one scalar).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from sciflow_domains.medical.nets import (
    Forecaster,
    build_autoencoder,
    channel_cosine_loss,
    check_weights,
    image_mse,
    latent_shapes,
    later_visits,
    resolve_scales,
    scale_fields,
    total_loss,
)
from torch import nn

from sciflow.engine import LossOutput
from sciflow.manifolds import Euclidean
from sciflow.solvers import solve_ode, solve_sde
from sciflow.solvers.ode import METHODS


def integrate_latents(
    fields: Mapping[str, nn.Module],
    latents: Mapping[str, torch.Tensor],
    horizon: torch.Tensor,
    num_steps: int,
    method: str = "rk4",
    sigma: Mapping[str, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    energy: list[torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], int]:
    """Evolve latent maps over per-item horizons with time rescaling.

    Args:
        fields: name → autonomous field f, (B, C, h, w) → (B, C, h, w).
        latents: name → z(0), (B, C, h, w); the same names as ``fields``.
        horizon: (B,) flow times h_b >= 0.
        num_steps: solver steps over s ∈ [0, 1] (``dopri5``: the grid it reports at).
        method: ``euler``/``midpoint``/``heun``/``rk4``/``dopri5`` (ODE only).
        sigma: name → 0-dim diffusion scale σ; given, the SDE is integrated by Euler–Maruyama
            (``method`` must then be ``"euler"``).
        generator: the Brownian increments' source (SDE).
        energy: if a list, each field evaluation appends the mean of ‖h f(z)‖² over the maps.

    Returns:
        (name → z(h), (B, C, h, w); the number of field evaluations).
    """
    if set(fields) != set(latents):
        raise ValueError(f"latents: expected the maps {sorted(fields)}, got {sorted(latents)}")
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps: expected a positive int, got {num_steps!r}")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if sigma is not None and method != "euler":
        raise ValueError(
            f"method: the SDE is integrated by Euler–Maruyama ('euler'), got {method!r}"
        )
    ref = next(iter(latents.values()))
    scale = horizon.to(ref.dtype).reshape(-1, 1, 1, 1)
    manifolds = {name: Euclidean(z.shape[-1]) for name, z in latents.items()}

    def drift(s: torch.Tensor, z: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {name: scale * fields[name](value) for name, value in z.items()}
        if energy is not None:
            energy.append(torch.stack([v.pow(2).mean() for v in out.values()]).mean())
        return out

    grid = torch.linspace(0.0, 1.0, num_steps + 1, dtype=ref.dtype, device=ref.device)
    if sigma is None:
        solution = solve_ode(drift, dict(latents), manifolds, grid, method=method)
    else:
        root = scale.sqrt()
        solution = solve_sde(
            drift,
            lambda s, z: {name: root * sigma[name] for name in z},
            dict(latents),
            manifolds,
            grid,
            generator=generator,
        )
    return solution.x, solution.num_function_evals


class ImageFlowNet(Forecaster):
    """ImageFlowNet forecaster (module docstring), ODE or (``stochastic``) SDE.

    Args:
        in_channels, image_size: image channels C and side R.
        base_channels, channel_mults, num_res_blocks, attention_levels, dropout, norm_groups:
            the UNet (:class:`sciflow.nn.UNet`, no time embedding); its ``encode`` gives
            L + 1 = len(channel_mults) + 1 maps, index 0 the finest skip, L the bottleneck.
        flow_scales: indices of the maps that evolve (None: all); the others pass unchanged.
        field_mult: hidden width of each field = field_mult × the map's channels.
        monotone: end every field with a ReLU (f ≥ 0, as the official code).
        time_scale: months per unit of flow time (the paper's κ = 1/time_scale).
        solver, num_steps: the ODE solver over s ∈ [0, 1] and its steps (the SDE needs
            ``"euler"``: Euler–Maruyama).
        stochastic: the SDE variant (kind ``"imageflownet_sde"``).
        sigma_init: initial σ of every map (SDE). learn_sigma: train σ (else fixed).
        recon_weight, latent_weight, smooth_weight, visual_weight: loss weights (module
            docstring); the forecast term has weight 1.
    """

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
        monotone: bool = False,
        time_scale: float = 12.0,
        solver: str = "rk4",
        num_steps: int = 2,
        stochastic: bool = False,
        sigma_init: float = 0.1,
        learn_sigma: bool = True,
        recon_weight: float = 1.0,
        latent_weight: float = 0.0,
        smooth_weight: float = 0.0,
        visual_weight: float = 0.0,
    ):
        super().__init__(in_channels, image_size, time_scale)
        if solver not in METHODS:
            raise ValueError(f"solver: expected one of {METHODS}, got {solver!r}")
        if stochastic and solver != "euler":
            raise ValueError(
                f"solver: the SDE variant is integrated by Euler–Maruyama; set solver: euler "
                f"(got {solver!r})"
            )
        if not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps: expected a positive int, got {num_steps!r}")
        if not sigma_init >= 0:
            raise ValueError(f"sigma_init: expected a float >= 0, got {sigma_init!r}")
        self.weights = check_weights(
            recon_weight=recon_weight,
            latent_weight=latent_weight,
            smooth_weight=smooth_weight,
            visual_weight=visual_weight,
        )
        self.unet = build_autoencoder(
            in_channels, image_size, base_channels, channel_mults, num_res_blocks,
            attention_levels, dropout, norm_groups,
        )  # fmt: skip
        shapes = latent_shapes(self.unet, image_size)
        self.scales = resolve_scales(flow_scales, len(shapes))
        self.fields = scale_fields(shapes, self.scales, field_mult, None, monotone, norm_groups)
        self.solver, self.num_steps, self.is_sde = solver, num_steps, stochastic
        if stochastic:
            sigma = torch.full((len(self.scales),), float(sigma_init))
            if learn_sigma:
                self.sigma = nn.Parameter(sigma)
            else:
                self.register_buffer("sigma", sigma)
        self.heads = (
            nn.ModuleDict(
                {
                    f"z{i}": nn.Sequential(
                        nn.Conv2d(shapes[i][0], shapes[i][0], 1),
                        nn.SiLU(),
                        nn.Conv2d(shapes[i][0], shapes[i][0], 1),
                    )
                    for i in self.scales
                }
            )
            if latent_weight > 0
            else None
        )

    @property
    def kind(self) -> str:
        return "imageflownet_sde" if self.is_sde else "imageflownet_ode"

    @property
    def stochastic(self) -> bool:
        return self.is_sde

    # -- the flow -------------------------------------------------------------------------
    def sigmas(self) -> dict[str, torch.Tensor] | None:
        """Map name → σ (0-dim) for the SDE, None for the ODE."""
        if not self.is_sde:
            return None
        return {f"z{i}": self.sigma[k] for k, i in enumerate(self.scales)}

    def evolve(
        self,
        features: Sequence[torch.Tensor],
        horizon: torch.Tensor,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
        energy: list[torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor], int]:
        """The L + 1 latent maps after flowing for h = ``horizon`` (B,) → (maps, NFE)."""
        latents = {f"z{i}": features[i] for i in self.scales}
        evolved, nfe = integrate_latents(
            self.fields, latents, horizon, num_steps or self.num_steps, self.solver,
            self.sigmas(), generator, energy,
        )  # fmt: skip
        out = list(features)
        for i in self.scales:
            out[i] = evolved[f"z{i}"]
        return out, nfe

    def forecast(self, images, dt, num_steps=None, generator=None):
        self.check_inputs(images, dt)
        features = self.unet.encode(images)
        evolved, nfe = self.evolve(features, self.horizon(dt), num_steps, generator)
        return self.unet.decode(evolved), nfe + 1

    def trajectory(self, images, dts, num_steps=None, generator=None):
        """One path through increasing horizons dts (T,): each segment continues the last
        (the semigroup property), so SDE samples are coherent paths."""
        if dts.dim() != 1 or (dts.diff() < 0).any():
            raise ValueError(f"dts: expected a 1-D non-decreasing tensor, got {dts.tolist()}")
        batch = images.shape[0]
        self.check_inputs(images, dts[:1].expand(batch))
        features, previous, nfe, outs = self.unet.encode(images), 0.0, 1, []
        for dt in dts:
            gap = (dt - previous).expand(batch)
            features, n = self.evolve(features, self.horizon(gap), num_steps, generator)
            outs.append(self.unet.decode(features))
            previous, nfe = dt, nfe + n
        return torch.stack(outs, dim=1), nfe

    # -- training -------------------------------------------------------------------------
    def loss(self, batch, generator=None) -> LossOutput:
        x0 = batch["x0"]
        features = self.unet.encode(x0)
        w = self.weights
        terms: dict[str, torch.Tensor] = {}
        if w["recon_weight"] > 0:
            terms["recon"] = w["recon_weight"] * image_mse(self.unet.decode(features), x0)
        energy = [] if w["smooth_weight"] > 0 else None
        forecast, latent, visual = [], [], []
        elapsed = torch.zeros_like(batch["t0"])
        for target, gap in later_visits(batch):
            features, _ = self.evolve(
                features, self.horizon(gap - elapsed), generator=generator, energy=energy
            )
            elapsed = gap
            prediction = self.unet.decode(features)
            forecast.append(image_mse(prediction, target))
            if self.heads is not None:
                latent.append(self._organisation(features, target))
            if w["visual_weight"] > 0:
                visual.append(self._visual(prediction, target))
        terms["forecast"] = torch.stack(forecast).mean()
        if latent:
            terms["latent"] = w["latent_weight"] * torch.stack(latent).mean()
        if energy:
            terms["smooth"] = w["smooth_weight"] * torch.stack(energy).mean()
        if visual:
            terms["visual"] = w["visual_weight"] * torch.stack(visual).mean()
        return total_loss(terms)

    def _organisation(self, evolved: Sequence[torch.Tensor], target: torch.Tensor):
        """Cosine distance between head(ẑ) and the stop-gradient encoding of the target."""
        with torch.no_grad():
            encoded = self.unet.encode(target)
        losses = [
            channel_cosine_loss(self.heads[f"z{i}"](evolved[i]), encoded[i]) for i in self.scales
        ]
        return torch.stack(losses).mean()

    def _visual(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cosine distance of encoder features of forecast and truth, the encoder's weights
        held fixed (gradients reach the forecast only)."""
        encoder = self.unet.encoder
        fixed = {name: p.detach() for name, p in encoder.named_parameters()}
        s = self.unet.shuffle_factor

        def features(x: torch.Tensor) -> list[torch.Tensor]:
            x = F.pixel_unshuffle(x, s) if s > 1 else x
            return torch.func.functional_call(encoder, fixed, (x, None))

        with torch.no_grad():
            truth = features(target)
        losses = [
            channel_cosine_loss(p, t) for p, t in zip(features(prediction), truth, strict=True)
        ]
        return torch.stack(losses).mean()
