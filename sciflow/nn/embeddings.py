"""Time embeddings shared by the networks."""

from __future__ import annotations

import math

import torch
from torch import nn


class FourierTimeEmbedding(nn.Module):
    """Sinusoidal features of t ∈ [0, 1]: (B,) → (B, dim), frequencies in [1, max_freq]."""

    def __init__(self, dim: int = 32, max_freq: float = 100.0):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"dim: expected an even int >= 2, got {dim!r}")
        freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), dim // 2))
        self.register_buffer("freqs", freqs, persistent=False)
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.to(self.freqs.dtype).unsqueeze(-1) * self.freqs
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
