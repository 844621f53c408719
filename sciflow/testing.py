"""Assertions for tests, here and in downstream packages: points on a manifold, tangent vectors,
and path velocities checked against finite differences.

Every function raises ``AssertionError`` with a message that says what failed and by how much.
Points and tangent vectors may be tensors or, for ``Product`` manifolds, dicts of tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from sciflow.manifolds.base import Manifold

State = torch.Tensor | Mapping[str, torch.Tensor]


def _parts(a: State, b: State) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Pair up the tensors of two states: ``{"": (a, b)}`` or ``{key: (a[key], b[key])}``."""
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise AssertionError(f"expected both or neither to be dicts, got {type(a)} and {type(b)}")
    if not isinstance(a, Mapping):
        return {"": (a, b)}
    if a.keys() != b.keys():
        raise AssertionError(f"key mismatch: {sorted(a)} vs {sorted(b)}")
    return {key: (a[key], b[key]) for key in a}


def _compare(actual: State, expected: State, rtol: float, atol: float, what: str) -> None:
    """Assert ``|actual − expected| <= atol + rtol·|expected|`` elementwise, part by part."""
    for key, (a, e) in _parts(actual, expected).items():
        label = f"{what}[{key!r}]" if key else what
        if a.shape != e.shape:
            raise AssertionError(f"{label}: shape {tuple(a.shape)} != expected {tuple(e.shape)}")
        err = (a - e).abs()
        tol = atol + rtol * e.abs()
        bad = ~(err <= tol)
        if bad.any():
            worst = (err - tol).nan_to_num(float("inf")).argmax()
            index = tuple(int(i) for i in torch.unravel_index(worst, err.shape))
            raise AssertionError(
                f"{label}: {int(bad.sum())} of {err.numel()} entries differ beyond "
                f"atol={atol:g}, rtol={rtol:g}; max abs error {err.max().item():.3g}; worst at "
                f"{index}: got {a[index].item():.8g}, expected {e[index].item():.8g}"
            )


def assert_on_manifold(manifold: Manifold, x: State, atol: float = 1e-5) -> None:
    """Assert that ``x`` is a batch of points of ``manifold`` (its ``check_point`` passes)."""
    try:
        manifold.check_point(x, name="x", atol=atol)
    except (ValueError, TypeError) as error:
        raise AssertionError(f"not on {manifold!r}: {error}") from error


def assert_tangent(manifold: Manifold, x: State, v: State, atol: float = 1e-5) -> None:
    """Assert that ``v`` has the tangent shape at ``x`` and equals ``proju(x, v)`` within atol."""
    try:
        manifold.check_tangent(x, v, name="v")
    except (ValueError, TypeError) as error:
        raise AssertionError(f"not a tangent vector of {manifold!r}: {error}") from error
    _compare(v, manifold.proju(x, v), rtol=0.0, atol=atol, what=f"v vs proju(x, v) on {manifold!r}")


def assert_path_velocity(
    manifold: Manifold,
    path_fn: Callable[[float | torch.Tensor], State],
    velocity: State,
    t: float | torch.Tensor,
    h: float = 1e-4,
    rtol: float = 1e-4,
    atol: float = 1e-6,
) -> None:
    """Assert that ``velocity`` is the derivative at ``t`` of the path ``t ↦ path_fn(t)``.

    The reference is the central finite difference in the tangent space at ``x_t``:
    ``(logmap(x_t, x_{t+h}) − logmap(x_t, x_{t−h})) / (2h)``, with an O(h²) error; use float64
    paths. ``velocity`` is in the manifold's tangent representation at ``x_t`` (body frame for
    ``UnitQuaternion``).
    """
    x_t = path_fn(t)
    forward = manifold.logmap(x_t, path_fn(t + h))
    backward = manifold.logmap(x_t, path_fn(t - h))
    finite_difference = {
        key: (f - b) / (2 * h) for key, (f, b) in _parts(forward, backward).items()
    }
    reference = finite_difference if isinstance(forward, Mapping) else finite_difference[""]
    _compare(
        velocity, reference, rtol, atol, what=f"path velocity at t={float(t):g} on {manifold!r}"
    )
