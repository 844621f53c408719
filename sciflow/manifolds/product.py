"""Products of manifolds over dicts of named tensors (a state with several parts)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from sciflow.manifolds.base import Manifold

Tensors = dict[str, torch.Tensor]


class Product(Manifold):
    """The product of named manifolds; points and tangent vectors are dicts ``{name: tensor}``.

    Every method applies the part's method part by part (dict in, dict out). ``dist`` is
    ``sqrt(Σ_parts dist_part²)``, which needs the parts to share their leading (batch) shape.
    ``dim`` is the sum of the parts' dims; ``point_dim`` and ``tangent_dim`` are dicts of the
    parts' values (a product point has no single last dimension).
    """

    def __init__(self, parts: Mapping[str, Manifold]):
        if not isinstance(parts, Mapping) or not parts:
            raise TypeError(f"parts: expected a non-empty dict of Manifolds, got {parts!r}")
        for key, part in parts.items():
            if not isinstance(key, str) or not isinstance(part, Manifold):
                raise TypeError(
                    f"parts: expected str keys and Manifold values, got {key!r}: "
                    f"{type(part).__name__}"
                )
        self.parts = dict(parts)
        self.dim = sum(part.dim for part in self.parts.values())
        self.point_dim = {key: part.point_dim for key, part in self.parts.items()}
        self.tangent_dim = {key: part.tangent_dim for key, part in self.parts.items()}
        self.constant_geodesic_velocity = all(
            part.constant_geodesic_velocity for part in self.parts.values()
        )

    def _check_keys(self, x: object, name: str) -> None:
        if not isinstance(x, Mapping):
            raise TypeError(
                f"{name}: expected a dict with keys {sorted(self.parts)}, got {type(x).__name__}"
            )
        if x.keys() != self.parts.keys():
            missing = sorted(set(self.parts) - set(x))
            extra = sorted(set(x) - set(self.parts))
            raise ValueError(
                f"{name}: expected keys {sorted(self.parts)}; missing {missing}, extra {extra}"
            )

    def _map(self, method: str, *args: Tensors, names: str) -> Tensors:
        """Call ``part.<method>(*parts of args)`` for every part; ``names`` names the args."""
        for arg, name in zip(args, names.split(","), strict=True):
            self._check_keys(arg, name)
        return {
            key: getattr(part, method)(*(a[key] for a in args)) for key, part in self.parts.items()
        }

    def expmap(self, x: Tensors, v: Tensors) -> Tensors:
        return self._map("expmap", x, v, names="x,v")

    def logmap(self, x: Tensors, y: Tensors) -> Tensors:
        return self._map("logmap", x, y, names="x,y")

    def projx(self, x: Tensors) -> Tensors:
        return self._map("projx", x, names="x")

    def proju(self, x: Tensors, v: Tensors) -> Tensors:
        return self._map("proju", x, v, names="x,v")

    def embed(self, x: Tensors) -> Tensors:
        return self._map("embed", x, names="x")

    def dexpinv(self, x: Tensors, u: Tensors, w: Tensors) -> Tensors:
        return self._map("dexpinv", x, u, w, names="x,u,w")

    def dist(self, x: Tensors, y: Tensors) -> torch.Tensor:
        """``sqrt(Σ_parts dist_part(x, y)²)`` with shape the parts' common leading shape."""
        dists = self._map("dist", x, y, names="x,y")
        shapes = {key: tuple(d.shape) for key, d in dists.items()}
        if len(set(shapes.values())) > 1:
            raise ValueError(
                f"Product.dist: the parts must share their leading (batch) shape, got {shapes}"
            )
        total = sum(d * d for d in dists.values())
        positive = total > 0
        return torch.where(positive, torch.sqrt(torch.where(positive, total, 1.0)), 0.0)

    def random(self, *shape, generator=None, dtype=None, device=None) -> Tensors:
        """A dict of (*shape, point_dim[name]) tensors, drawn part by part in key order."""
        return {
            key: part.random(*shape, generator=generator, dtype=dtype, device=device)
            for key, part in self.parts.items()
        }

    def check_point(self, x: Tensors, name: str = "x", atol: float = 1e-4) -> None:
        self._check_keys(x, name)
        for key, part in self.parts.items():
            part.check_point(x[key], name=f"{name}[{key!r}]", atol=atol)

    def check_tangent(self, x: Tensors, v: Tensors, name: str = "v") -> None:
        self._check_keys(x, "x")
        self._check_keys(v, name)
        for key, part in self.parts.items():
            part.check_tangent(x[key], v[key], name=f"{name}[{key!r}]")

    def __repr__(self) -> str:
        inner = ", ".join(f"{key!r}: {part!r}" for key, part in self.parts.items())
        return f"Product({{{inner}}})"
