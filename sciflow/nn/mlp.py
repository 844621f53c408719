"""Multilayer perceptrons, including a generic network over dense product states."""

from __future__ import annotations

import torch
from torch import nn

from sciflow.engine import Engine
from sciflow.nn.embeddings import FourierTimeEmbedding


def mlp(in_dim: int, hidden: int, out_dim: int, depth: int, activation=nn.SiLU) -> nn.Sequential:
    """``depth`` hidden layers of width ``hidden`` with ``activation``, then a linear output."""
    if depth < 1:
        raise ValueError(f"depth: expected an int >= 1, got {depth!r}")
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden), activation()]
    for _ in range(depth - 1):
        layers += [nn.Linear(hidden, hidden), activation()]
    layers.append(nn.Linear(hidden, out_dim))
    return nn.Sequential(*layers)


class StateMLP(nn.Module):
    """An MLP velocity/endpoint network for engines whose parts are all dense.

    Each part's noisy state is turned into features by its component (for flow matching, the
    manifold's Euclidean embedding: rotation matrices for quaternions, cos/sin for the torus),
    concatenated with Fourier features of t, and the output is split into one tensor per part of
    shape (B, *event_shape, component.output_dim): a velocity, an endpoint or a distribution's
    parameters, as the component expects.

    Args:
        engine: the engine whose components define the inputs and outputs.
        hidden, depth: MLP width and number of hidden layers.
        time_dim: number of Fourier time features.
    """

    def __init__(self, engine: Engine, hidden: int = 256, depth: int = 3, time_dim: int = 32):
        super().__init__()
        self.specs = {}
        in_dim = time_dim
        out_dim = 0
        for name, comp in engine.components.items():
            if comp.layout != "dense":
                raise ValueError(f"StateMLP: part {name!r} is {comp.layout}; only dense parts fit")
            probe = comp.prior(1, {}, dtype=torch.float64)
            in_dim += comp.features(probe).numel()
            shape = (*comp.event_shape, comp.output_dim)
            self.specs[name] = (comp, shape)
            out_dim += int(torch.Size(shape).numel())
        self.time_embedding = FourierTimeEmbedding(time_dim)
        self.net = mlp(in_dim, hidden, out_dim, depth)

    def forward(self, x_t: dict, t: torch.Tensor, context: dict | None = None) -> dict:
        features = [self.time_embedding(t)]
        for name, (comp, _) in self.specs.items():
            features.append(comp.features(x_t[name]).reshape(t.shape[0], -1))
        out = self.net(torch.cat(features, dim=-1).to(self.net[0].weight.dtype))
        result, start = {}, 0
        for name, (_, shape) in self.specs.items():
            size = int(torch.Size(shape).numel())
            result[name] = out[:, start : start + size].reshape(-1, *shape)
            start += size
        return result
