"""A plain-torch training loop for small problems (learning tests, benchmarks), no Lightning."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sciflow.engine import Engine


def train_steps(
    engine: Engine,
    network: nn.Module,
    draw_batch: Callable[[torch.Generator], dict[str, torch.Tensor]],
    num_steps: int,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Train ``network`` for ``num_steps`` AdamW steps on fresh batches from ``draw_batch``.

    ``draw_batch(generator)`` returns one training batch; the same ``seed`` gives the same run.
    Returns the loss after every step.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps: expected a positive int, got {num_steps!r}")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=num_steps)
    losses = []
    network.train()
    for _ in range(num_steps):
        loss = engine.loss(network, draw_batch(generator), generator=generator).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    network.eval()
    return losses
