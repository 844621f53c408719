"""Geodesic Euler–Maruyama for SDEs on a product of manifolds.

The SDE ``dx = f(t, x) dt + g(t, x) dW`` is stepped along ``time_grid`` as

    x <- projx(expmap(x, h * f(t, x) + g(t, x) * sqrt(|h|) * xi)),    xi = proju(x, N(0, I)),

with ``h`` the (signed) step and ``xi`` a standard normal drawn in each part's tangent
representation and projected onto the tangent space at ``x``. Because every manifold's tangent
representation carries the Euclidean metric, ``xi`` is the standard Gaussian of the tangent space
and the scheme is the usual strong-order-1/2 Euler–Maruyama on flat parts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from tqdm import tqdm

from sciflow.manifolds.base import Manifold
from sciflow.solvers.ode import (
    ODESolution,
    State,
    VelocityField,
    _check_state,
    _check_time_grid,
    _evaluate,
)

DiffusionField = Callable[[torch.Tensor, State], Mapping[str, torch.Tensor | float]]


def solve_sde(
    drift: VelocityField,
    diffusion: DiffusionField,
    x0: Mapping[str, torch.Tensor],
    manifolds: Mapping[str, Manifold],
    time_grid: torch.Tensor | Sequence[float],
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    *,
    progress: bool = False,
) -> ODESolution:
    """Integrate ``dx = drift(t, x) dt + diffusion(t, x) dW`` by geodesic Euler–Maruyama.

    Args:
        drift: ``drift(t, x) -> dict`` with ``t`` a 0-dim tensor and ``x`` a state; returns part
            ``name`` as tangent vectors of shape ``x[name].shape[:-1] + (tangent_dim,)``.
        diffusion: ``diffusion(t, x) -> dict`` with the same keys; part ``name`` is a float or a
            tensor broadcastable to the tangent shape ``x[name].shape[:-1] + (tangent_dim,)``:
            0-dim (one scale), ``(..., 1)`` (one per point) or the full shape (per element).
        x0: the initial state, part ``name`` of shape ``(..., manifolds[name].point_dim)``.
        manifolds: the space of each part; the same keys as ``x0``.
        time_grid: (T,) strictly increasing or strictly decreasing times, T >= 2; one step per
            interval.
        generator: the source of the Brownian increments; the same generator state gives the
            same path. Noise is drawn part by part in the key order of ``x0``.
        return_trajectory: also return the state at every grid time.
        progress: show a ``tqdm`` bar over steps.

    Returns:
        An :class:`~sciflow.solvers.ode.ODESolution`; ``num_function_evals`` counts drift calls.

    Raises:
        ValueError: ``x0`` and ``manifolds`` with different keys or a part of the wrong shape; a
            bad ``time_grid``; a drift of the wrong shape or a diffusion that does not broadcast.
        TypeError: ``drift`` or ``diffusion`` not callable, or parts of the wrong type.
    """
    for name, field in (("drift", drift), ("diffusion", diffusion)):
        if not callable(field):
            raise TypeError(f"{name}: expected a callable {name}(t, x), got {type(field)}")
    dtype, device = _check_state(x0, manifolds)
    times = _check_time_grid(time_grid, dtype, device)

    x: State = dict(x0)
    trajectory = [x] if return_trajectory else None
    num_steps = len(times) - 1
    for n in tqdm(range(num_steps), desc="solve_sde", disable=not progress):
        t, h = times[n], times[n + 1] - times[n]
        f = _evaluate(drift, t, x, manifolds, "drift")
        g = _diffusion(diffusion, t, x, f)
        sqrt_h = h.abs().sqrt()
        step = {}
        for name, manifold in manifolds.items():
            noise = torch.randn(
                f[name].shape, generator=generator, dtype=f[name].dtype, device=f[name].device
            )
            noise = manifold.proju(x[name], noise)
            step[name] = manifold.projx(
                manifold.expmap(x[name], h * f[name] + g[name] * sqrt_h * noise)
            )
        x = step
        if trajectory is not None:
            trajectory.append(x)
    return ODESolution(x=x, trajectory=trajectory, times=times, num_function_evals=num_steps)


def _diffusion(
    diffusion: DiffusionField,
    t: torch.Tensor,
    x: State,
    drift: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Call ``diffusion(t, x)`` and check each part broadcasts to the drift's tangent shape."""
    out = diffusion(t, x)
    if not isinstance(out, Mapping) or set(out) != set(x):
        raise ValueError(
            f"diffusion: expected a dict with the parts {sorted(x)}, got "
            f"{sorted(out) if isinstance(out, Mapping) else type(out).__name__}"
        )
    scales = {}
    for name, value in out.items():
        if not isinstance(value, (torch.Tensor, int, float)):
            raise TypeError(
                f"diffusion(t, x)[{name!r}]: expected a tensor or float, got {type(value).__name__}"
            )
        scale = torch.as_tensor(value, dtype=drift[name].dtype, device=drift[name].device)
        shape = drift[name].shape
        try:
            broadcast = torch.broadcast_shapes(scale.shape, shape)
        except RuntimeError:
            broadcast = None
        if broadcast != shape:
            raise ValueError(
                f"diffusion(t, x)[{name!r}]: expected a tensor broadcastable to the tangent shape "
                f"{tuple(shape)}, got shape {tuple(scale.shape)}"
            )
        scales[name] = scale
    return scales
