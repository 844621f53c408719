"""Per-crystal conditioning on scalar properties, with a learned null for classifier-free guidance.

A property-conditioned model reads ``context["cond"]["property"]`` (B, P): P standardised scalar
properties per crystal (``(value − mean) / std`` of the training split, see
``CrystalDataModule(condition_property=...)``). Each crystal gets an embedding (B, hidden) that
the network adds to the features of its atoms. Where the condition is hidden, the embedding is a
learned null vector instead:

* ``context["cond_mask"]`` (B,) bool is False (the engine's conditioning dropout in training, the
  unconditional half of a guided sampling step);
* ``context["cond"]`` has no ``"property"`` (unconditional sampling).

Sampling with guidance scale w then mixes ``(1 + w)·out(property) − w·out(null)``.
"""

from __future__ import annotations

import torch
from torch import nn


def read_properties(context: dict, num_crystals: int, num_properties: int) -> torch.Tensor | None:
    """``context["cond"]["property"]`` as (B, P) float, or None when absent; checks its shape."""
    cond = context.get("cond")
    values = cond.get("property") if isinstance(cond, dict) else None
    if values is None:
        return None
    if values.shape != (num_crystals, num_properties) or not values.is_floating_point():
        raise ValueError(
            f"context['cond']['property']: expected standardised float properties of shape "
            f"({num_crystals}, {num_properties}), got {tuple(values.shape)} {values.dtype}"
        )
    return values


class PropertyEmbedding(nn.Module):
    """Embedding (B, hidden) of P standardised properties per crystal, or of a learned null.

    Args:
        num_properties: P, the number of scalar properties.
        hidden: width of the embedding (the network's node width).
    """

    def __init__(self, num_properties: int, hidden: int):
        super().__init__()
        if (
            isinstance(num_properties, bool)
            or not isinstance(num_properties, int)
            or num_properties < 1
        ):
            raise ValueError(f"num_properties: expected an int >= 1, got {num_properties!r}")
        self.num_properties = num_properties
        self.mlp = nn.Sequential(
            nn.Linear(num_properties, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        # zero: the null condition starts as "no property term", the unconditional network
        self.null = nn.Parameter(torch.zeros(hidden))

    def forward(self, context: dict, num_crystals: int) -> torch.Tensor:
        """(B, hidden): the property embedding where ``cond_mask`` keeps the condition, else the
        null vector (everywhere when ``context["cond"]`` has no ``"property"``)."""
        values = read_properties(context, num_crystals, self.num_properties)
        null = self.null.expand(num_crystals, -1)
        if values is None:
            return null
        embedded = self.mlp(values.to(self.null.dtype))
        mask = context.get("cond_mask")
        if mask is None:
            return embedded
        if mask.shape != (num_crystals,) or mask.dtype != torch.bool:
            raise ValueError(
                f"context['cond_mask']: expected a bool mask of shape ({num_crystals},), got "
                f"{tuple(mask.shape)} {mask.dtype}"
            )
        return torch.where(mask.unsqueeze(-1), embedded, null)
