"""The analysis-script API: rebuild a trained model from its checkpoint and sample it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sciflow.atomic import atomic_write
from sciflow.registry import get_domain, list_domains, require_available
from sciflow.training.task import CHECKPOINT_KEY, GenerativeTask

__all__ = ["SampleResult", "Sampler", "list_domains", "load_sampler"]


@dataclass
class SampleResult:
    """Samples drawn by a `Sampler`.

    samples: part name → (num_samples, ..., point_dim) tensor on CPU.
    trajectory: the states at every solver time when asked for, else None.
    times: (num_steps+1,) the solver's time grid; num_function_evals: network calls made.
    """

    samples: dict[str, torch.Tensor]
    times: torch.Tensor
    num_function_evals: int
    trajectory: list[dict[str, torch.Tensor]] | None = None
    metadata: dict = field(default_factory=dict)

    def to_numpy(self) -> dict[str, np.ndarray]:
        return {name: value.numpy() for name, value in self.samples.items()}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the samples to a ``.npz`` file atomically (temporary file, then rename)."""
        with atomic_write(path, "wb") as handle:
            np.savez(handle, **self.to_numpy())
        return Path(path)


class Sampler:
    """Draws samples from a trained `GenerativeTask` (EMA weights unless ``use_ema=False``)."""

    def __init__(self, task: GenerativeTask, use_ema: bool = True):
        self.task = task.eval()
        self.network = task.sampling_network if use_ema else task.network
        self.engine = task.engine

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def sample(
        self,
        num_samples: int,
        num_steps: int | None = None,
        solver: str | None = None,
        seed: int | None = 0,
        condition: Mapping | None = None,
        return_trajectory: bool = False,
        progress: bool = False,
        guidance_scale: float | None = None,
    ) -> SampleResult:
        """Draw ``num_samples`` samples from the trained model.

        ``num_steps`` and ``solver`` default to the engine's own (50 Euler steps for flow
        matching; the training n with the "vanilla" update for Bayesian flows). ``seed`` fixes
        all randomness (same seed, same samples); ``condition`` is passed to the network as
        ``context["cond"]``.
        """
        generator = torch.Generator(device=self.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
        context = {} if condition is None else {"cond": condition}
        options = {"num_steps": num_steps, "solver": solver, "guidance_scale": guidance_scale}
        solution = self.engine.sample(
            self.network,
            num_samples,
            context=context,
            **{k: v for k, v in options.items() if v is not None},
            generator=generator,
            return_trajectory=return_trajectory,
            device=self.device,
            progress=progress,
        )
        cpu = {name: value.detach().cpu() for name, value in solution.x.items()}
        trajectory = None
        if solution.trajectory is not None:
            trajectory = [{k: v.detach().cpu() for k, v in s.items()} for s in solution.trajectory]
        return SampleResult(
            samples=cpu,
            times=solution.times.cpu(),
            num_function_evals=solution.num_function_evals,
            trajectory=trajectory,
            metadata={
                "domain": self.task.domain,
                "solver": solver,
                "num_steps": num_steps,
                "seed": seed,
            },
        )


def instantiate_model_config(model_config: Mapping) -> GenerativeTask:
    """Build a task from its saved ``{class_path, init_args}`` config (what the CLI resolved)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(GenerativeTask, "model")
    config = parser.parse_object({"model": dict(model_config)})
    return parser.instantiate_classes(config).model


def load_sampler(
    checkpoint: str | os.PathLike, map_location: str | torch.device = "cpu", use_ema: bool = True
) -> Sampler:
    """Rebuild the model saved in a ``sciflow fit`` checkpoint and return its sampler.

    The domain and the full model config are read from the checkpoint; the domain's plugin
    must be installed (otherwise an ImportError names the ``pip install "sciflow[...]"``).
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no file at {path}")
    state = torch.load(path, map_location=map_location, weights_only=False)
    meta = state.get(CHECKPOINT_KEY) if isinstance(state, dict) else None
    if not meta or not meta.get("model_config"):
        raise ValueError(
            f"checkpoint {path}: no sciflow model config inside; it was not written by "
            "`sciflow fit` (for a task built in Python, wrap it directly: sciflow.Sampler(task))"
        )
    plugin = get_domain(meta["domain"])
    require_available(plugin)
    task = instantiate_model_config(meta["model_config"])
    task.load_state_dict(state["state_dict"])
    task.model_config = meta["model_config"]
    return Sampler(task.to(map_location), use_ema=use_ema)
