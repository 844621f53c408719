"""An SE(3)-equivariant frame network for protein backbones on CPU.

``FrameTransformer`` maps noisy residue frames ``(q_t, x_t)`` to predicted clean frames
``(q̂_1, x̂_1)``, the endpoint prediction that ``FlowComponent(prediction="x1")`` expects. It
sees the frames only through SE(3)-invariant pair features, so a global rigid motion of the
input moves the output with it:

* node features: Fourier features of t and the residue mask → MLP;
* pair features, for residues i, j: Gaussian RBFs of |x_j − x_i| / trans_scale, the direction
  R_iᵀ(x_j − x_i) / (|·| + 1) (in units of trans_scale) seen from frame i, the relative rotation
  R_iᵀR_j (9 numbers, sign-free) and a one-hot of the clipped signed offset of residue indices
  → MLP to ``pair_dim``;
* ``depth`` pre-LayerNorm transformer blocks whose attention adds a per-head bias from the pair
  features to the logits and reads the pair features back into the nodes, Σ_j a_ij p_ij (without
  that path all nodes would stay identical, since no per-residue input tells them apart);
* head: a body-frame update (ω, δ) ∈ R³ × R³ per residue, q̂_1 = q_t ⊗ exp(ω) and
  x̂_1 = x_t + trans_scale · R_t δ. Its last layer starts at zero, so the untrained network
  returns its input frames;
* self-conditioning (``self_conditioning=True``): the RBFs of the Cα distances of the previous
  prediction x̂_1 (``context["self_cond"]["trans"]``, zeros when absent) add to the pair features,
  as FrameFlow/ReQFlow feed back a distogram of x̂_1.

Rotations come as unit quaternions (B, N, 4) or, for the FrameFlow-style matrix baseline, as
row-major rotation matrices (B, N, 9); the trunk is the same, and the head composes R̂_1 =
R_t · Exp(ω) in the input's representation.

Padding residues (``mask`` False) are replaced by the identity frame before any feature is
computed, are never attended to, and get their input frames back unchanged.
"""

from __future__ import annotations

import math

import torch
from sciflow_domains.protein.ipa import InvariantPointAttention
from torch import nn

from sciflow.engine import GenerativeEngine
from sciflow.geometry import so3
from sciflow.geometry.quaternion import exp, from_matrix, multiply, rotate, to_matrix
from sciflow.manifolds import Euclidean, RotationMatrix, UnitQuaternion
from sciflow.nn import FourierTimeEmbedding, mlp

#: RBF centres span 0 … RBF_MAX in units of trans_scale (0 … 22 Å at the default 10 Å).
RBF_MAX = 2.2


def _check_engine(engine: GenerativeEngine) -> None:
    """Raise ``ValueError`` unless ``engine`` has padded parts rot (UnitQuaternion or
    RotationMatrix) and trans (R³)."""
    checks = {
        "rot": (
            "UnitQuaternion or RotationMatrix",
            lambda m: isinstance(m, UnitQuaternion | RotationMatrix),
        ),
        "trans": ("Euclidean(3)", lambda m: isinstance(m, Euclidean) and m.dim == 3),
    }
    parts = getattr(engine, "components", {})
    for name, (kind, fits) in checks.items():
        comp = parts.get(name)
        if comp is None or not fits(comp.manifold) or comp.layout != "padded":
            raise ValueError(
                f"engine: FrameTransformer needs a padded part {name!r} on {kind}, got {comp!r}"
            )


def pair_geometry(q: torch.Tensor, x: torch.Tensor, scale: float) -> tuple[torch.Tensor, ...]:
    """Invariant pair geometry of frames q (B,N,4), x (B,N,3) in Å.

    Returns distances |x_j − x_i| / scale (B,N,N), directions R_iᵀ(x_j − x_i)/(|·|+1) in units of
    ``scale`` (B,N,N,3) and relative rotations R_iᵀR_j flattened (B,N,N,9).
    """
    rot = to_matrix(q)  # (B,N,3,3), columns are the local axes
    diff = (x.unsqueeze(1) - x.unsqueeze(2)) / scale  # [b,i,j] = x_j − x_i
    dist = diff.pow(2).sum(-1).add(1e-12).sqrt()
    local = torch.einsum("bimk,bijm->bijk", rot, diff)
    direction = local / (dist.unsqueeze(-1) + 1.0)
    rel_rot = torch.einsum("bimk,bjml->bijkl", rot, rot).flatten(-2)
    return dist, direction, rel_rot


class PairEmbedding(nn.Module):
    """Invariant pair features of frames → (B, N, N, pair_dim)."""

    def __init__(self, pair_dim: int, num_rbf: int, max_rel_pos: int, trans_scale: float):
        super().__init__()
        self.register_buffer("centres", torch.linspace(0.0, RBF_MAX, num_rbf), persistent=False)
        self.width = RBF_MAX / max(num_rbf - 1, 1)
        self.max_rel_pos = max_rel_pos
        self.trans_scale = trans_scale
        in_dim = num_rbf + 3 + 9 + 2 * max_rel_pos + 1
        self.net = mlp(in_dim, pair_dim, pair_dim, depth=1)

    def forward(self, q: torch.Tensor, x: torch.Tensor, residue_index: torch.Tensor):
        """q (B,N,4), x (B,N,3) Å, residue_index (B,N) int → (B,N,N,pair_dim)."""
        dist, direction, rel_rot = pair_geometry(q, x, self.trans_scale)
        rbf = torch.exp(-(((dist.unsqueeze(-1) - self.centres.to(dist)) / self.width) ** 2))
        offset = residue_index.unsqueeze(1) - residue_index.unsqueeze(2)
        offset = offset.clamp(-self.max_rel_pos, self.max_rel_pos) + self.max_rel_pos
        rel_pos = nn.functional.one_hot(offset, 2 * self.max_rel_pos + 1).to(dist)
        return self.net(torch.cat([rbf, direction, rel_rot, rel_pos], dim=-1))


class PairBiasedAttention(nn.Module):
    """Multi-head self-attention with a pair bias on the logits and a pair readout.

    Node features h (B,N,C), pair features p (B,N,N,P) and key mask (B,N) bool → (B,N,C):
    a_ij = softmax_j(q_i·k_j/√d + w_h·p_ij) over unmasked j, out_i = W[Σ_j a_ij v_j, Σ_j a_ij p_ij].
    """

    def __init__(self, hidden: int, heads: int, pair_dim: int):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden: expected a multiple of heads={heads}, got {hidden}")
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.bias = nn.Linear(pair_dim, heads, bias=False)
        self.out = nn.Linear(hidden + heads * pair_dim, hidden)

    def forward(self, h: torch.Tensor, p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, c = h.shape
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, c // self.heads).unbind(2)
        logits = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(c // self.heads)
        logits = logits + self.bias(p).permute(0, 3, 1, 2)
        logits = logits.masked_fill(~mask[:, None, None, :], torch.finfo(logits.dtype).min)
        attn = logits.softmax(dim=-1)
        nodes = torch.einsum("bhij,bjhd->bihd", attn, v).reshape(b, n, c)
        pairs = torch.einsum("bhij,bijc->bihc", attn, p).reshape(b, n, -1)
        return self.out(torch.cat([nodes, pairs], dim=-1))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: h += attn(LN h, ...); h += MLP(LN h). Shapes as attention.

    ``attention="pair_bias"`` uses `PairBiasedAttention`; ``"ipa"`` uses Invariant Point
    Attention on the current frames (rot (B,N,3,3), trans (B,N,3) in units of trans_scale).
    """

    def __init__(self, hidden: int, heads: int, pair_dim: int, attention: str = "pair_bias"):
        super().__init__()
        self.norm_attn = nn.LayerNorm(hidden)
        self.ipa = attention == "ipa"
        if self.ipa:
            self.attn = InvariantPointAttention(hidden, pair_dim, heads, hidden // heads)
        else:
            self.attn = PairBiasedAttention(hidden, heads, pair_dim)
        self.norm_mlp = nn.LayerNorm(hidden)
        self.mlp = mlp(hidden, 4 * hidden, hidden, depth=1)

    def forward(self, h, p, mask, rot=None, trans=None) -> torch.Tensor:
        frames = (rot, trans) if self.ipa else ()
        h = h + self.attn(self.norm_attn(h), p, *frames, mask)
        return h + self.mlp(self.norm_mlp(h))


class FrameTransformer(nn.Module):
    """Predicts clean residue frames from noisy ones; SE(3)-equivariant (see module docstring).

    Called as ``network(x_t, t, context)`` with ``x_t = {"rot": (B,N,4) WXYZ, "trans": (B,N,3)
    Å}``, ``t`` (B,), ``context["mask"]`` (B,N) bool (all True if absent) and optional
    ``context["residue_index"]`` (B,N) int (default 0…N−1). Returns ``{"rot": (B,N,4) unit,
    "trans": (B,N,3)}``, the predicted frames at t = 1.

    Args:
        engine: optional; if given, checked to have padded parts "rot" (UnitQuaternion) and
            "trans" (Euclidean(3)). Lets a config build the network as ``network(engine)``.
        hidden: node feature width; depth: number of blocks; heads: attention heads.
        pair_dim: pair feature width; num_rbf: distance RBFs; max_rel_pos: clip of the residue
            offset; trans_scale: length unit (Å) of the pair features and the translation update.
        self_conditioning: read ``context["self_cond"]`` (see the module docstring); set it
            when the engine trains with ``self_conditioning`` > 0.
        attention: ``"pair_bias"`` (light, the CPU default) or ``"ipa"`` (Invariant Point
            Attention as in FrameFlow/ReQFlow, for GPU runs; see `sciflow_domains.protein.ipa`).
    """

    def __init__(
        self,
        engine: GenerativeEngine | None = None,
        hidden: int = 128,
        depth: int = 4,
        heads: int = 4,
        pair_dim: int = 32,
        num_rbf: int = 16,
        max_rel_pos: int = 32,
        trans_scale: float = 10.0,
        self_conditioning: bool = False,
        attention: str = "pair_bias",
    ):
        super().__init__()
        if engine is not None:
            _check_engine(engine)
        if attention not in ("pair_bias", "ipa"):
            raise ValueError(f"attention: expected 'pair_bias' or 'ipa', got {attention!r}")
        self.trans_scale = float(trans_scale)
        self.self_cond_embedding = nn.Linear(num_rbf, pair_dim) if self_conditioning else None
        self.time_embedding = FourierTimeEmbedding(hidden)
        self.node_embedding = mlp(hidden + 1, hidden, hidden, depth=1)
        self.pair_embedding = PairEmbedding(pair_dim, num_rbf, max_rel_pos, self.trans_scale)
        self.blocks = nn.ModuleList(Block(hidden, heads, pair_dim, attention) for _ in range(depth))
        self.head = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, 6))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def _self_cond_pairs(self, context: dict, mask: torch.Tensor, like: torch.Tensor):
        """Pair features (B,N,N,pair_dim) from the distogram of the fed-back x̂_1 (or zeros)."""
        previous = context.get("self_cond")
        if previous is None:
            return 0.0
        x_sc = torch.where(mask.unsqueeze(-1), previous["trans"], torch.zeros_like(like))
        dist = torch.cdist(x_sc, x_sc) / self.trans_scale
        centres = self.pair_embedding.centres.to(dist)
        rbf = torch.exp(-(((dist.unsqueeze(-1) - centres) / self.pair_embedding.width) ** 2))
        return self.self_cond_embedding(rbf)

    def forward(self, x_t: dict, t: torch.Tensor, context: dict | None = None) -> dict:
        rot_in, x_in = x_t["rot"], x_t["trans"]
        b, n = rot_in.shape[:2]
        matrices = rot_in.shape[-1] == 9
        q_in = from_matrix(rot_in.unflatten(-1, (3, 3))) if matrices else rot_in
        context = context or {}
        mask = context.get("mask")
        if mask is None:
            mask = torch.ones(b, n, dtype=torch.bool, device=q_in.device)
        index = context.get("residue_index")
        if index is None:
            index = torch.arange(n, device=q_in.device).expand(b, n)
        keep = mask.unsqueeze(-1)
        q = torch.where(keep, q_in, torch.tensor([1.0, 0.0, 0.0, 0.0]).to(q_in))
        x = torch.where(keep, x_in, torch.zeros_like(x_in))

        time = self.time_embedding(t).to(x).unsqueeze(1).expand(b, n, -1)
        h = self.node_embedding(torch.cat([time, mask.unsqueeze(-1).to(x)], dim=-1))
        p = self.pair_embedding(q, x, index)
        if self.self_cond_embedding is not None:
            p = p + self._self_cond_pairs(context, mask, x)
        frames = (to_matrix(q), x / self.trans_scale) if self.blocks[0].ipa else (None, None)
        for block in self.blocks:
            h = block(h, p, mask, *frames)
        omega, delta = self.head(h).split(3, dim=-1)
        x_hat = x + self.trans_scale * rotate(q, delta)
        if matrices:  # R̂ = R_t · Exp(ω), kept in the matrix representation
            rot_hat = (rot_in.unflatten(-1, (3, 3)) @ so3.exp(omega)).flatten(-2)
        else:
            rot_hat = multiply(q, exp(omega))
        return {"rot": torch.where(keep, rot_hat, rot_in), "trans": torch.where(keep, x_hat, x_in)}
