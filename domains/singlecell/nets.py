"""Networks of Meta Flow Matching: the population encoder and the population-conditioned field.

Meta Flow Matching (Atanackovic et al., ICLR 2025) learns one vector field for every population
pair by conditioning it on an embedding φ(p0) of the *whole* source population: a graph
convolutional network over the k-nearest-neighbour graph of the source cells, mean-pooled and
scaled to unit norm. The same field network, without the embedding, gives the two baselines of
the paper:

- ``"fm"``: v(x_t, t | c), the condition (treatment) only: one field averaged over populations;
- ``"cgfm"``: v(x_t, t | c, onehot(population)), a learned per-population code that cannot
  describe a population never seen in training (such populations get the mean of the training
  codes, i.e. the uniform average of the one-hot vectors, as the paper's code does);
- ``"mfm"``: v(x_t, t | c, φ(p0)), trained jointly with the encoder.

Inputs follow the batch layout of :mod:`.data` (M cells of B population pairs, flat with
``index``). The field's input per cell is the concatenation of the cell's coordinates, random
Fourier features of them, a sinusoidal embedding of t, the treatment one-hot and (cgfm/mfm) the
population code or embedding.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from sciflow.engine import GenerativeEngine
from sciflow.manifolds import Euclidean
from sciflow.nn.embeddings import FourierTimeEmbedding

Mode = Literal["fm", "cgfm", "mfm"]
MODES = ("fm", "cgfm", "mfm")
STATE_KEY = "x"


def knn_edges(cells: torch.Tensor, index: torch.Tensor, num_groups: int, k: int) -> torch.Tensor:
    """Directed edges from each cell's k nearest neighbours (Euclidean) within its group.

    cells: (N, d); index: (N,) long group of each cell in [0, num_groups). Returns edge_index
    (2, E) long with rows (source = neighbour, target = cell), so messages flow into each cell
    from its neighbours. Groups with n ≤ k cells connect every cell to all n − 1 others; k = 0
    gives no edges.
    """
    if k < 0:
        raise ValueError(f"k: expected an int >= 0, got {k!r}")
    edges = []
    for group in range(num_groups):
        rows = torch.nonzero(index == group, as_tuple=True)[0]
        n = rows.numel()
        kk = min(k, n - 1)
        if kk <= 0:
            continue
        points = cells[rows]
        dist = torch.cdist(points, points)
        dist.fill_diagonal_(math.inf)
        neighbours = dist.topk(kk, dim=1, largest=False).indices  # (n, kk)
        targets = torch.arange(n, device=cells.device).repeat_interleave(kk)
        edges.append(torch.stack([rows[neighbours.reshape(-1)], rows[targets]]))
    if not edges:
        return torch.zeros(2, 0, dtype=torch.long, device=cells.device)
    return torch.cat(edges, dim=1)


class PopulationEncoder(nn.Module):
    """φ(p0): GCN layers over the kNN graph of a population's cells, mean-pooled, unit norm.

    Args:
        dim: features per cell d. hidden: width of every GCN layer (the embedding size).
        num_layers: GCN layers (ReLU between them, none after the last).
        knn: neighbours per cell in the graph (0: self-loops only, a DeepSets encoder).

    ``forward(cells (N, d), index (N,), num_groups) -> (num_groups, hidden)``; invariant to the
    order of the cells within each group.
    """

    def __init__(self, dim: int, hidden: int = 64, num_layers: int = 3, knn: int = 50):
        super().__init__()
        from torch_geometric.nn import GCNConv

        if num_layers < 1:
            raise ValueError(f"num_layers: expected an int >= 1, got {num_layers!r}")
        sizes = [dim] + [hidden] * num_layers
        self.convs = nn.ModuleList(
            GCNConv(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.knn, self.hidden = knn, hidden

    def forward(self, cells: torch.Tensor, index: torch.Tensor, num_groups: int) -> torch.Tensor:
        edges = knn_edges(cells.detach(), index, num_groups, self.knn)
        h = cells
        for i, conv in enumerate(self.convs):
            h = conv(h, edges)
            if i < len(self.convs) - 1:
                h = F.relu(h)
        counts = torch.bincount(index, minlength=num_groups).clamp(min=1).to(h.dtype)
        pooled = torch.zeros(num_groups, h.shape[1], dtype=h.dtype, device=h.device)
        pooled = pooled.index_add(0, index, h) / counts.unsqueeze(1)
        return F.normalize(pooled, dim=1)


class PopulationFlowNet(nn.Module):
    """v(x_t, t | condition, population) for the FM, CGFM and MFM variants (module docstring).

    Args:
        engine: a flow-matching engine with one indexed Euclidean part ``"x"`` of dimension d.
        mode: ``"fm"``, ``"cgfm"`` or ``"mfm"``.
        num_conditions: number of treatments (the data's ``conditions``).
        num_train_populations: size of the CGFM one-hot (the data's training populations).
        hidden, depth: width and hidden layers of the field's MLP (SELU activations).
        time_dim: sinusoidal time features. fourier_features, fourier_scale: random Fourier
            features cos/sin(2π x B), B ~ N(0, fourier_scale²) of shape (d, fourier_features),
            fixed at construction and saved with the weights (0 features: none).
        embed_dim, gnn_layers, knn: the population encoder (mfm).

    ``forward(x_t, t, context)``: ``x_t["x"]`` (M, d), ``t`` (B,), ``context`` with ``index``
    (M,), ``num_samples`` B and ``cond`` holding ``condition`` (B,) long and, by mode,
    ``population`` (B,) long (cgfm) or ``source`` (M0, d) with ``source_index`` (M0,) (mfm; or a
    precomputed ``embedding`` (B, embed_dim), see :meth:`embed`). Returns ``{"x": (M, d)}``.
    """

    def __init__(
        self,
        engine: GenerativeEngine,
        mode: Mode = "mfm",
        num_conditions: int = 1,
        num_train_populations: int = 0,
        hidden: int = 512,
        depth: int = 4,
        time_dim: int = 128,
        fourier_features: int = 128,
        fourier_scale: float = 1.0,
        embed_dim: int = 64,
        gnn_layers: int = 3,
        knn: int = 50,
    ):
        super().__init__()
        comp = engine.components.get(STATE_KEY)
        if set(engine.components) != {STATE_KEY} or comp.layout != "indexed":
            raise ValueError(
                "PopulationFlowNet: the engine needs exactly one indexed part named 'x', got "
                f"{ {n: c.layout for n, c in engine.components.items()} }"
            )
        if not isinstance(comp.manifold, Euclidean):
            raise ValueError(f"PopulationFlowNet: part 'x' must be Euclidean, got {comp.manifold}")
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if not isinstance(num_conditions, int) or num_conditions < 1:
            raise ValueError(f"num_conditions: expected a positive int, got {num_conditions!r}")
        if mode == "cgfm" and (
            not isinstance(num_train_populations, int) or num_train_populations < 1
        ):
            raise ValueError(
                "num_train_populations: cgfm needs the number of training populations (a "
                f"positive int), got {num_train_populations!r}"
            )
        self.mode, self.dim = mode, comp.manifold.dim
        self.num_conditions, self.num_train_populations = num_conditions, num_train_populations
        self.time_embedding = FourierTimeEmbedding(time_dim, max_freq=1000.0)
        self.register_buffer(
            "fourier_matrix", torch.randn(self.dim, fourier_features) * fourier_scale
        )
        in_dim = self.dim + 2 * fourier_features + time_dim + num_conditions
        self.encoder = None
        if mode == "mfm":
            self.encoder = PopulationEncoder(self.dim, embed_dim, gnn_layers, knn)
            in_dim += embed_dim
        elif mode == "cgfm":
            in_dim += num_train_populations
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.SELU()]
        layers.append(nn.Linear(hidden, self.dim))
        self.field = nn.Sequential(*layers)

    def embed(self, source: torch.Tensor, source_index: torch.Tensor, num_populations: int):
        """φ of each population: (num_populations, embed_dim) from its source cells (M0, d)."""
        if self.encoder is None:
            raise ValueError(f"embed: a {self.mode!r} model has no population encoder")
        return self.encoder(source, source_index, num_populations)

    def population_code(self, population: torch.Tensor) -> torch.Tensor:
        """CGFM's one-hot (B, num_train_populations); unseen ids get the uniform average."""
        seen = population < self.num_train_populations
        code = torch.full(
            (population.shape[0], self.num_train_populations),
            1.0 / self.num_train_populations,
            device=population.device,
        )
        clamped = population.clamp(max=self.num_train_populations - 1)
        onehot = F.one_hot(clamped, self.num_train_populations).float()
        return torch.where(seen.unsqueeze(1), onehot, code)

    def forward(self, x_t: dict, t: torch.Tensor, context: dict) -> dict:
        x = x_t[STATE_KEY]
        index = context["index"]
        num = int(context.get("num_samples", t.shape[0]))
        cond = context.get("cond") or {}
        if "condition" not in cond:
            raise ValueError("PopulationFlowNet: context['cond']['condition'] (B,) is missing")
        condition = cond["condition"]
        if condition.numel() and int(condition.max()) >= self.num_conditions:
            raise ValueError(
                f"cond['condition']: ids must be < num_conditions={self.num_conditions}, got "
                f"{int(condition.max())}"
            )
        per_pair = [F.one_hot(condition, self.num_conditions).to(x.dtype)]
        if self.mode == "mfm":
            embedding = cond.get("embedding")
            if embedding is None:
                embedding = self.embed(cond["source"], cond["source_index"], num)
            per_pair.append(embedding.to(x.dtype))
        elif self.mode == "cgfm":
            per_pair.append(self.population_code(cond["population"]).to(x.dtype))
        angles = 2 * math.pi * x @ self.fourier_matrix.to(x.dtype)
        features = [
            x,
            torch.cos(angles),
            torch.sin(angles),
            self.time_embedding(t).to(x.dtype)[index],
            torch.cat(per_pair, dim=1)[index],
        ]
        return {STATE_KEY: self.field(torch.cat(features, dim=1))}

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, dim={self.dim}"
