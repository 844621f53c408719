"""Periodic (von Mises) Bayesian flow on the flat torus [0, L)^d (CrysBFN; engine-math M4).

Each coordinate x ∈ [0, L) is an angle φ = 2πx/L. The input distribution is vM(m, c) per
coordinate and the sender is y ~ vM(φ, α_i). Starting from c = 0 (m uniform), the updates add
vectors on the circle, so after k updates ``c e^{im} = Σ_{j≤k} α_j e^{i y_j}``: the flow
distribution is sampled with one batched von Mises draw and a masked sum. Because c is random
(a disagreeing y can shrink it), the network is told log c ("entropy conditioning"). The
accuracies α_i come from the entropy-linear schedule of ``sciflow.bfn.schedules`` and are tied to
the number of steps n, so this flow has no continuous-time loss.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from sciflow.bfn._checks import check_output, check_real, check_step_index, check_steps
from sciflow.bfn.base import BayesianFlow
from sciflow.bfn.schedules import METHODS, ScheduleMethod, load_alphas
from sciflow.engine import Layout
from sciflow.geometry import vonmises
from sciflow.geometry._numerics import check_last_dim
from sciflow.geometry.torus import wrap
from sciflow.manifolds.torus import FlatTorus

# ε of the normalised log-concentration (log(c+ε) − log ε)/(log β1 − log ε), as in CrysBFN.
LOG_C_EPS = 1e-7


def accumulate_updates(
    y: torch.Tensor, alphas: torch.Tensor, num_updates: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The state after the first k updates from c = 0: ``c e^{im} = Σ_{j=1..k} α_j e^{i y_j}``.

    y: (..., J) sender angles (radians) of updates 1..J; alphas: (J,) their accuracies;
    num_updates: integer tensor k ∈ [0, J] broadcasting against ``y.shape[:-1]``. Returns
    ``(m, c)`` of shape ``y.shape[:-1]``: m in [−π, π) (0 where k = 0) and c ≥ 0.
    """
    used = torch.arange(y.shape[-1], device=y.device) < num_updates.unsqueeze(-1)
    weight = torch.where(used, alphas.to(y.dtype), 0.0)
    re = (weight * torch.cos(y)).sum(-1)
    im = (weight * torch.sin(y)).sum(-1)
    return vonmises.wrap_angle(torch.atan2(im, re)), torch.hypot(re, im)


class VonMisesBFN(BayesianFlow):
    """A Bayesian flow over the torus [0, ``period``)^``dim``; θ = [m, c] (*element_shape, 2·dim)
    with the circular means m in data units [0, L) and the concentrations c ≥ 0.

    The network gets ``features(θ)``: [cos φ_m, sin φ_m] (2·dim) and, with entropy conditioning,
    the normalised log-concentration (dim); it outputs a displacement in radians per coordinate
    (``output_dim = dim``), and x̂ = (m + output·L/2π) mod L (as CrysBFN).

    Args:
        dim: number of periodic coordinates d.
        period: the period L (1 for fractional coordinates, 2π for angles).
        beta1: the target concentration at t = 1 (CrysBFN: 1e3).
        weight: the part's weight in the total loss.
        layout: ``"dense"``, ``"padded"`` or ``"indexed"`` (see ``sciflow.engine``).
        event_shape: for dense parts, the dims between the batch and the point.
        entropy_conditioning: append the normalised log c to the features.
        loss_type: ``"kl"``: n·α_i·A(α_i)·Σ_d (1 − cos(φ − φ̂)), the exact KL; ``"mse"``: the same
            weight times Σ_d wrap(φ − φ̂)² (CrysBFN's option, ≈ 2× the KL for small errors).
        schedule: how the accuracies are fitted, ``"crysbfn"`` or ``"flow"`` (see
            ``sciflow.bfn.schedules``).
        step_weights: the weight w_i of step i's loss. ``"bfn"``: n·α_i·A(α_i), the n-step
            loss of the method; it rises steeply with i (for β₁ = 1e3, n = 10: 8.7 at i = 1 to
            5,385 at i = 10, so the first four steps carry < 1 % of it). ``"uniform"``: every step
            gets the mean of those weights. ``"floored"``: max(w_i, mean), early steps raised to
            the mean, late steps kept. Both keep late-step precision comparable while giving the
            early, decisive predictions a training signal (an ablation, not CrysBFN).
    """

    supports_continuous_time = False

    def __init__(
        self,
        dim: int,
        period: float = 1.0,
        beta1: float = 1e3,
        weight: float = 1.0,
        layout: Layout = "dense",
        event_shape: tuple[int, ...] = (),
        entropy_conditioning: bool = True,
        loss_type: Literal["kl", "mse"] = "kl",
        schedule: ScheduleMethod = "crysbfn",
        step_weights: Literal["bfn", "uniform", "floored"] = "bfn",
    ):
        self.manifold = FlatTorus(dim, period)
        check_real(beta1, "beta1")
        if not 0 < beta1 < float("inf"):
            raise ValueError(f"beta1: expected a finite positive number, got {beta1!r}")
        if loss_type not in ("kl", "mse"):
            raise ValueError(f"loss_type: expected 'kl' or 'mse', got {loss_type!r}")
        if step_weights not in ("bfn", "uniform", "floored"):
            raise ValueError(
                f"step_weights: expected 'bfn', 'uniform' or 'floored', got {step_weights!r}"
            )
        if schedule not in METHODS:
            raise ValueError(f"schedule: expected one of {METHODS}, got {schedule!r}")
        self._set_placement(weight, layout, tuple(event_shape))
        self.dim = dim
        self.param_dim = 2 * dim
        self.period = float(period)
        self.beta1 = float(beta1)
        self.entropy_conditioning = bool(entropy_conditioning)
        self.loss_type = loss_type
        self.schedule = schedule
        self.step_weights = step_weights

    @property
    def output_dim(self) -> int:
        return self.dim

    def alphas(self, num_steps: int) -> torch.Tensor:
        """The accuracies α_1..α_n (n,) float64 of an n-step flow (cached)."""
        return load_alphas(num_steps, self.beta1, self.schedule)

    def loss_weights(self, num_steps: int) -> torch.Tensor:
        """The per-step loss weights w_1..w_n (n,) float64 (see ``step_weights``)."""
        alphas = self.alphas(num_steps)
        weights = num_steps * alphas * vonmises.bessel_ratio(alphas)
        if self.step_weights == "uniform":
            return weights.mean().expand_as(weights)
        if self.step_weights == "floored":
            return weights.clamp_min(weights.mean())
        return weights

    # -- units ---------------------------------------------------------------------------------
    def _to_angle(self, x: torch.Tensor) -> torch.Tensor:
        """Data units → radians."""
        return x * (2 * math.pi / self.period)

    def _to_data(self, phi: torch.Tensor) -> torch.Tensor:
        """Radians → data units in [0, L)."""
        return self.manifold.projx(phi * (self.period / (2 * math.pi)))

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """θ (..., 2d) → (m (..., d) in data units, c (..., d))."""
        check_last_dim(params, self.param_dim, "params", "von Mises parameters [m, c]")
        return params[..., : self.dim], params[..., self.dim :]

    # -- θ -------------------------------------------------------------------------------------
    def prior_params(self, shape, generator=None, dtype=None, device=None):
        """θ_0: m uniform on [0, L), c = 0; (*shape, 2·dim)."""
        m = self.manifold.random(*shape, generator=generator, dtype=dtype, device=device)
        return torch.cat([m, torch.zeros_like(m)], dim=-1)

    def _flow(self, x, num_updates, num_steps, generator):
        """θ after ``num_updates`` (*element_shape,) updates around the data x (*, d): one draw
        y (*, d, J) with J = max updates, then ``accumulate_updates``; m is uniform where no
        update was made. Returns (*, 2d) in x's dtype."""
        alphas = self.alphas(num_steps).to(x.device)
        most = int(num_updates.max()) if num_updates.numel() else 0
        phi = self._to_angle(x.to(torch.float64))
        y = vonmises.sample(phi.unsqueeze(-1), alphas[:most], generator)
        m, c = accumulate_updates(y, alphas[:most], num_updates.unsqueeze(-1))
        m = self._to_data(m).to(x.dtype)
        fresh = num_updates == 0
        if fresh.any():
            shape = m.shape[:-1]
            uniform = self.manifold.random(
                *shape, generator=generator, dtype=x.dtype, device=x.device
            )
            m = torch.where(fresh.unsqueeze(-1), uniform, m)
        return torch.cat([m, c.to(x.dtype)], dim=-1)

    def flow_sample(self, x, t, step, num_steps, generator=None):
        """θ_{i−1} ~ p_F(·| x; i−1 updates): x (*element_shape, dim) in [0, L), ``step``
        (*element_shape,) int i ∈ {1..n}; ``t`` = (i−1)/n is not used. Returns (*, 2·dim)."""
        _require_steps(num_steps)
        check_last_dim(x, self.dim, "x", f"points of the {self.dim}-torus")
        check_steps(step, num_steps, x.shape[:-1])
        return self._flow(x, step - 1, num_steps, generator)

    # -- the network's view ----------------------------------------------------------------------
    def entropy_features(self, params):
        """(log(c+ε) − log ε)/(log β1 − log ε), ε = 1e−7: (..., dim), 0 at c = 0 and ≈ 1 at
        c = β1; ``None`` without entropy conditioning."""
        if not self.entropy_conditioning:
            return None
        _, c = self._split(params)
        log_eps = math.log(LOG_C_EPS)
        return (torch.log(c + LOG_C_EPS) - log_eps) / (math.log(self.beta1) - log_eps)

    def features(self, params):
        """[cos φ_m, sin φ_m] (..., 2·dim), then the entropy features (..., dim) if enabled."""
        m, _ = self._split(params)
        phi = self._to_angle(m)
        parts = [torch.cos(phi), torch.sin(phi)]
        if self.entropy_conditioning:
            parts.append(self.entropy_features(params))
        return torch.cat(parts, dim=-1)

    def predict(self, output, params, t=None):
        """x̂ = (m + output·L/2π) mod L (..., dim): ``output`` (..., dim) is a displacement in
        radians from the circular mean m; ``t`` is not used."""
        m, _ = self._split(params)
        check_output(output, params.shape[:-1], self.dim)
        return self.manifold.projx(m + output * (self.period / (2 * math.pi)))

    # -- training ------------------------------------------------------------------------------
    def loss(self, x, output, params, t, step, num_steps, generator=None):
        """The n-step loss at step i (*element_shape,): w_i·Σ_d (1 − cos(φ − φ̂)) ("kl") or
        with wrap(φ − φ̂)² ("mse"), φ̂ predicted from θ_{i−1}; w_i from :meth:`loss_weights`
        (n·α_i·A(α_i) by default)."""
        _require_steps(num_steps)
        check_last_dim(x, self.dim, "x", f"points of the {self.dim}-torus")
        check_steps(step, num_steps, x.shape[:-1])
        delta = self._to_angle(x - self.predict(output, params, t))
        if self.loss_type == "kl":
            err = 2 * torch.sin(delta / 2).square().sum(-1)  # 1 − cos δ, exact for small δ
        else:
            err = wrap(delta, 2 * math.pi).square().sum(-1)
        weight = self.loss_weights(num_steps).to(x.device)[step - 1]
        return weight.to(err.dtype) * err

    # -- sampling ------------------------------------------------------------------------------
    def sample_step(self, params, output, step, num_steps, generator=None, method="vanilla"):
        """θ_i from θ_{i−1} (..., 2·dim) and the network output at t_{i−1} = (i−1)/n.

        ``"vanilla"``: y ~ vM(φ̂, α_i), then the circular update. ``"end_back"``: θ_i drawn
        afresh from the flow around x̂ after i updates (i von Mises draws with α_1..α_i).
        """
        check_step_index(step, num_steps, method)
        x_hat = self.predict(output, params)
        if method == "end_back":
            updates = torch.full(x_hat.shape[:-1], step, device=x_hat.device)
            return self._flow(x_hat, updates, num_steps, generator)
        m, c = self._split(params)
        alpha = float(self.alphas(num_steps)[step - 1])
        y = vonmises.sample(self._to_angle(x_hat), alpha, generator)
        m_new, c_new = vonmises.circular_update(self._to_angle(m), c, y, alpha)
        return torch.cat([self._to_data(m_new), c_new], dim=-1)

    def finalize(self, output, params, generator=None):
        """x̂ (..., dim) in [0, L) from the network output at t = 1."""
        return self.predict(output, params)

    def __repr__(self) -> str:
        return (
            f"VonMisesBFN(dim={self.dim}, period={self.period:g}, beta1={self.beta1:g}, "
            f"layout={self.layout!r}, entropy_conditioning={self.entropy_conditioning}, "
            f"loss_type={self.loss_type!r}, schedule={self.schedule!r}, "
            f"step_weights={self.step_weights!r})"
        )


def _require_steps(num_steps: object) -> None:
    if num_steps is None:
        raise ValueError(
            "num_steps: the von Mises flow has no continuous-time loss (its accuracy schedule "
            "is tied to n); give the number of steps n"
        )
