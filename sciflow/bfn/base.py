"""The interface of one Bayesian flow (Graves et al. 2023) as an engine component.

A Bayesian flow keeps, per data element, the parameters θ of an *input distribution* over the
data. Starting from a prior θ_0, noisy *sender* samples y_i ~ p_S(·|x; α_i) of the data update θ by
Bayes' rule. The network sees θ (and t) and outputs a prediction of the data; training compares
the sender distribution around the truth with the one around the prediction. Time runs from
t = 0 (prior) to t = 1 (data); with ``n`` steps, step ``i`` ∈ {1..n} goes from t_{i−1} = (i−1)/n
to t_i = i/n and uses accuracy α_i.

θ is stored as one tensor per part, ``(*element_shape, param_dim)``:

- Gaussian (continuous data in R^d): the mean μ (..., d); the precision is a function of t.
- discrete (K classes): the class probabilities (..., K).
- von Mises (d angles on a torus of period L): ``[m, c]`` (..., 2d), the circular means m in
  data units [0, L) and the concentrations c ≥ 0.

Data are ``(*element_shape, d)`` floats for Gaussian and von Mises parts, and class indices of
shape ``(*element_shape,)`` (int64) for discrete parts.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Literal

import torch

from sciflow.engine import Component

SamplingMethod = Literal["vanilla", "end_back"]


class BayesianFlow(Component):
    """One part of a sample driven by a Bayesian flow.

    Subclasses set ``param_dim`` (width of θ per element), ``output_dim`` (width of the network
    output per element), ``manifold`` (the data space, or ``None`` for discrete data) and
    ``supports_continuous_time``.
    """

    param_dim: int
    supports_continuous_time: bool = True

    # -- θ at the start, and along the flow ------------------------------------------------------
    @abstractmethod
    def prior_params(self, shape: tuple[int, ...], generator=None, dtype=None, device=None):
        """θ_0 for elements of ``shape``: returns (*shape, param_dim)."""

    def prior(self, num_samples: int, context: Mapping, generator=None, dtype=None, device=None):
        """θ_0 laid out like the batch: (*element_shape, param_dim)."""
        shape = self.element_shape(num_samples, context)
        return self.prior_params(shape, generator=generator, dtype=dtype, device=device)

    @abstractmethod
    def flow_sample(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        step: torch.Tensor | None,
        num_steps: int | None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw θ from the Bayesian flow distribution p_F(θ | x; t).

        x: data (*element_shape, d) or class indices (*element_shape,); t: (*element_shape,)
        times. With ``num_steps`` n, ``step`` (*element_shape,) int64 holds i ∈ {1..n} and θ is
        the state after i−1 updates (t = (i−1)/n); with ``num_steps=None`` (continuous time),
        ``step`` is None. Returns θ (*element_shape, param_dim).
        """

    # -- the network's view -----------------------------------------------------------------------
    @abstractmethod
    def features(self, params: torch.Tensor) -> torch.Tensor:
        """Network input features of θ (*element_shape, param_dim) → (*element_shape, f)."""

    @abstractmethod
    def predict(self, output: torch.Tensor, params: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The data prediction implied by the network output.

        Gaussian: x̂ (..., d); discrete: class probabilities (..., K); von Mises: x̂ (..., d) in
        data units [0, L). ``t`` (*element_shape,).
        """

    # -- training ----------------------------------------------------------------------------
    @abstractmethod
    def loss(
        self,
        x: torch.Tensor,
        output: torch.Tensor,
        params: torch.Tensor,
        t: torch.Tensor,
        step: torch.Tensor | None,
        num_steps: int | None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Per-element loss (*element_shape,): the continuous-time loss L∞ when ``num_steps`` is
        None, else the n-step loss L^n at step ``step`` (both include their time weighting and
        factor n; the engine multiplies by the component's ``weight`` and averages)."""

    # -- sampling ----------------------------------------------------------------------------
    @abstractmethod
    def sample_step(
        self,
        params: torch.Tensor,
        output: torch.Tensor,
        step: int,
        num_steps: int,
        generator: torch.Generator | None = None,
        method: SamplingMethod = "vanilla",
    ) -> torch.Tensor:
        """θ_i from θ_{i−1} and the network output at t_{i−1}, for step i of n.

        ``"vanilla"``: draw a sender sample around the prediction with accuracy α_i and apply the
        Bayesian update. ``"end_back"``: re-draw θ_i from the flow distribution p_F(·| x̂; t_i)
        around the prediction x̂.
        """

    @abstractmethod
    def finalize(
        self, output: torch.Tensor, params: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The sample returned after the last step, from the network output at t = 1: data
        (..., d) for continuous parts, class indices (...,) int64 for discrete ones."""

    def entropy_features(self, params: torch.Tensor) -> torch.Tensor | None:
        """Normalised log-concentration of θ for entropy conditioning, or ``None`` if the flow's
        uncertainty is a function of t alone (Gaussian, discrete)."""
        return None
