"""ODE solvers for states made of named parts, each living on its own manifold.

A *state* is a ``dict[str, Tensor]`` whose part ``name`` holds points of shape
``(..., manifolds[name].point_dim)``. A *velocity field* is a callable ``velocity(t, x)`` that takes
the current time ``t`` (a 0-dim tensor in the state's dtype) and a state ``x`` and returns a dict
with the same keys holding tangent vectors of shape ``(..., manifolds[name].tangent_dim)`` at ``x``.

The fixed-step methods (``euler``, ``midpoint``, ``heun``, ``rk4``) are explicit
Runge–Kutta–Munthe-Kaas (RKMK) schemes driven by one Butcher tableau each. A step of size ``h``
from ``x`` works in the tangent space at ``x``: stage ``i`` evaluates the field at

    y_i = projx(expmap(x, u_i)),    u_i = h * sum_j a_ij * kt_j,

and pulls the stage velocity ``k_i = velocity(t + c_i h, y_i)`` back to ``x`` with
``kt_i = dexpinv(x, u_i, k_i)``. The step ends at ``projx(expmap(x, h * sum_i b_i kt_i))``. On flat
parts ``expmap`` is addition and ``dexpinv`` the identity, so this is exactly classical
Runge–Kutta; on Lie groups with an exact ``dexpinv`` series it keeps the classical order.

``dopri5`` is the adaptive Dormand–Prince method of ``torchdiffeq``; it accepts only flat parts
(Euclidean space and the flat torus, the latter integrated unwrapped in its covering space and
wrapped at the end, which is exact because the torus is flat).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from sciflow.manifolds.base import Manifold
from sciflow.manifolds.euclidean import Euclidean

State = dict[str, torch.Tensor]
VelocityField = Callable[[torch.Tensor, State], Mapping[str, torch.Tensor]]


@dataclass
class ODESolution:
    """The result of :func:`solve_ode` (and :func:`sciflow.solvers.solve_sde`).

    Attributes:
        x: the final state, part ``name`` of shape ``(..., manifolds[name].point_dim)``.
        trajectory: the state at every time of ``times``, the first entry being ``x0`` itself,
            or ``None`` when the trajectory was not requested.
        times: (T,) the time grid, in the state's dtype and on its device.
        num_function_evals: how many times the velocity field (the drift, for SDEs) was called.
    """

    x: State
    trajectory: list[State] | None
    times: torch.Tensor
    num_function_evals: int


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta tableau.

    Attributes:
        c: (s,) stage times as fractions of the step.
        a: s rows; row ``i`` holds the ``i`` coefficients ``a_ij`` for ``j < i``.
        b: (s,) weights of the stage velocities in the step.
        order: the classical order of accuracy.
    """

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int


TABLEAUS: dict[str, ButcherTableau] = {
    "euler": ButcherTableau(c=(0.0,), a=((),), b=(1.0,), order=1),
    "midpoint": ButcherTableau(c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0), order=2),
    "heun": ButcherTableau(c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5), order=2),
    "rk4": ButcherTableau(
        c=(0.0, 0.5, 0.5, 1.0),
        a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        b=(1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0),
        order=4,
    ),
}
"""The fixed-step methods of :func:`solve_ode`, by name."""

METHODS: tuple[str, ...] = (*TABLEAUS, "dopri5")
"""Every value :func:`solve_ode` accepts for ``method``."""


def solve_ode(
    velocity: VelocityField,
    x0: Mapping[str, torch.Tensor],
    manifolds: Mapping[str, Manifold],
    time_grid: torch.Tensor | Sequence[float],
    method: str = "euler",
    return_trajectory: bool = False,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    progress: bool = False,
) -> ODESolution:
    """Integrate ``dx/dt = velocity(t, x)`` on a product of manifolds along ``time_grid``.

    Gradients flow through the solver unless the caller disables them (``torch.no_grad()``).

    Args:
        velocity: ``velocity(t, x) -> dict`` with ``t`` a 0-dim tensor and ``x`` a state; returns
            part ``name`` as tangent vectors of shape ``x[name].shape[:-1] + (tangent_dim,)``.
        x0: the initial state, part ``name`` of shape ``(..., manifolds[name].point_dim)``;
            all parts floating point and on one device.
        manifolds: the space of each part; the same keys as ``x0``.
        time_grid: (T,) strictly increasing or strictly decreasing times, T >= 2. Fixed-step
            methods take one step per interval; ``dopri5`` reports the state at these times.
        method: ``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"`` (RKMK, fixed step) or
            ``"dopri5"`` (adaptive, flat parts only).
        return_trajectory: also return the state at every grid time.
        rtol: relative tolerance of ``dopri5`` (unused by the fixed-step methods).
        atol: absolute tolerance of ``dopri5`` (unused by the fixed-step methods).
        progress: show a ``tqdm`` bar over steps (over function evaluations for ``dopri5``).

    Returns:
        An :class:`ODESolution` whose ``x`` has the shapes of ``x0``.

    Raises:
        ValueError: unknown ``method``; ``x0`` and ``manifolds`` with different keys or a part of
            the wrong shape; a ``time_grid`` that is not 1-D, strictly monotone and of length
            >= 2; a velocity of the wrong keys or shape; ``dopri5`` with a non-flat part.
        TypeError: a ``velocity`` that is not callable, or parts that are not tensors/manifolds.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}; got {method!r}")
    if not callable(velocity):
        raise TypeError(f"velocity: expected a callable velocity(t, x), got {type(velocity)}")
    dtype, device = _check_state(x0, manifolds)
    times = _check_time_grid(time_grid, dtype, device)
    if method == "dopri5":
        return _solve_dopri5(
            velocity, x0, manifolds, times, rtol, atol, return_trajectory, progress
        )

    tableau = TABLEAUS[method]
    x: State = dict(x0)
    trajectory = [x] if return_trajectory else None
    num_steps = len(times) - 1
    for n in tqdm(range(num_steps), desc=f"solve_ode ({method})", disable=not progress):
        x = _rkmk_step(velocity, x, times[n], times[n + 1] - times[n], tableau, manifolds)
        if trajectory is not None:
            trajectory.append(x)
    return ODESolution(
        x=x,
        trajectory=trajectory,
        times=times,
        num_function_evals=num_steps * len(tableau.b),
    )


def _rkmk_step(
    velocity: VelocityField,
    x: State,
    t: torch.Tensor,
    h: torch.Tensor,
    tableau: ButcherTableau,
    manifolds: Mapping[str, Manifold],
) -> State:
    """One explicit Runge–Kutta–Munthe-Kaas step of size ``h`` (0-dim) from ``x`` at time ``t``."""
    pulled_back: list[State] = []  # kt_j: stage velocities as tangent vectors at x
    for c, a_row in zip(tableau.c, tableau.a, strict=True):
        if any(a_row):
            u = {name: h * _combine(a_row, pulled_back, name) for name in x}
            y = {name: m.projx(m.expmap(x[name], u[name])) for name, m in manifolds.items()}
            k = _evaluate(velocity, t + c * h, y, manifolds, "velocity")
        else:  # a first stage: y = x, u = 0
            k = _evaluate(velocity, t + c * h, x, manifolds, "velocity")
            u = {name: torch.zeros_like(v) for name, v in k.items()}
        pulled_back.append(
            {name: m.dexpinv(x[name], u[name], k[name]) for name, m in manifolds.items()}
        )
    return {
        name: m.projx(m.expmap(x[name], h * _combine(tableau.b, pulled_back, name)))
        for name, m in manifolds.items()
    }


def _combine(coefficients: Sequence[float], vectors: Sequence[State], name: str) -> torch.Tensor:
    """``sum_j coefficients[j] * vectors[j][name]`` over the nonzero coefficients."""
    total = None
    for coefficient, vector in zip(coefficients, vectors, strict=True):
        if coefficient != 0.0:
            term = coefficient * vector[name]
            total = term if total is None else total + term
    return total


def _solve_dopri5(
    velocity: VelocityField,
    x0: Mapping[str, torch.Tensor],
    manifolds: Mapping[str, Manifold],
    times: torch.Tensor,
    rtol: float,
    atol: float,
    return_trajectory: bool,
    progress: bool,
) -> ODESolution:
    """Adaptive Dormand–Prince through ``torchdiffeq.odeint`` on one flattened vector."""
    from torchdiffeq import odeint

    from sciflow.manifolds.torus import FlatTorus

    for name, manifold in manifolds.items():
        if not isinstance(manifold, (Euclidean, FlatTorus)):
            raise ValueError(
                f"manifolds[{name!r}]: method='dopri5' supports only flat parts (Euclidean, "
                f"FlatTorus), got {manifold!r}; use a fixed-step method "
                f"({', '.join(TABLEAUS)}) on curved spaces"
            )
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name}: expected a positive float, got {value!r}")

    names = list(x0)
    sizes = [x0[name].numel() for name in names]

    def unflatten(flat: torch.Tensor) -> State:
        """Split the flat (sum of sizes,) vector into wrapped parts of the shapes of ``x0``."""
        parts = torch.split(flat, sizes)
        return {
            name: manifolds[name].projx(part.reshape(x0[name].shape).to(x0[name].dtype))
            for name, part in zip(names, parts, strict=True)
        }

    num_evals = 0
    with tqdm(desc="solve_ode (dopri5)", unit="eval", disable=not progress) as bar:

        def flat_velocity(t: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
            nonlocal num_evals
            v = _evaluate(velocity, t, unflatten(flat), manifolds, "velocity")
            num_evals += 1
            bar.update()
            return torch.cat([v[name].reshape(-1).to(times.dtype) for name in names])

        flat0 = torch.cat([x0[name].reshape(-1).to(times.dtype) for name in names])
        solution = odeint(flat_velocity, flat0, times, rtol=rtol, atol=atol, method="dopri5")

    trajectory = [dict(x0)] + [unflatten(flat) for flat in solution[1:]]
    return ODESolution(
        x=trajectory[-1],
        trajectory=trajectory if return_trajectory else None,
        times=times,
        num_function_evals=num_evals,
    )


def _check_state(
    x0: Mapping[str, torch.Tensor], manifolds: Mapping[str, Manifold]
) -> tuple[torch.dtype, torch.device]:
    """Validate a state against its manifolds; return the promoted dtype and the device."""
    if not isinstance(x0, Mapping):
        raise TypeError(f"x0: expected a dict of tensors, got {type(x0).__name__}")
    if not x0:
        raise ValueError("x0: expected at least one part, got an empty dict")
    if not isinstance(manifolds, Mapping):
        raise TypeError(f"manifolds: expected a dict of Manifolds, got {type(manifolds).__name__}")
    if set(x0) != set(manifolds):
        raise ValueError(
            "x0 and manifolds: expected the same keys; only in x0: "
            f"{sorted(set(x0) - set(manifolds))}, only in manifolds: "
            f"{sorted(set(manifolds) - set(x0))}"
        )
    dtype, device = None, None
    for name, part in x0.items():
        manifold = manifolds[name]
        if not isinstance(manifold, Manifold):
            raise TypeError(
                f"manifolds[{name!r}]: expected a Manifold, got {type(manifold).__name__}"
            )
        if not isinstance(part, torch.Tensor) or not part.is_floating_point():
            raise TypeError(f"x0[{name!r}]: expected a floating-point tensor, got {part!r:.80}")
        if part.ndim == 0 or part.shape[-1] != manifold.point_dim:
            raise ValueError(
                f"x0[{name!r}]: expected points of shape (..., {manifold.point_dim}) for "
                f"{manifold!r}, got {tuple(part.shape)}"
            )
        if device is not None and part.device != device:
            raise ValueError(
                f"x0[{name!r}]: all parts must be on one device; found {part.device} and {device}"
            )
        device = part.device
        dtype = part.dtype if dtype is None else torch.promote_types(dtype, part.dtype)
    return dtype, device


def _check_time_grid(
    time_grid: torch.Tensor | Sequence[float], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Return ``time_grid`` as a (T,) tensor of ``dtype`` on ``device``, strictly monotone."""
    try:
        times = torch.as_tensor(time_grid).to(dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"time_grid: expected a 1-D tensor of times, got {time_grid!r}") from error
    if times.ndim != 1 or len(times) < 2:
        raise ValueError(
            f"time_grid: expected a 1-D tensor of at least 2 times, got shape {tuple(times.shape)}"
        )
    if not torch.isfinite(times).all():
        raise ValueError(f"time_grid: times must be finite, got {times.tolist()}")
    steps = times.diff()
    if not ((steps > 0).all() or (steps < 0).all()):
        raise ValueError(
            f"time_grid: expected strictly increasing or strictly decreasing times (in {dtype}), "
            f"got {times.tolist()}"
        )
    return times


def _evaluate(
    field: VelocityField,
    t: torch.Tensor,
    x: State,
    manifolds: Mapping[str, Manifold],
    what: str,
) -> Mapping[str, torch.Tensor]:
    """Call ``field(t, x)`` and check it returns one tangent tensor of the right shape per part."""
    out = field(t, x)
    if not isinstance(out, Mapping):
        raise TypeError(f"{what}: expected a dict of tangent tensors, got {type(out).__name__}")
    if set(out) != set(x):
        raise ValueError(
            f"{what}: expected the parts {sorted(x)}; missing {sorted(set(x) - set(out))}, "
            f"unexpected {sorted(set(out) - set(x))}"
        )
    for name, manifold in manifolds.items():
        if not isinstance(out[name], torch.Tensor):
            raise TypeError(
                f"{what}(t, x)[{name!r}]: expected a tensor, got {type(out[name]).__name__}"
            )
        manifold.check_tangent(x[name], out[name], name=f"{what}(t, x)[{name!r}]")
    return out
