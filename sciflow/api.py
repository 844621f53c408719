"""The analysis-script API: rebuild a trained model from its checkpoint and sample it."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sciflow.atomic import atomic_write
from sciflow.engine import Engine
from sciflow.registry import get_domain, list_domains, require_available
from sciflow.training.task import CHECKPOINT_KEY, TrainingTask

__all__ = ["SampleResult", "Sampler", "list_domains", "load_sampler"]


@dataclass
class SampleResult:
    """Samples drawn by a `Sampler`.

    samples: part name → (num_samples, ..., point_dim) tensor on CPU.
    trajectory: the states at every solver time when asked for, else None.
    times: (num_steps+1,) the solver's time grid; num_function_evals: network calls made.
    noise: the prior draws the samples started from (flow matching), shaped like ``samples``;
    the (noise, sample) pairs are what rectified flow trains on.
    context: the context the samples were drawn with (e.g. ``mask`` (B, N) for padded parts).
    """

    samples: dict[str, torch.Tensor]
    times: torch.Tensor
    num_function_evals: int
    trajectory: list[dict[str, torch.Tensor]] | None = None
    metadata: dict = field(default_factory=dict)
    noise: dict[str, torch.Tensor] | None = None
    context: dict[str, torch.Tensor] = field(default_factory=dict)

    def to_numpy(self) -> dict[str, np.ndarray]:
        return {name: value.numpy() for name, value in self.samples.items()}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the samples to a ``.npz`` file atomically (temporary file, then rename)."""
        with atomic_write(path, "wb") as handle:
            np.savez(handle, **self.to_numpy())
        return Path(path)

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write the samples into ``out_dir`` (``samples.npz``; domains add their formats)."""
        return [self.save(Path(out_dir) / "samples.npz")]


class Sampler:
    """Draws samples from a trained `GenerativeTask` (EMA weights unless ``use_ema=False``).

    Domains whose task has no engine (a `TrainingTask` of direct forecasters) subclass it with
    their own drawing methods; ``engine`` is then None.
    """

    def __init__(self, task: TrainingTask, use_ema: bool = True):
        self.task = task.eval()
        self.network = task.sampling_network if use_ema else task.network
        self.engine = getattr(task, "engine", None)

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def generator(self, seed: int | None) -> torch.Generator:
        """A generator on the model's device, seeded with ``seed`` (``None``: a random seed)."""
        generator = torch.Generator(device=self.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
        return generator

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
        generator = self.generator(seed)
        context = {} if condition is None else {"cond": condition}
        return self._draw(
            num_samples, context, generator, num_steps, solver, return_trajectory, progress,
            guidance_scale, seed,
        )  # fmt: skip

    def _draw(
        self,
        num_samples: int,
        context: dict,
        generator: torch.Generator,
        num_steps: int | None,
        solver: str | None,
        return_trajectory: bool,
        progress: bool,
        guidance_scale: float | None,
        seed: int | None,
    ) -> SampleResult:
        """Run the engine's sampler on ``context``; keep the noise of flow-matching draws."""
        options = {"num_steps": num_steps, "solver": solver, "guidance_scale": guidance_scale}
        noise = None
        if isinstance(self.engine, Engine):
            context = {**context, "num_samples": num_samples}
            noise = self.engine.prior(num_samples, context, generator, device=self.device)
            options["x0"] = noise
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
            noise=None if noise is None else {k: v.cpu() for k, v in noise.items()},
            context={k: v.cpu() for k, v in context.items() if isinstance(v, torch.Tensor)},
        )

    def reflow_requests(self, num_pairs: int, batch_size: int, seed: int) -> list[dict]:
        """Keyword arguments of the `sample` calls that draw ``num_pairs`` rectified-flow pairs
        in batches of at most ``batch_size`` (domains override this to vary sizes)."""
        sizes = [batch_size] * (num_pairs // batch_size)
        if num_pairs % batch_size:
            sizes.append(num_pairs % batch_size)
        return [{"num_samples": size, "seed": seed + i} for i, size in enumerate(sizes)]


def instantiate_model_config(model_config: Mapping) -> TrainingTask:
    """Build a task from its saved ``{class_path, init_args}`` config (what the CLI resolved)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(TrainingTask, "model")
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
    task.on_load_checkpoint(state)  # restores model_config and what domains keep beside it
    sampler_class = Sampler
    if plugin.sampler is not None:
        module, _, name = plugin.sampler.partition(":")
        sampler_class = getattr(importlib.import_module(module), name)
    return sampler_class(task.to(map_location), use_ema=use_ema)
