"""Input checks shared by the Bayesian-flow components (cheap: shapes and ranges only)."""

from __future__ import annotations

import torch

from sciflow.bfn.base import SamplingMethod
from sciflow.geometry._numerics import check_last_dim, check_tensor


def check_real(value: object, name: str) -> None:
    """Raise ``TypeError`` unless ``value`` is a real number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")


def check_time(t: object, shape: tuple[int, ...], name: str = "t") -> None:
    """Raise unless ``t`` is a float tensor of the element shape ``shape``."""
    check_tensor(t, name, "times")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(
            f"{name}: expected times of the element shape {tuple(shape)}, got {tuple(t.shape)}"
        )


def check_output(output: object, shape: tuple[int, ...], width: int) -> None:
    """Raise unless ``output`` is a float tensor of shape (*shape, width)."""
    check_last_dim(output, width, "output", "network outputs")
    if tuple(output.shape[:-1]) != tuple(shape):
        raise ValueError(
            f"output: expected shape {(*shape, width)} (element shape, output_dim), "
            f"got {tuple(output.shape)}"
        )


def check_steps(step: object, num_steps: object, shape: tuple[int, ...]) -> None:
    """Raise unless ``step`` is None in continuous time, or (shape) integers in [1, num_steps]."""
    if num_steps is None:
        if step is not None:
            raise ValueError("step: expected None in continuous time (num_steps=None)")
        return
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps: expected a positive int or None, got {num_steps!r}")
    if not isinstance(step, torch.Tensor) or step.is_floating_point() or step.dtype == torch.bool:
        raise TypeError(f"step: expected an integer tensor of step indices, got {step!r}")
    if tuple(step.shape) != tuple(shape):
        raise ValueError(
            f"step: expected the element shape {tuple(shape)}, got {tuple(step.shape)}"
        )
    if ((step < 1) | (step > num_steps)).any():
        raise ValueError(
            f"step: expected indices in [1, {num_steps}], "
            f"got values in [{int(step.min())}, {int(step.max())}]"
        )


def check_step_index(step: object, num_steps: object, method: SamplingMethod) -> None:
    """Raise unless 1 ≤ step ≤ num_steps are ints and ``method`` is a sampling method."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps: expected a positive int, got {num_steps!r}")
    if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= num_steps:
        raise ValueError(f"step: expected an int in [1, {num_steps}], got {step!r}")
    if method not in ("vanilla", "end_back"):
        raise ValueError(f"method: expected 'vanilla' or 'end_back', got {method!r}")
