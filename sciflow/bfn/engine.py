"""`BayesianFlowEngine`: Bayesian flow networks over a dict of named parts sharing one time.

One sample's parts may use different flows (von Mises on coordinates, Gaussian on a lattice,
discrete on atom types); they share the time t (or the step i) of the sample, and the network sees
all their input-distribution parameters θ at once. ``sample`` runs the Bayesian-update loop for all
parts together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from tqdm import tqdm

from sciflow.bfn.base import BayesianFlow, SamplingMethod
from sciflow.engine import GenerativeEngine, LossOutput, batch_size, split_batch
from sciflow.solvers.ode import ODESolution


class BayesianFlowEngine(GenerativeEngine):
    """Bayesian flow networks (Graves et al. 2023) over named `BayesianFlow` components.

    Args:
        components: name → BayesianFlow.
        num_steps: n for the n-step (discrete-time) loss and the default number of sampling steps;
            ``None`` trains with the continuous-time loss (every component must support it; the
            von Mises flow does not, its accuracy schedule is tied to n).
        cond_drop_prob: conditioning dropout for classifier-free guidance (see GenerativeEngine).
    """

    component_type = BayesianFlow

    def __init__(
        self,
        components: dict[str, BayesianFlow],
        num_steps: int | None = 100,
        cond_drop_prob: float = 0.0,
    ):
        super().__init__(components, cond_drop_prob)
        if num_steps is not None and (not isinstance(num_steps, int) or num_steps < 1):
            raise ValueError(f"num_steps: expected a positive int or None, got {num_steps!r}")
        if num_steps is None:
            discrete_only = [n for n, c in components.items() if not c.supports_continuous_time]
            if discrete_only:
                raise ValueError(
                    f"num_steps: None selects the continuous-time loss, which part(s) "
                    f"{discrete_only} do not support; give the number of steps n"
                )
        self.num_steps = num_steps

    def _times(self, n: int, generator, dtype, device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-sample times t (B,) and, for the n-step loss, steps i ∈ {1..n} (B,)."""
        if self.num_steps is None:
            return torch.rand(n, generator=generator, dtype=dtype, device=device), None
        step = torch.randint(1, self.num_steps + 1, (n,), generator=generator, device=device)
        return (step - 1).to(dtype) / self.num_steps, step

    def loss(
        self,
        network: Callable,
        batch: Mapping[str, object],
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """Draw θ from every part's flow at a shared time and score the network's predictions."""
        state, context = split_batch(batch)
        self.check_state(state)
        n = batch_size(state, context)
        floats = [v.dtype for v in state.values() if v.is_floating_point()]
        dtype = floats[0] if floats else torch.float32
        device = next(iter(state.values())).device
        context = self.training_context(context, n, generator, device)
        t, step = self._times(n, generator, dtype, device)
        params, times, steps = {}, {}, {}
        for name, comp in self.components.items():
            like = torch.empty(*comp.element_shape(n, context), 0, device=device)  # shape only
            times[name] = comp.element_time(t, like, context)
            steps[name] = None if step is None else comp.element_time(step, like, context)
            params[name] = comp.flow_sample(
                state[name], times[name], steps[name], self.num_steps, generator=generator
            )
        outputs = network(params, t, context)
        self.check_outputs(outputs)
        terms = {}
        for name, comp in self.components.items():
            per_element = comp.loss(
                state[name],
                outputs[name],
                params[name],
                times[name],
                steps[name],
                self.num_steps,
                generator=generator,
            )
            terms[name] = comp.weight * comp.per_sample_mean(per_element, context, n).mean()
        return LossOutput(total=sum(terms.values()), terms=terms)

    @torch.no_grad()
    def sample(
        self,
        network: Callable,
        num_samples: int,
        context: Mapping[str, object] | None = None,
        num_steps: int | None = None,
        solver: SamplingMethod = "vanilla",
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        progress: bool = False,
        guidance_scale: float = 0.0,
    ) -> ODESolution:
        """Run the Bayesian-update loop for ``num_steps`` steps (default: the training n).

        ``solver`` names the update: ``"vanilla"`` (sender sample around the prediction, then
        Bayes) or ``"end_back"`` (re-draw θ from the flow around the prediction). The returned
        ``x`` holds the final samples; ``trajectory`` (on request) the θ of every step.
        """
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples: expected a positive int, got {num_samples!r}")
        if solver not in ("vanilla", "end_back"):
            raise ValueError(
                f"solver: expected 'vanilla' or 'end_back' for a Bayesian flow, got {solver!r}"
            )
        steps = num_steps or self.num_steps
        if steps is None:
            raise ValueError("num_steps: the engine was trained in continuous time; give num_steps")
        if self.num_steps is not None and steps != self.num_steps:
            fixed = [n for n, c in self.components.items() if not c.supports_continuous_time]
            if fixed:
                raise ValueError(
                    f"num_steps: part(s) {fixed} have accuracy schedules tied to the training "
                    f"n={self.num_steps}; sample with num_steps={self.num_steps}, got {steps}"
                )
        context = dict(context or {})
        context.setdefault("num_samples", num_samples)
        params = self.prior(num_samples, context, generator, dtype, device)
        trajectory = [params] if return_trajectory else None
        for i in tqdm(range(1, steps + 1), desc=f"BFN ({solver})", disable=not progress):
            t = torch.full((num_samples,), (i - 1) / steps, dtype=dtype, device=device)
            outputs = self.network_output(network, params, t, context, guidance_scale)
            params = {
                name: comp.sample_step(params[name], outputs[name], i, steps, generator, solver)
                for name, comp in self.components.items()
            }
            if trajectory is not None:
                trajectory.append(params)
        t = torch.ones(num_samples, dtype=dtype, device=device)
        outputs = self.network_output(network, params, t, context, guidance_scale)
        final = {
            name: comp.finalize(outputs[name], params[name], generator)
            for name, comp in self.components.items()
        }
        times = torch.linspace(0.0, 1.0, steps + 1, dtype=dtype, device=device)
        calls_per_step = 2 if guidance_scale and "cond" in context else 1
        return ODESolution(
            x=final,
            trajectory=trajectory,
            times=times,
            num_function_evals=(steps + 1) * calls_per_step,
        )

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, num_steps={self.num_steps})"
