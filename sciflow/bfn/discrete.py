"""Discrete (categorical) Bayesian flow over K classes (Graves et al. 2023, §6).

The input distribution is categorical with probabilities θ; the prior is θ_0 = 1/K. A sender
sample for class x with accuracy α is y ~ N(α(K e_x − 1), αK I), and Bayes' rule multiplies θ by
the likelihood, which up to a factor constant in the class is e^{y_k}:

    θ'_k ∝ θ_k e^{y_k},   computed as   log θ' = log_softmax(log θ + y).

With β(t) = β1 t² (α(t) = dβ/dt = 2β1 t) the flow distribution is θ = softmax(y) with
y ~ N(β(K e_x − 1), βK I). With n steps, step i uses α_i = β1(2i − 1)/n², so that
Σ_{j≤i} α_j = β(i/n).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from sciflow.bfn._checks import (
    check_output,
    check_real,
    check_step_index,
    check_steps,
    check_time,
)
from sciflow.bfn.base import BayesianFlow
from sciflow.engine import Layout
from sciflow.geometry._numerics import check_tensor


def discrete_update(theta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One Bayesian update of categorical probabilities by a sender sample.

    theta: (..., K) probabilities; y: (..., K) sender samples (the accuracy α is already in y).
    Returns the posterior probabilities (..., K), computed in log space so that large β cannot
    overflow; classes whose probability underflows become exactly 0.
    """
    check_tensor(theta, "theta", "class probabilities")
    check_tensor(y, "y", "sender samples")
    if theta.shape != y.shape:
        raise ValueError(
            f"y: expected the shape of theta {tuple(theta.shape)}, got {tuple(y.shape)}"
        )
    return torch.softmax(theta.log() + y, dim=-1)


class DiscreteBFN(BayesianFlow):
    """A Bayesian flow over K classes; data are class indices (*element_shape,) int64 and
    θ = class probabilities (*element_shape, K).

    Args:
        num_classes: K ≥ 2.
        beta1: the final accuracy β(1) > 0 (CrysBFN's atom types use 0.5).
        weight: the part's weight in the total loss.
        layout: ``"dense"``, ``"padded"`` or ``"indexed"`` (see ``sciflow.engine``).
        event_shape: for dense parts, the dims between the batch and the element.
        num_mc: Monte-Carlo sender samples per element for the n-step loss.
        final: the returned class is the ``"argmax"`` of p_O at t = 1, or a categorical
            ``"sample"`` of it.
    """

    manifold = None
    supports_continuous_time = True

    def __init__(
        self,
        num_classes: int,
        beta1: float = 3.0,
        weight: float = 1.0,
        layout: Layout = "dense",
        event_shape: tuple[int, ...] = (),
        num_mc: int = 20,
        final: Literal["argmax", "sample"] = "argmax",
    ):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes: expected an int ≥ 2, got {num_classes!r}")
        check_real(beta1, "beta1")
        if not 0 < beta1 < math.inf:
            raise ValueError(f"beta1: expected a finite positive float, got {beta1!r}")
        if isinstance(num_mc, bool) or not isinstance(num_mc, int) or num_mc < 1:
            raise ValueError(f"num_mc: expected a positive int, got {num_mc!r}")
        if final not in ("argmax", "sample"):
            raise ValueError(f"final: expected 'argmax' or 'sample', got {final!r}")
        self._set_placement(weight, layout, tuple(event_shape))
        self.num_classes = self.param_dim = num_classes
        self.beta1 = float(beta1)
        self.num_mc = num_mc
        self.final = final

    @property
    def output_dim(self) -> int:
        return self.num_classes

    def check_data(self, x: torch.Tensor, name: str) -> None:
        """Raise ``ValueError`` naming ``name`` unless ``x`` holds class indices in [0, K)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor of class indices, got {type(x)}")
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"{name}: expected integer class indices (int64), got {x.dtype}")
        if x.numel() and (x.min() < 0 or x.max() >= self.num_classes):
            raise ValueError(
                f"{name}: expected class indices in [0, {self.num_classes}), "
                f"got values in [{int(x.min())}, {int(x.max())}]"
            )

    # -- schedule ------------------------------------------------------------------------------
    def beta(self, t):
        """β(t) = β1 t² (float or tensor)."""
        return self.beta1 * t * t

    def alpha(self, step, num_steps: int):
        """α_i = β1(2i − 1)/n², the accuracy of step i of n (int or tensor)."""
        return self.beta1 * (2 * step - 1) / num_steps**2

    def _sender(self, mean_probs, accuracy, generator):
        """y ~ N(α(K p − 1), αK I) for p (..., K) (one-hot or probabilities), α (..., 1)."""
        k = self.num_classes
        noise = torch.randn(
            mean_probs.shape, generator=generator, dtype=mean_probs.dtype, device=mean_probs.device
        )
        return accuracy * (k * mean_probs - 1) + (accuracy * k).sqrt() * noise

    def _one_hot(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return torch.nn.functional.one_hot(x.long(), self.num_classes).to(dtype)

    # -- θ -------------------------------------------------------------------------------------
    def prior_params(self, shape, generator=None, dtype=None, device=None):
        """θ_0 = 1/K: (*shape, K)."""
        return torch.full(
            (*shape, self.num_classes), 1 / self.num_classes, dtype=dtype, device=device
        )

    def flow_sample(self, x, t, step, num_steps, generator=None):
        """θ = softmax(y), y ~ N(β(t)(K e_x − 1), β(t)K I): x (*element_shape,) class indices,
        t (*element_shape,) → θ (*element_shape, K) in t's dtype.

        With ``num_steps``, ``t`` must be (i−1)/n (the time before step i); ``step`` is unused.
        """
        self.check_data(x, "x")
        check_time(t, x.shape)
        check_steps(step, num_steps, x.shape)
        y = self._sender(self._one_hot(x, t.dtype), self.beta(t).unsqueeze(-1), generator)
        return torch.softmax(y, dim=-1)

    def features(self, params):
        """2θ − 1 in [−1, 1]: (..., K) → (..., K)."""
        return 2 * params - 1

    def predict(self, output, params, t):
        """p_O: the class probabilities (..., K) from the network's logits (..., K)."""
        check_output(output, params.shape[:-1], self.num_classes)
        return torch.softmax(output, dim=-1)

    # -- training ------------------------------------------------------------------------------
    def loss(self, x, output, params, t, step, num_steps, generator=None):
        """Per-element loss (*element_shape,).

        Continuous time: L∞ = Kβ1 t ‖e_x − p_O‖². With n steps: the KL between the sender
        N(α(K e_x − 1), αK I) and the receiver Σ_k p_O(k) N(α(K e_k − 1), αK I), times n, by
        Monte Carlo over ``num_mc`` sender samples y. All K Gaussians share the covariance,
        so ln N(y | α(K e_k − 1), αK I) = y_k + (a term equal for all k), and each sample
        contributes y_x − logsumexp_k(ln p_O(k) + y_k).
        """
        self.check_data(x, "x")
        check_time(t, x.shape)
        check_steps(step, num_steps, x.shape)
        check_output(output, x.shape, self.num_classes)
        e_x = self._one_hot(x, output.dtype)
        if num_steps is None:
            err = (e_x - torch.softmax(output, dim=-1)).pow(2).sum(-1)
            return self.num_classes * self.beta1 * t * err
        alpha = self.alpha(step.to(output.dtype), num_steps).unsqueeze(-1)
        y = self._sender(e_x.expand(self.num_mc, *e_x.shape), alpha, generator)
        log_ratio = (y * e_x).sum(-1) - torch.logsumexp(output.log_softmax(-1) + y, dim=-1)
        return num_steps * log_ratio.mean(0)

    # -- sampling ------------------------------------------------------------------------------
    def sample_step(self, params, output, step, num_steps, generator=None, method="vanilla"):
        """θ_i from θ_{i−1} (..., K) and the network logits at t_{i−1} = (i−1)/n.

        ``"vanilla"``: k ~ p_O, y ~ N(α_i(K e_k − 1), α_i K I), Bayesian update.
        ``"end_back"``: θ_i = softmax(y), y ~ N(β(t_i)(K p_O − 1), β(t_i)K I), t_i = i/n.
        """
        check_step_index(step, num_steps, method)
        check_output(output, params.shape[:-1], self.num_classes)
        if method == "end_back":
            beta = params.new_tensor(self.beta(step / num_steps))
            y = self._sender(torch.softmax(output, dim=-1), beta, generator)
            return torch.softmax(y, dim=-1)
        k = _sample_class(output, generator)
        alpha = params.new_tensor(self.alpha(step, num_steps))
        y = self._sender(self._one_hot(k, params.dtype), alpha, generator)
        return discrete_update(params, y)

    def finalize(self, output, params, generator=None):
        """The class (...,) int64 of p_O at t = 1: its argmax, or a sample if ``final="sample"``."""
        check_output(output, params.shape[:-1], self.num_classes)
        if self.final == "sample":
            return _sample_class(output, generator)
        return output.argmax(-1)

    def __repr__(self) -> str:
        return (
            f"DiscreteBFN(num_classes={self.num_classes}, beta1={self.beta1}, "
            f"layout={self.layout!r})"
        )


def _sample_class(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """A class index (...,) drawn from softmax(logits) (..., K), by the Gumbel-max trick."""
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
    gumbel = -(-u.clamp_min(torch.finfo(logits.dtype).tiny).log()).log()
    return (logits + gumbel).argmax(-1)
