"""Invariant Point Attention (AlphaFold 2, Algorithm 22), the attention of FrameFlow and ReQFlow.

Each residue i carries a frame T_i = (R_i, x_i). Besides scalar queries and keys, every head
places query, key and value *points* in the residue's local frame and maps them to global
coordinates with T_i; attention logits combine the scalar product, a bias from the pair features
and the squared distances between global query and key points:

    a_ij = softmax_j( w_L (q_i·k_j/√c + b_ij − γ_h w_C/2 Σ_p |T_i q_p − T_j k_p|²) ),

with w_L = √(1/3), w_C = √(2/(9 P_q)) and γ_h = softplus(learned). The outputs are the attended
scalars, the attended value points brought back into frame i (T_i⁻¹ Σ_j a_ij T_j v_p) with
their norms, and the attended pair features. Distances between global points and points
expressed in the residue's own frame are unchanged by a global rigid motion, so the module is
SE(3)-invariant. Heavier than the pair-biased attention of `FrameTransformer`'s default blocks;
meant for GPU runs (``FrameTransformer(attention="ipa")``).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class InvariantPointAttention(nn.Module):
    """IPA over nodes h (B,N,C), pairs p (B,N,N,P), frames rot (B,N,3,3), trans (B,N,3) and key
    mask (B,N) bool → (B,N,C).

    Args:
        hidden: node width C; pair_dim: P; heads: H; head_dim: scalar query/key/value width c;
        query_points, value_points: P_q and P_v points per head (AlphaFold: 4 and 8).
    """

    def __init__(
        self,
        hidden: int,
        pair_dim: int,
        heads: int = 4,
        head_dim: int = 16,
        query_points: int = 4,
        value_points: int = 8,
    ):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.query_points, self.value_points = query_points, value_points
        self.scalars = nn.Linear(hidden, 3 * heads * head_dim)
        self.points = nn.Linear(hidden, heads * (2 * query_points + value_points) * 3)
        self.pair_bias = nn.Linear(pair_dim, heads, bias=False)
        self.point_weight = nn.Parameter(torch.full((heads,), math.log(math.e - 1)))  # γ = 1
        out_dim = heads * (head_dim + 4 * value_points + pair_dim)
        self.out = nn.Linear(out_dim, hidden)

    def forward(self, h, p, rot, trans, mask) -> torch.Tensor:
        b, n, _ = h.shape
        hh, c = self.heads, self.head_dim
        q, k, v = self.scalars(h).view(b, n, 3, hh, c).unbind(2)
        pts = self.points(h).view(b, n, hh, 2 * self.query_points + self.value_points, 3)
        glob = torch.einsum("bnij,bnhpj->bnhpi", rot, pts) + trans[:, :, None, None, :]
        q_pts, k_pts, v_pts = glob.split(
            [self.query_points, self.query_points, self.value_points], dim=3
        )
        scalar = torch.einsum("bihc,bjhc->bhij", q, k) / math.sqrt(c)
        sq_dist = (q_pts.unsqueeze(2) - k_pts.unsqueeze(1)).pow(2).sum((-1, -2))  # (B,N,N,H)
        gamma = nn.functional.softplus(self.point_weight) * math.sqrt(2 / (9 * self.query_points))
        logits = scalar + self.pair_bias(p).permute(0, 3, 1, 2)
        logits = logits - 0.5 * gamma[:, None, None] * sq_dist.permute(0, 3, 1, 2)
        logits = math.sqrt(1 / 3) * logits
        logits = logits.masked_fill(~mask[:, None, None, :], torch.finfo(logits.dtype).min)
        attn = logits.softmax(dim=-1)  # (B,H,N,N)
        o_scalar = torch.einsum("bhij,bjhc->bihc", attn, v).reshape(b, n, hh * c)
        o_glob = torch.einsum("bhij,bjhpx->bihpx", attn, v_pts)
        o_local = torch.einsum("bnji,bnhpj->bnhpi", rot, o_glob - trans[:, :, None, None, :])
        o_norm = (o_local.pow(2).sum(-1) + 1e-8).sqrt()
        o_pair = torch.einsum("bhij,bijc->bihc", attn, p).reshape(b, n, -1)
        features = [o_scalar, o_local.reshape(b, n, -1), o_norm.reshape(b, n, -1), o_pair]
        return self.out(torch.cat(features, dim=-1))
