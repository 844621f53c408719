"""The engine: one generative process over a dict of named parts that share one time per sample.

A *batch* is a dict holding one tensor per component name plus optional context entries:
``mask`` (B, N) bool for padded set-valued parts, ``index`` (M,) long mapping the rows of
index-batched parts to their sample (PyG style) together with ``num_samples``, and ``cond`` for
conditioning. Each component declares its ``layout``:

- ``dense``: (B, *event_shape, point_dim), one event per sample;
- ``padded``: (B, N, point_dim) with ``mask`` (B, N);
- ``indexed``: (M, point_dim) with ``index`` (M,).

A network is any module called as ``network(x_t, t, context) -> dict`` with ``x_t`` the noisy
state, ``t`` (B,) the times and ``context`` the batch's non-state entries; it returns, per
component, a velocity (tangent representation) or a predicted endpoint (point representation).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch

from sciflow.couplings import Coupling, IndependentCoupling
from sciflow.geometry.torus import remove_mean
from sciflow.manifolds.base import Manifold
from sciflow.manifolds.euclidean import Euclidean
from sciflow.paths.affine import AffinePath
from sciflow.paths.geodesic import GeodesicPath
from sciflow.paths.path import PathSample, ProbPath
from sciflow.paths.schedulers import Scheduler
from sciflow.solvers.ode import ODESolution, solve_ode

CONTEXT_KEYS = ("mask", "index", "num_samples", "cond")
Layout = Literal["dense", "padded", "indexed"]


@dataclass
class LossOutput:
    """A training loss: ``total`` (scalar) and the weighted per-component ``terms`` (scalars)."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


def split_batch(batch: Mapping[str, object]) -> tuple[dict, dict]:
    """Separate a batch into its state parts and its context entries (mask, index, cond...)."""
    state = {k: v for k, v in batch.items() if k not in CONTEXT_KEYS}
    context = {k: v for k, v in batch.items() if k in CONTEXT_KEYS}
    return state, context


def batch_size(state: Mapping[str, torch.Tensor], context: Mapping[str, object]) -> int:
    """Number of samples B in a batch (from ``num_samples``, ``mask`` or a dense part)."""
    if "num_samples" in context:
        return int(context["num_samples"])
    if "mask" in context:
        return context["mask"].shape[0]
    return next(iter(state.values())).shape[0]


class Component(ABC):
    """One named part of a sample, living on ``manifold`` and laid out as ``layout``."""

    manifold: Manifold
    layout: Layout
    weight: float

    @abstractmethod
    def loss(
        self,
        output: torch.Tensor,
        path_sample: PathSample,
        context: Mapping[str, object],
        num_samples: int,
    ) -> torch.Tensor:
        """Per-sample loss (B,) of the network output for this part."""


class FlowComponent(Component):
    """Flow matching on ``manifold`` along a geodesic (or, on Euclidean space, affine) path.

    Args:
        manifold: the part's space.
        scheduler: the path's schedule (linear by default).
        path: ``"geodesic"`` (any manifold) or ``"affine"`` (Euclidean only; needed for
            schedules whose α+σ ≠ 1, such as VP, to mean what they mean in Euclidean FM).
        prediction: the network predicts the ``"velocity"`` or the endpoint ``"x1"``; an x1
            prediction is trained by the velocity it implies, so both losses live in the tangent
            space.
        weight: the part's weight in the total loss.
        layout: ``"dense"``, ``"padded"`` or ``"indexed"`` (see the module docstring).
        event_shape: for dense parts, the dims between the batch and the point (e.g. (N,) for a
            fixed-size set).
        remove_mean: subtract the per-sample mean of target and predicted velocities (removes the
            translation mode on periodic sets, as for crystal coordinates).
    """

    def __init__(
        self,
        manifold: Manifold,
        scheduler: Scheduler | None = None,
        path: Literal["geodesic", "affine"] = "geodesic",
        prediction: Literal["velocity", "x1"] = "velocity",
        weight: float = 1.0,
        layout: Layout = "dense",
        event_shape: tuple[int, ...] = (),
        remove_mean: bool = False,
    ):
        if not isinstance(manifold, Manifold):
            raise TypeError(f"manifold: expected a sciflow Manifold, got {type(manifold).__name__}")
        if path == "affine":
            self.path: ProbPath = AffinePath(manifold, scheduler)  # type: ignore[arg-type]
        elif path == "geodesic":
            self.path = GeodesicPath(manifold, scheduler)
        else:
            raise ValueError(f"path: expected 'geodesic' or 'affine', got {path!r}")
        if prediction not in ("velocity", "x1"):
            raise ValueError(f"prediction: expected 'velocity' or 'x1', got {prediction!r}")
        if layout not in ("dense", "padded", "indexed"):
            raise ValueError(f"layout: expected 'dense', 'padded' or 'indexed', got {layout!r}")
        if layout != "dense" and event_shape:
            raise ValueError(
                f"event_shape: only dense parts take one, got {event_shape} ({layout})"
            )
        self.manifold = manifold
        self.prediction = prediction
        self.weight = float(weight)
        self.layout = layout
        self.event_shape = tuple(event_shape)
        self.remove_mean = remove_mean

    # -- shapes -------------------------------------------------------------------------------
    def element_time(self, t: torch.Tensor, x: torch.Tensor, context: Mapping) -> torch.Tensor:
        """Per-sample times (B,) expanded to the part's element shape ``x.shape[:-1]``."""
        if self.layout == "indexed":
            return t[context["index"]]
        return t.reshape(t.shape[0], *([1] * (x.ndim - 2))).expand(x.shape[:-1])

    def prior(self, num_samples: int, context: Mapping, generator=None, dtype=None, device=None):
        """Draw prior points for this part: (B, *event, d), (B, N, d) or (M, d)."""
        if self.layout == "dense":
            shape = (num_samples, *self.event_shape)
        elif self.layout == "padded":
            shape = tuple(context["mask"].shape)
        else:
            shape = (context["index"].shape[0],)
        return self.manifold.random(*shape, generator=generator, dtype=dtype, device=device)

    def _centre(self, v: torch.Tensor, context: Mapping, num_samples: int) -> torch.Tensor:
        if not self.remove_mean:
            return v
        if self.layout == "indexed":
            return remove_mean(v, index=context["index"], num_sets=num_samples)
        return remove_mean(v, mask=context.get("mask") if self.layout == "padded" else None)

    def _per_sample_mean(self, err: torch.Tensor, context: Mapping, num_samples: int):
        """Average per-element errors (element shape) into one value per sample (B,)."""
        if self.layout == "indexed":
            index = context["index"]
            total = err.new_zeros(num_samples).index_add_(0, index, err)
            count = err.new_zeros(num_samples).index_add_(0, index, torch.ones_like(err))
            return total / count.clamp_min(1)
        if self.layout == "padded":
            mask = context["mask"].to(err.dtype)
            return (err * mask).sum(1) / mask.sum(1).clamp_min(1)
        return err.reshape(err.shape[0], -1).mean(1)

    # -- training and sampling ----------------------------------------------------------------
    def velocity(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, context, n: int):
        """Turn a network output into a tangent velocity at x_t (element-shaped ``t``)."""
        if self.prediction == "x1":
            v = self.path.velocity_from_x1(x_t, self.manifold.projx(output), t)
        else:
            v = self.manifold.proju(x_t, output)
        return self._centre(v, context, n)

    def loss(self, output, path_sample, context, num_samples):
        v = self.velocity(output, path_sample.x_t, path_sample.t, context, num_samples)
        target = self._centre(path_sample.dx_t, context, num_samples)
        err = (v - target).pow(2).sum(-1)
        return self._per_sample_mean(err, context, num_samples)

    def __repr__(self) -> str:
        return (
            f"FlowComponent({self.path!r}, prediction={self.prediction!r}, layout={self.layout!r})"
        )


class Engine:
    """Flow matching over a dict of named components with one time per sample.

    Args:
        components: name → Component.
        coupling: how prior draws are paired with data in a minibatch (dense parts only for OT).
        t_max: largest training time; x1-prediction losses divide by 1−κ_t, so ReQFlow-style
            training uses t ≤ 1 − 0.01.
    """

    def __init__(
        self,
        components: dict[str, Component],
        coupling: Coupling | None = None,
        t_max: float = 1.0,
    ):
        if not components:
            raise ValueError("components: the engine needs at least one named component")
        for name, comp in components.items():
            if name in CONTEXT_KEYS:
                raise ValueError(f"components: {name!r} is reserved for context, rename the part")
            if not isinstance(comp, Component):
                raise TypeError(f"components[{name!r}]: expected a Component, got {comp!r}")
        if not 0 < t_max <= 1:
            raise ValueError(f"t_max: expected a float in (0, 1], got {t_max!r}")
        self.components = dict(components)
        self.coupling = coupling or IndependentCoupling()
        self.t_max = float(t_max)

    @property
    def manifolds(self) -> dict[str, Manifold]:
        return {name: comp.manifold for name, comp in self.components.items()}

    def _check_state(self, state: Mapping[str, torch.Tensor]) -> None:
        missing = set(self.components) - set(state)
        if missing:
            raise ValueError(f"batch: missing part(s) {sorted(missing)}; got keys {sorted(state)}")
        for name, comp in self.components.items():
            x = state[name]
            if x.shape[-1] != comp.manifold.point_dim:
                raise ValueError(
                    f"batch[{name!r}]: expected last dimension {comp.manifold.point_dim} for "
                    f"{comp.manifold!r}, got shape {tuple(x.shape)}"
                )

    def prior(
        self,
        num_samples: int,
        context: Mapping[str, object] | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> dict[str, torch.Tensor]:
        """Prior draws for every part (shapes as in the batch layout)."""
        context = context or {}
        return {
            name: comp.prior(num_samples, context, generator=generator, dtype=dtype, device=device)
            for name, comp in self.components.items()
        }

    def loss(
        self,
        network: Callable,
        batch: Mapping[str, object],
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """Draw prior points and times, build x_t on every part, and score the network."""
        state, context = split_batch(batch)
        self._check_state(state)
        x1 = {name: state[name] for name in self.components}
        n = batch_size(x1, context)
        ref = next(iter(x1.values()))
        x0 = self.prior(n, context, generator, ref.dtype, ref.device)
        dense = all(c.layout == "dense" for c in self.components.values())
        if dense:
            x0 = self.coupling(x0, x1, self.manifolds, generator=generator)
        elif not isinstance(self.coupling, IndependentCoupling):
            raise ValueError("coupling: minibatch OT is defined here for dense parts only")
        t = torch.rand(n, generator=generator, dtype=ref.dtype, device=ref.device) * self.t_max
        samples = {
            name: comp.path.sample(x0[name], x1[name], comp.element_time(t, x1[name], context))
            for name, comp in self.components.items()
        }
        outputs = network({k: s.x_t for k, s in samples.items()}, t, context)
        terms = {}
        for name, comp in self.components.items():
            if name not in outputs:
                raise ValueError(f"network output: missing part {name!r}; got {sorted(outputs)}")
            terms[name] = comp.weight * comp.loss(outputs[name], samples[name], context, n).mean()
        return LossOutput(total=sum(terms.values()), terms=terms)

    def velocity_field(self, network: Callable, context: Mapping[str, object]):
        """The learned field ``(t: 0-dim, x: dict) -> dict`` of tangent velocities for solvers."""

        def field_fn(t: torch.Tensor, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            n = batch_size(x, context)
            t_batch = t.expand(n) if t.ndim == 0 else t
            out = network(x, t_batch, context)
            return {
                name: comp.velocity(
                    out[name], x[name], comp.element_time(t_batch, x[name], context), context, n
                )
                for name, comp in self.components.items()
            }

        return field_fn

    @torch.no_grad()
    def sample(
        self,
        network: Callable,
        num_samples: int,
        context: Mapping[str, object] | None = None,
        num_steps: int = 50,
        solver: str = "euler",
        generator: torch.Generator | None = None,
        time_grid: torch.Tensor | None = None,
        return_trajectory: bool = False,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        progress: bool = False,
    ) -> ODESolution:
        """Integrate the learned field from the prior at t=0 to t=1 (or along ``time_grid``)."""
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples: expected a positive int, got {num_samples!r}")
        if time_grid is None:
            if not isinstance(num_steps, int) or num_steps < 1:
                raise ValueError(f"num_steps: expected a positive int, got {num_steps!r}")
            time_grid = torch.linspace(0.0, 1.0, num_steps + 1, dtype=dtype, device=device)
        context = dict(context or {})
        context.setdefault("num_samples", num_samples)
        x0 = self.prior(num_samples, context, generator, dtype, device)
        return solve_ode(
            self.velocity_field(network, context),
            x0,
            self.manifolds,
            time_grid,
            method=solver,
            return_trajectory=return_trajectory,
            progress=progress,
        )

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={v!r}" for k, v in self.components.items())
        return f"Engine({parts}, coupling={type(self.coupling).__name__}, t_max={self.t_max})"


def euclidean_engine(dim: int, **component_kwargs) -> Engine:
    """An engine with one dense Euclidean part named ``x`` — the classic CFM set-up."""
    return Engine({"x": FlowComponent(Euclidean(dim), **component_kwargs)})
