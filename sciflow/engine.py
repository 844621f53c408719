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

Two more context entries serve training tricks: ``x0``, a dict of stored prior points paired with
the batch's data (rectified flow: the engine uses them instead of fresh prior draws), and
``self_cond``, a dict of the network's own earlier endpoint predictions (self-conditioning: the
network reads them when present and treats their absence as zeros).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch

from sciflow.auxiliary import AuxiliaryLoss
from sciflow.couplings import Coupling, IndependentCoupling
from sciflow.geometry.torus import remove_mean
from sciflow.manifolds.base import Manifold
from sciflow.paths.affine import AffinePath
from sciflow.paths.geodesic import GeodesicPath
from sciflow.paths.path import ProbPath
from sciflow.paths.schedulers import Scheduler
from sciflow.solvers.ode import ODESolution, solve_ode

CONTEXT_KEYS = ("mask", "index", "num_samples", "cond", "cond_mask", "x0", "self_cond")
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
    """One named part of a sample, living on ``manifold`` and laid out as ``layout``.

    The base class owns what every process needs from the layout: per-element times, prior
    shapes and per-sample averaging. Subclasses (flow matching, Bayesian flows) say how the part
    is noised, scored and sampled.
    """

    manifold: Manifold
    layout: Layout = "dense"
    event_shape: tuple[int, ...] = ()
    weight: float = 1.0

    def _set_placement(self, weight: float, layout: str, event_shape: tuple[int, ...]) -> None:
        """Validate and store the loss weight, the layout and the dense event shape."""
        if layout not in ("dense", "padded", "indexed"):
            raise ValueError(f"layout: expected 'dense', 'padded' or 'indexed', got {layout!r}")
        if layout != "dense" and event_shape:
            raise ValueError(f"event_shape: only dense parts take one, got {event_shape}")
        self.weight = float(weight)
        self.layout = layout
        self.event_shape = tuple(event_shape)

    def element_time(self, t: torch.Tensor, x: torch.Tensor, context: Mapping) -> torch.Tensor:
        """Per-sample times (B,) expanded to the part's element shape ``x.shape[:-1]``."""
        if self.layout == "indexed":
            return t[context["index"]]
        return t.reshape(t.shape[0], *([1] * (x.ndim - 2))).expand(x.shape[:-1])

    def element_shape(self, num_samples: int, context: Mapping) -> tuple[int, ...]:
        """Shape of the part without its point dimension: (B, *event), (B, N) or (M,)."""
        if self.layout == "dense":
            return (num_samples, *self.event_shape)
        if self.layout == "padded":
            return tuple(context["mask"].shape)
        return (context["index"].shape[0],)

    def per_sample_mean(self, err: torch.Tensor, context: Mapping, num_samples: int):
        """Average per-element values (element shape) into one value per sample (B,)."""
        if self.layout == "indexed":
            index = context["index"]
            total = err.new_zeros(num_samples).index_add_(0, index, err)
            count = err.new_zeros(num_samples).index_add_(0, index, torch.ones_like(err))
            return total / count.clamp_min(1)
        if self.layout == "padded":
            mask = context["mask"].to(err.dtype)
            return (err * mask).sum(1) / mask.sum(1).clamp_min(1)
        return err.reshape(err.shape[0], -1).mean(1)

    def prior(self, num_samples: int, context: Mapping, generator=None, dtype=None, device=None):
        """Draw points of the part's reference prior: (B, *event, d), (B, N, d) or (M, d)."""
        shape = self.element_shape(num_samples, context)
        return self.manifold.random(*shape, generator=generator, dtype=dtype, device=device)

    def check_data(self, x: torch.Tensor, name: str) -> None:
        """Raise ``ValueError`` naming ``name`` unless ``x`` holds valid data for this part."""
        self.manifold.check_point(x, name=name)

    @abstractmethod
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input features for this part's noisy state: (..., feature_dim)."""

    @property
    @abstractmethod
    def output_dim(self) -> int:
        """Width of the network output this part expects, per element."""


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
        sampling_scheduler: with x1 prediction, the schedule that turns predicted endpoints into
            velocities while sampling (training keeps ``scheduler``); ReQFlow samples rotations
            with ``ExponentialScheduler(rate=10)``.
        loss_time_clip: with x1 prediction on the linear schedule, the velocity error equals the
            endpoint error divided by 1 − t; from ``t > loss_time_clip`` on, divide by
            1 − loss_time_clip instead, so the weight stops growing near the data (ReQFlow: 0.9).
        max_loss: clamp each sample's loss at this value (ReQFlow clamps the translation loss).
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
        sampling_scheduler: Scheduler | None = None,
        loss_time_clip: float | None = None,
        max_loss: float | None = None,
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
        if sampling_scheduler is not None and prediction != "x1":
            raise ValueError(
                "sampling_scheduler: a schedule for sampling alone needs prediction='x1' (the "
                "velocity is rebuilt from the predicted endpoint under that schedule)"
            )
        if loss_time_clip is not None and (prediction != "x1" or not 0 < loss_time_clip < 1):
            raise ValueError(
                "loss_time_clip: expected a float in (0, 1) with prediction='x1', got "
                f"{loss_time_clip!r} with prediction={prediction!r}"
            )
        if max_loss is not None and not max_loss > 0:
            raise ValueError(f"max_loss: expected a positive float, got {max_loss!r}")
        self.loss_time_clip, self.max_loss = loss_time_clip, max_loss
        self._set_placement(weight, layout, tuple(event_shape))
        #: The path used to turn predicted endpoints into velocities while sampling (ReQFlow
        #: trains rotations on the linear path but samples them with κ_t = 1 − e^{−ct}).
        self.sampling_path = (
            GeodesicPath(manifold, sampling_scheduler) if sampling_scheduler else self.path
        )
        self.manifold = manifold
        self.prediction = prediction
        self.remove_mean = remove_mean

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.manifold.embed(x)

    @property
    def output_dim(self) -> int:
        return self.manifold.point_dim if self.prediction == "x1" else self.manifold.tangent_dim

    def _centre(self, v: torch.Tensor, context: Mapping, num_samples: int) -> torch.Tensor:
        if not self.remove_mean:
            return v
        if self.layout == "indexed":
            return remove_mean(v, index=context["index"], num_sets=num_samples)
        return remove_mean(v, mask=context.get("mask") if self.layout == "padded" else None)

    # -- training and sampling ----------------------------------------------------------------
    def velocity(
        self,
        output: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        context,
        n: int,
        sampling: bool = False,
    ):
        """Turn a network output into a tangent velocity at x_t (element-shaped ``t``); while
        ``sampling``, x1 predictions follow ``sampling_scheduler`` when one was given."""
        if self.prediction == "x1":
            path = self.sampling_path if sampling else self.path
            v = path.velocity_from_x1(x_t, self.manifold.projx(output), t)
        else:
            v = self.manifold.proju(x_t, output)
        return self._centre(v, context, n)

    def loss(self, output, path_sample, context, num_samples):
        v = self.velocity(output, path_sample.x_t, path_sample.t, context, num_samples)
        target = self._centre(path_sample.dx_t, context, num_samples)
        err = (v - target).pow(2).sum(-1)
        if self.loss_time_clip is not None:
            t = path_sample.t
            err = err * ((1 - t) / (1 - t.clamp(max=self.loss_time_clip))).pow(2)
        loss = self.per_sample_mean(err, context, num_samples)
        return loss if self.max_loss is None else loss.clamp(max=self.max_loss)

    def __repr__(self) -> str:
        return (
            f"FlowComponent({self.path!r}, prediction={self.prediction!r}, layout={self.layout!r})"
        )


class GenerativeEngine(ABC):
    """A generative process over a dict of named components that share one time per sample.

    Subclasses define the training loss and the sampler; this base validates the components,
    draws priors, checks batches and implements classifier-free guidance, the same for all.

    Args:
        components: name → Component.
        cond_drop_prob: during training, the probability that a sample's condition
            (``context["cond"]``) is hidden from the network. The network sees which samples keep
            it in ``context["cond_mask"]`` (B,) bool and should use a learned null condition where
            it is False; sampling with ``guidance_scale`` w then combines
            ``(1 + w)·out(cond) − w·out(null)``.
    """

    component_type: type[Component] = Component

    def __init__(self, components: dict[str, Component], cond_drop_prob: float = 0.0):
        if not components:
            raise ValueError("components: the engine needs at least one named component")
        for name, comp in components.items():
            if name in CONTEXT_KEYS:
                raise ValueError(f"components: {name!r} is reserved for context, rename the part")
            if not isinstance(comp, self.component_type):
                raise TypeError(
                    f"components[{name!r}]: expected a {self.component_type.__name__}, got {comp!r}"
                )
        if not 0 <= cond_drop_prob < 1:
            raise ValueError(f"cond_drop_prob: expected a float in [0, 1), got {cond_drop_prob!r}")
        self.components = dict(components)
        self.cond_drop_prob = float(cond_drop_prob)

    @property
    def manifolds(self) -> dict[str, Manifold]:
        """The space of every part that has one (all parts but discrete ones)."""
        return {
            name: comp.manifold
            for name, comp in self.components.items()
            if getattr(comp, "manifold", None) is not None
        }

    def check_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Raise ``ValueError`` naming the part if a batch lacks a part or holds invalid data."""
        missing = set(self.components) - set(state)
        if missing:
            raise ValueError(f"batch: missing part(s) {sorted(missing)}; got keys {sorted(state)}")
        for name, comp in self.components.items():
            # names the part, the expected shape and the bad values (e.g. non-unit quaternions)
            comp.check_data(state[name], name=f"batch[{name!r}]")

    def prior(
        self,
        num_samples: int,
        context: Mapping[str, object] | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> dict[str, torch.Tensor]:
        """Draws of every part's reference prior (shapes as in the batch layout)."""
        context = context or {}
        return {
            name: comp.prior(num_samples, context, generator=generator, dtype=dtype, device=device)
            for name, comp in self.components.items()
        }

    def training_context(self, context: Mapping, num_samples: int, generator, device) -> dict:
        """The context for a training step: conditioning dropped with ``cond_drop_prob``."""
        context = dict(context)
        if "cond" in context and self.cond_drop_prob > 0:
            keep = torch.rand(num_samples, generator=generator, device=device)
            context["cond_mask"] = keep >= self.cond_drop_prob
        return context

    @staticmethod
    def network_output(
        network: Callable,
        x: Mapping[str, torch.Tensor],
        t: torch.Tensor,
        context: Mapping[str, object],
        guidance_scale: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """Call the network; with a condition and ``guidance_scale`` w ≠ 0, classifier-free
        guidance: ``(1 + w)·out(cond) − w·out(null)``, per output."""
        if guidance_scale == 0 or "cond" not in context:
            return network(x, t, context)
        n = t.shape[0]
        keep = torch.ones(n, dtype=torch.bool, device=t.device)
        conditional = network(x, t, {**context, "cond_mask": keep})
        null = network(x, t, {**context, "cond_mask": ~keep})
        w = guidance_scale
        return {k: (1 + w) * conditional[k] - w * null[k] for k in conditional}

    def check_outputs(self, outputs: Mapping[str, torch.Tensor]) -> None:
        """Raise ``ValueError`` if the network's output dict lacks a part."""
        missing = sorted(set(self.components) - set(outputs))
        if missing:
            raise ValueError(f"network output: missing part(s) {missing}; got {sorted(outputs)}")

    @abstractmethod
    def loss(
        self,
        network: Callable,
        batch: Mapping[str, object],
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """The training loss of ``network`` on a data batch."""

    @abstractmethod
    def sample(self, network: Callable, num_samples: int, **kwargs) -> ODESolution:
        """Draw ``num_samples`` samples with the trained ``network``."""

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={v!r}" for k, v in self.components.items())
        return f"{type(self).__name__}({parts})"


class Engine(GenerativeEngine):
    """Flow matching over a dict of named components with one time per sample.

    Args:
        components: name → FlowComponent.
        coupling: how prior draws are paired with data in a minibatch (dense parts only for OT).
        t_max: largest training time; x1-prediction losses divide by 1−κ_t, so ReQFlow-style
            training uses t ≤ 1 − 0.01.
        cond_drop_prob: conditioning dropout for classifier-free guidance (see GenerativeEngine).
        auxiliary_loss: extra per-sample terms on the predicted endpoints (x1 prediction only).
        self_conditioning: the probability that a training step first runs the network without
            gradients and passes its endpoint predictions back as ``context["self_cond"]``;
            sampling then always feeds back the previous evaluation's predictions (x1 prediction
            only; FrameFlow and ReQFlow use 0.5).

    A batch whose context holds ``x0`` (a dict of prior points paired with its data, as stored
    for rectified flow) is trained on those pairs instead of fresh prior draws and the coupling.
    """

    component_type = FlowComponent

    def __init__(
        self,
        components: dict[str, FlowComponent],
        coupling: Coupling | None = None,
        t_max: float = 1.0,
        cond_drop_prob: float = 0.0,
        auxiliary_loss: AuxiliaryLoss | None = None,
        self_conditioning: float = 0.0,
    ):
        super().__init__(components, cond_drop_prob)
        if not 0 < t_max <= 1:
            raise ValueError(f"t_max: expected a float in (0, 1], got {t_max!r}")
        if not 0 <= self_conditioning <= 1:
            raise ValueError(
                f"self_conditioning: expected a probability in [0, 1], got {self_conditioning!r}"
            )
        velocity_parts = [n for n, c in components.items() if c.prediction != "x1"]
        if (auxiliary_loss is not None or self_conditioning > 0) and velocity_parts:
            raise ValueError(
                "auxiliary_loss and self_conditioning act on predicted endpoints: every part "
                f"needs prediction='x1', but {velocity_parts} predict velocities"
            )
        self.coupling = coupling or IndependentCoupling()
        self.t_max = float(t_max)
        self.auxiliary_loss = auxiliary_loss
        self.self_conditioning = float(self_conditioning)

    def loss(
        self,
        network: Callable,
        batch: Mapping[str, object],
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """Draw prior points and times, build x_t on every part, and score the network."""
        state, context = split_batch(batch)
        self.check_state(state)
        x1 = {name: state[name] for name in self.components}
        n = batch_size(x1, context)
        ref = next(iter(x1.values()))
        context = self.training_context(context, n, generator, ref.device)
        x0 = self._training_prior(x1, context, n, generator)
        t = torch.rand(n, generator=generator, dtype=ref.dtype, device=ref.device) * self.t_max
        samples = {
            name: comp.path.sample(x0[name], x1[name], comp.element_time(t, x1[name], context))
            for name, comp in self.components.items()
        }
        x_t = {k: s.x_t for k, s in samples.items()}
        if self.self_conditioning > 0:
            coin = torch.rand((), generator=generator, device=ref.device)
            if coin.item() < self.self_conditioning:
                with torch.no_grad():
                    first = network(x_t, t, context)
                context["self_cond"] = {k: first[k].detach() for k in self.components}
        outputs = network(x_t, t, context)
        self.check_outputs(outputs)
        terms = {}
        for name, comp in self.components.items():
            terms[name] = comp.weight * comp.loss(outputs[name], samples[name], context, n).mean()
        if self.auxiliary_loss is not None:
            extra = self.auxiliary_loss(outputs, x1, t, context)
            terms.update({name: value.mean() for name, value in extra.items()})
        return LossOutput(total=sum(terms.values()), terms=terms)

    def _training_prior(self, x1: dict, context: dict, n: int, generator) -> dict:
        """Prior points for a training batch: the stored ``context["x0"]`` when the batch holds
        rectified-flow pairs, else fresh draws paired with the data by the coupling."""
        if "x0" in context:
            stored = context.pop("x0")
            missing = sorted(set(self.components) - set(stored))
            if missing:
                raise ValueError(f"batch['x0']: missing stored prior part(s) {missing}")
            for name, comp in self.components.items():
                if stored[name].shape != x1[name].shape:
                    raise ValueError(
                        f"batch['x0'][{name!r}]: expected the data's shape "
                        f"{tuple(x1[name].shape)}, got {tuple(stored[name].shape)}"
                    )
                comp.check_data(stored[name], name=f"batch['x0'][{name!r}]")
            return {name: stored[name] for name in self.components}
        ref = next(iter(x1.values()))
        x0 = self.prior(n, context, generator, ref.dtype, ref.device)
        if all(c.layout == "dense" for c in self.components.values()):
            return self.coupling(x0, x1, self.manifolds, generator=generator)
        if not isinstance(self.coupling, IndependentCoupling):
            raise ValueError("coupling: minibatch OT is defined here for dense parts only")
        return x0

    def velocity_field(
        self, network: Callable, context: Mapping[str, object], guidance_scale: float = 0.0
    ):
        """The learned field ``(t: 0-dim, x: dict) -> dict`` of tangent velocities for solvers.

        With self-conditioning the field is stateful: each call feeds the previous call's
        endpoint predictions back to the network, so build a fresh field for every solve.
        """

        context = dict(context)
        feed_back = self.self_conditioning > 0

        def field_fn(t: torch.Tensor, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            n = batch_size(x, context)
            t_batch = t.expand(n) if t.ndim == 0 else t
            out = self.network_output(network, x, t_batch, context, guidance_scale)
            if feed_back:  # the next evaluation sees these predictions
                context["self_cond"] = {k: out[k] for k in self.components}
            return {
                name: comp.velocity(
                    out[name],
                    x[name],
                    comp.element_time(t_batch, x[name], context),
                    context,
                    n,
                    sampling=True,
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
        guidance_scale: float = 0.0,
        x0: Mapping[str, torch.Tensor] | None = None,
    ) -> ODESolution:
        """Integrate the learned field from the prior at t=0 to t=1 (or along ``time_grid``).

        ``guidance_scale`` w > 0 applies classifier-free guidance when ``context`` has a
        ``cond`` (the network must have been trained with ``cond_drop_prob`` > 0). ``x0``
        starts from given prior points instead of fresh draws (shapes as the prior's); the
        solution's ``trajectory[0]`` or this argument is the noise half of a rectified-flow pair.
        """
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples: expected a positive int, got {num_samples!r}")
        if time_grid is None:
            if not isinstance(num_steps, int) or num_steps < 1:
                raise ValueError(f"num_steps: expected a positive int, got {num_steps!r}")
            time_grid = torch.linspace(0.0, 1.0, num_steps + 1, dtype=dtype, device=device)
        context = dict(context or {})
        context.setdefault("num_samples", num_samples)
        if x0 is None:
            x0 = self.prior(num_samples, context, generator, dtype, device)
        else:
            self.check_state(x0)
        return solve_ode(
            self.velocity_field(network, context, guidance_scale),
            x0,
            self.manifolds,
            time_grid,
            method=solver,
            return_trajectory=return_trajectory,
            progress=progress,
        )

    def __repr__(self) -> str:
        coupling = type(self.coupling).__name__
        return f"{super().__repr__()[:-1]}, coupling={coupling}, t_max={self.t_max})"
