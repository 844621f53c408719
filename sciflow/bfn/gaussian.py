"""Gaussian Bayesian flow for continuous data in R^d (Graves et al. 2023, §4).

The input distribution over x ∈ R^d is N(μ, ρ⁻¹I). The prior is μ_0 = 0, ρ_0 = 1, and the
precision follows the schedule ρ(t) = σ1^{−2t} deterministically, so θ holds only μ. A sender
sample y ~ N(x, α⁻¹I) updates (μ, ρ) by conjugacy:

    ρ' = ρ + α,    μ' = (ρμ + αy) / ρ'.

With β(t) = σ1^{−2t} − 1 the flow distribution has the closed form μ ~ N(γx, γ(1−γ)I) with
γ(t) = 1 − σ1^{2t}. With n steps, step i uses α_i = σ1^{−2i/n}(1 − σ1^{2/n}), and the precision
before it is ρ_{i−1} = 1 + Σ_{j<i} α_j = σ1^{−2(i−1)/n}.

The shared input checks at the bottom of this module are used by the other flows too.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from sciflow.bfn._checks import check_output, check_real, check_step_index, check_steps, check_time
from sciflow.bfn.base import BayesianFlow
from sciflow.engine import Layout
from sciflow.geometry._numerics import check_last_dim, check_tensor
from sciflow.manifolds.euclidean import Euclidean


def gaussian_update(mu, rho, y, alpha):
    """One Bayesian update of a Gaussian input distribution by a sender sample.

    mu: (..., d) prior means; rho: prior precisions, a float or a tensor broadcasting against
    ``mu`` (e.g. (..., 1)); y: (..., d) sender samples; alpha: sender precisions, broadcasting
    like ``rho``. Returns ``(mu', rho')``: the posterior means (..., d) and precisions ρ + α.
    """
    check_tensor(mu, "mu", "means")
    check_tensor(y, "y", "sender samples")
    if mu.shape != y.shape:
        raise ValueError(f"y: expected the shape of mu {tuple(mu.shape)}, got {tuple(y.shape)}")
    rho_new = rho + alpha
    return (rho * mu + alpha * y) / rho_new, rho_new


class GaussianBFN(BayesianFlow):
    """A Bayesian flow over R^``dim``; θ = μ (*element_shape, dim).

    Args:
        dim: dimension d of the data points.
        sigma1: standard deviation of the input distribution at t = 1, in (0, 1)
            (CrysBFN's lattice uses 10^−1.5 ≈ 0.0316).
        prediction: the network outputs the noise ``"eps"`` (x̂ = μ/γ − √((1−γ)/γ)·ε̂) or the
            data ``"x"`` directly (x̂ = output, CrysBFN's ``pred_mean``).
        weight: the part's weight in the total loss.
        layout: ``"dense"``, ``"padded"`` or ``"indexed"`` (see ``sciflow.engine``).
        event_shape: for dense parts, the dims between the batch and the point.
        t_min: eps-prediction only: below this time γ ≈ 0 and x̂ is set to 0.
        x_clip: eps-prediction only: clamp x̂ to [−x_clip, x_clip] (None: no clamp).
    """

    supports_continuous_time = True

    def __init__(
        self,
        dim: int,
        sigma1: float = 0.001,
        prediction: Literal["eps", "x"] = "eps",
        weight: float = 1.0,
        layout: Layout = "dense",
        event_shape: tuple[int, ...] = (),
        t_min: float = 1e-6,
        x_clip: float | None = None,
    ):
        self.manifold = Euclidean(dim)
        check_real(sigma1, "sigma1")
        if not 0 < sigma1 < 1:
            raise ValueError(f"sigma1: expected a float in (0, 1), got {sigma1!r}")
        if prediction not in ("eps", "x"):
            raise ValueError(f"prediction: expected 'eps' or 'x', got {prediction!r}")
        check_real(t_min, "t_min")
        if not 0 <= t_min < 1:
            raise ValueError(f"t_min: expected a float in [0, 1), got {t_min!r}")
        if x_clip is not None:
            check_real(x_clip, "x_clip")
            if not x_clip > 0:
                raise ValueError(f"x_clip: expected a positive float or None, got {x_clip!r}")
        self._set_placement(weight, layout, tuple(event_shape))
        self.dim = self.param_dim = dim
        self.sigma1 = float(sigma1)
        self.log_sigma1 = math.log(sigma1)
        self.prediction = prediction
        self.t_min = float(t_min)
        self.x_clip = None if x_clip is None else float(x_clip)

    @property
    def output_dim(self) -> int:
        return self.dim

    # -- schedule ------------------------------------------------------------------------------
    def gamma(self, t: torch.Tensor) -> torch.Tensor:
        """γ(t) = 1 − σ1^{2t} = β/(1+β), any shape (exact for small t via expm1)."""
        return -torch.expm1(2 * t * self.log_sigma1)

    def precision(self, t):
        """ρ(t) = σ1^{−2t}, the input precision at time t (float or tensor)."""
        if isinstance(t, torch.Tensor):
            return torch.exp(-2 * t * self.log_sigma1)
        return math.exp(-2 * t * self.log_sigma1)

    def alpha(self, step, num_steps: int):
        """α_i = σ1^{−2i/n}(1 − σ1^{2/n}), the accuracy of step i of n (int or tensor)."""
        return self.precision(step / num_steps) * -math.expm1(2 * self.log_sigma1 / num_steps)

    # -- θ -------------------------------------------------------------------------------------
    def prior_params(self, shape, generator=None, dtype=None, device=None):
        """μ_0 = 0: (*shape, dim)."""
        return torch.zeros(*shape, self.dim, dtype=dtype, device=device)

    def flow_sample(self, x, t, step, num_steps, generator=None):
        """μ ~ N(γ(t)x, γ(1−γ)I): x (*element_shape, dim), t (*element_shape,) → μ of x's shape.

        With ``num_steps``, ``t`` must be (i−1)/n (the time before step i); ``step`` is unused.
        """
        check_last_dim(x, self.dim, "x", f"points of R^{self.dim}")
        check_time(t, x.shape[:-1])
        check_steps(step, num_steps, x.shape[:-1])
        gamma = self.gamma(t).unsqueeze(-1)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return gamma * x + (gamma * (1 - gamma)).sqrt() * noise

    def features(self, params):
        """The network sees μ itself (and t, from the engine): (..., dim) → (..., dim)."""
        return params

    def predict(self, output, params, t):
        """x̂ (..., dim) from the network output (..., dim), μ (..., dim) and t (...)."""
        check_output(output, params.shape[:-1], self.dim)
        check_time(t, params.shape[:-1])
        if self.prediction == "x":
            return output
        t = t.unsqueeze(-1)
        early = t < self.t_min
        # γ = 1 in the unused branch keeps values and gradients finite at t = 0
        gamma = torch.where(early, torch.ones_like(t), self.gamma(t))
        x_hat = params / gamma - ((1 - gamma) / gamma).sqrt() * output
        if self.x_clip is not None:
            x_hat = x_hat.clamp(-self.x_clip, self.x_clip)
        return torch.where(early, torch.zeros_like(x_hat), x_hat)

    # -- training ------------------------------------------------------------------------------
    def loss(self, x, output, params, t, step, num_steps, generator=None):
        """Per-element loss (*element_shape,).

        Continuous time: L∞ = −ln σ1·σ1^{−2t}·‖x − x̂‖². With n steps: L^n = (n/2)·α_i·‖x − x̂‖²,
        x̂ predicted from θ_{i−1} at t = (i−1)/n.
        """
        check_last_dim(x, self.dim, "x", f"points of R^{self.dim}")
        check_time(t, x.shape[:-1])
        check_steps(step, num_steps, x.shape[:-1])
        err = (x - self.predict(output, params, t)).pow(2).sum(-1)
        if num_steps is None:
            return -self.log_sigma1 * self.precision(t) * err
        return 0.5 * num_steps * self.alpha(step.to(err.dtype), num_steps) * err

    # -- sampling ------------------------------------------------------------------------------
    def sample_step(self, params, output, step, num_steps, generator=None, method="vanilla"):
        """μ_i from μ_{i−1} (..., dim) and the network output at t_{i−1} = (i−1)/n.

        ``"vanilla"``: y ~ N(x̂, α_i⁻¹I), then the Bayesian update with ρ_{i−1} = σ1^{−2(i−1)/n}.
        ``"end_back"``: μ_i ~ N(γ(t_i)x̂, γ(1−γ)I), the flow around x̂ at t_i = i/n.
        """
        check_step_index(step, num_steps, method)
        t_prev = params.new_full(params.shape[:-1], (step - 1) / num_steps)
        x_hat = self.predict(output, params, t_prev)
        if method == "end_back":
            t_next = params.new_full(params.shape[:-1], step / num_steps)
            return self.flow_sample(x_hat, t_next, None, None, generator)
        alpha = self.alpha(step, num_steps)
        noise = torch.randn(
            x_hat.shape, generator=generator, dtype=x_hat.dtype, device=x_hat.device
        )
        rho = self.precision((step - 1) / num_steps)
        return gaussian_update(params, rho, x_hat + noise / math.sqrt(alpha), alpha)[0]

    def finalize(self, output, params, generator=None):
        """x̂ at t = 1: (..., dim)."""
        return self.predict(output, params, params.new_ones(params.shape[:-1]))

    def __repr__(self) -> str:
        return (
            f"GaussianBFN(dim={self.dim}, sigma1={self.sigma1}, prediction={self.prediction!r}, "
            f"layout={self.layout!r})"
        )
