"""CSPNet: a periodic-E(3)-invariant graph network over crystals (DiffCSP's CSPNet as CrysBFN
uses it), for the Bayesian-flow engine and the flow-matching engine alike.

A crystal is atoms with fractional coordinates f ∈ [0, 1)³ (indexed layout: ``index`` (M,) maps
each atom to its crystal) and a lattice L (3×3, rows = lattice vectors). The network sees them
only through quantities that do not change under a permutation of the atoms of a crystal, a
translation of all its fractional coordinates (mod 1) or a rotation/reflection of its lattice
vectors (L → L Rᵀ, i.e. every row v → R v):

* nodes: an embedding of the atom type (CSP: ``nn.Embedding`` of the atomic number; ab initio: a
  linear map of the type flow's features 2θ − 1) ‖ sinusoidal features of t ‖ (entropy
  conditioning) the normalised log-concentration of the coordinate flow, 3 numbers per atom
  → Linear → ``hidden``;
* edges: every ordered pair (i, j) of atoms of one crystal, self-pairs included, with Fourier
  features sin/cos(2πk·Δf), k = 1..``num_freqs``, of the wrapped difference Δf = f_j − f_i
  (mod 1, in [−½, ½)) and the 6 distinct entries of the Gram matrix L Lᵀ of the current lattice;
* ``num_layers`` layers: h ← h + node_mlp([LN h_i ‖ mean_j edge_mlp([LN h_i ‖ LN h_j ‖ e_ij])]),
  then a final LayerNorm;
* heads: per atom a displacement d (M, 3) (Linear without bias); per crystal a 3×3 matrix A from
  the mean of its nodes, and the lattice output A·L (rows stay lattice-vector-like, so the output
  rotates with the input: A·(L Rᵀ) = (A·L) Rᵀ); per atom type logits (M, K) when the engine
  generates types.

The invariant d is an *update*: the von Mises flow reads it as a displacement in radians from the
circular mean (x̂ = m + d/2π mod 1, CrysBFN's parametrisation), a velocity-predicting flow-matching
part as the velocity on the torus, and an x1-predicting one gets x_t + d (mod 1). So under a
translation f → f + s of a crystal, d and every other output are unchanged and the predicted
positions (x̂, or the x1 output) move by s.

What the network reads, per engine kind (``_bfn_inputs`` / ``_flow_inputs``):

* Bayesian flows (``BayesianFlowEngine``): ``x["frac"]`` von Mises θ = [m, c] (M, 6), m the
  circular means in [0, period) and c the concentrations; ``x["lattice"]`` the Gaussian mean μ_L
  (B, 9); ``x["types"]`` (ab initio only) class probabilities (M, K), class k = atomic
  number k + 1 (``data.atomic_number_to_class``).
* flow matching (``Engine``): ``x["frac"]`` points x_t (M, 3) of ``FlatTorus(3)``;
  ``x["lattice"]`` points (B, 9) of ``Euclidean(9)``. No concentration: no entropy conditioning.
* CSP (no ``types`` part): the atomic numbers from ``context["cond"]["types"]`` (M,) int64,
  1..``max_atomic_number``, aligned with the rows of ``frac``. They are the task's input, not a
  dropped-out condition: ``context["cond_mask"]`` does not hide them.
* ``context["index"]`` (M,) int64 (any order); the number of crystals B is the lattice's first
  dimension.
* property conditioning (``num_properties`` P > 0): ``context["cond"]["property"]`` (B, P)
  standardised properties, embedded per crystal and added to its atoms' features after the input
  layer; a learned null embedding replaces them where ``context["cond_mask"]`` is False or when
  they are absent (classifier-free guidance, :mod:`.nets_property`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from sciflow_domains.crystal.nets_property import PropertyEmbedding
from torch import nn

from sciflow.bfn.discrete import DiscreteBFN
from sciflow.bfn.gaussian import GaussianBFN
from sciflow.bfn.vonmises import VonMisesBFN
from sciflow.engine import FlowComponent, GenerativeEngine
from sciflow.manifolds import Euclidean, FlatTorus
from sciflow.nn import FourierTimeEmbedding

PARTS = ("frac", "lattice", "types")
# rows and columns of the 6 distinct entries of a symmetric 3×3 matrix
_TRIU = ([0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2])


@dataclass
class CrystalInputs:
    """The engine-independent view of a noisy crystal batch.

    frac (M, 3) fractional positions in [0, 1); lattice (B, 3, 3) rows = lattice vectors;
    log_conc (M, 3) normalised log-concentrations or None; type_features (M, K) features of the
    type flow (ab initio) or None; atomic_numbers (M,) int64 (CSP) or None.
    """

    frac: torch.Tensor
    lattice: torch.Tensor
    log_conc: torch.Tensor | None = None
    type_features: torch.Tensor | None = None
    atomic_numbers: torch.Tensor | None = None


# -- engine checks ---------------------------------------------------------------------------------
def _numbers_per_sample(comp) -> int:
    return int(math.prod(comp.event_shape)) * int(comp.output_dim)


def _check_engine(engine: GenerativeEngine) -> tuple[str, object, DiscreteBFN | None]:
    """Validate the crystal parts of ``engine``; returns (kind, frac part, types part or None)
    with kind ``"bfn"`` or ``"flow"``. Raises ``ValueError`` naming the offending part."""
    parts = getattr(engine, "components", None)
    if not isinstance(parts, dict):
        raise ValueError(f"engine: expected a sciflow engine with named components, got {engine!r}")
    extra = sorted(set(parts) - set(PARTS))
    if extra:
        raise ValueError(f"engine: CSPNet knows parts {PARTS}, got unknown part(s) {extra}")
    frac, lattice, types = parts.get("frac"), parts.get("lattice"), parts.get("types")
    if isinstance(frac, VonMisesBFN):
        kind = "bfn"
        dim = frac.dim
    elif isinstance(frac, FlowComponent) and isinstance(frac.manifold, FlatTorus):
        kind = "flow"
        dim = frac.manifold.dim
    else:
        raise ValueError(
            "engine: CSPNet needs a part 'frac' that is a VonMisesBFN or a FlowComponent on "
            f"FlatTorus(3), got {frac!r}"
        )
    if dim != 3 or frac.layout != "indexed":
        raise ValueError(
            f"engine: part 'frac' must be a 3-torus in the indexed layout, got dim={dim} and "
            f"layout={frac.layout!r}"
        )
    if kind == "bfn":
        fits = isinstance(lattice, GaussianBFN)
    else:
        fits = isinstance(lattice, FlowComponent) and isinstance(lattice.manifold, Euclidean)
    want = "GaussianBFN" if kind == "bfn" else "FlowComponent on Euclidean"
    if not fits or lattice.layout != "dense" or _numbers_per_sample(lattice) != 9:
        raise ValueError(
            f"engine: CSPNet needs a dense part 'lattice' ({want}) of 9 numbers per crystal "
            f"(dim 9, or dim 3 with event_shape (3,)), got {lattice!r}"
        )
    if types is not None and not (isinstance(types, DiscreteBFN) and types.layout == "indexed"):
        raise ValueError(
            f"engine: part 'types' must be an indexed DiscreteBFN (ab initio), got {types!r}; "
            "for CSP leave it out and give the atomic numbers in context['cond']['types']"
        )
    return kind, frac, types


# -- engine inputs → CrystalInputs -----------------------------------------------------------------
def _atomic_numbers(context: dict, num_atoms: int, max_z: int) -> torch.Tensor:
    """The CSP atom types: ``context["cond"]["types"]`` (M,) int64 in 1..max_z."""
    cond = context.get("cond")
    types = cond.get("types") if isinstance(cond, dict) else None
    if types is None:
        raise ValueError(
            "context['cond']['types']: CSPNet without a 'types' part (CSP) reads the atomic "
            "numbers (M,) int64 there; the batch has none"
        )
    if types.shape != (num_atoms,) or types.is_floating_point():
        raise ValueError(
            f"context['cond']['types']: expected integer atomic numbers of shape ({num_atoms},), "
            f"got {tuple(types.shape)} {types.dtype}"
        )
    if num_atoms and (int(types.min()) < 0 or int(types.max()) > max_z):
        raise ValueError(
            f"context['cond']['types']: expected atomic numbers in 1..{max_z} "
            f"(max_atomic_number), got values in {int(types.min())}..{int(types.max())}"
        )
    return types.long()


def _bfn_inputs(x: dict, frac_part: VonMisesBFN, types_part, entropy: bool) -> CrystalInputs:
    """Bayesian flows: θ_frac = [m, c] → positions m/period and (entropy conditioning) the
    part's normalised log c; μ_L → lattice; θ_types → the type flow's features."""
    params = x["frac"]
    return CrystalInputs(
        frac=params[..., :3] / frac_part.period,
        lattice=x["lattice"].reshape(-1, 3, 3),
        log_conc=frac_part.entropy_features(params) if entropy else None,
        type_features=None if types_part is None else types_part.features(x["types"]),
    )


def _flow_inputs(x: dict, frac_part: FlowComponent) -> CrystalInputs:
    """Flow matching: x_t on the torus → positions x_t/period; lattice points → lattice."""
    return CrystalInputs(
        frac=x["frac"] / frac_part.manifold.period,
        lattice=x["lattice"].reshape(-1, 3, 3),
    )


# -- graph -----------------------------------------------------------------------------------------
def fully_connected_edges(index: torch.Tensor, num_crystals: int) -> tuple[torch.Tensor, ...]:
    """All ordered pairs (i, j) of atoms in the same crystal, self-pairs included.

    ``index`` (M,) int64, any order. Returns ``src`` and ``dst`` (E,) atom rows with E = Σ n_b²
    and, per atom, the number of atoms of its crystal (M,): the count of pairs (i, ·) whose
    messages are averaged into atom i.
    """
    counts = torch.bincount(index, minlength=num_crystals)
    order = torch.argsort(index, stable=True)
    start = torch.cumsum(counts, 0) - counts
    squares = counts * counts
    crystal = torch.repeat_interleave(torch.arange(num_crystals, device=index.device), squares)
    edge_start = torch.cumsum(squares, 0) - squares
    local = torch.arange(crystal.shape[0], device=index.device) - edge_start[crystal]
    n = counts[crystal]
    src = order[start[crystal] + torch.div(local, n, rounding_mode="floor")]
    dst = order[start[crystal] + local % n]
    return src, dst, counts[index]


def segment_mean(values: torch.Tensor, segment: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Mean of rows of ``values`` (N, C) per segment id (N,) → (num_segments, C); 0 if empty."""
    total = values.new_zeros(num_segments, values.shape[-1]).index_add_(0, segment, values)
    count = values.new_zeros(num_segments).index_add_(0, segment, values.new_ones(len(segment)))
    return total / count.clamp_min(1).unsqueeze(-1)


def periodic_edge_features(frac, lattice, src, dst, index, freqs) -> torch.Tensor:
    """(E, 6·F + 6) edge features: sin/cos of the wrapped Δf = f_dst − f_src (M, 3 rows) times
    each angular frequency of ``freqs`` (F,), and the 6 distinct entries of the Gram matrix
    L Lᵀ of the edge's crystal (``lattice`` (B, 3, 3), ``index`` (M,) crystal of each atom)."""
    delta = frac[dst] - frac[src]
    delta = delta - torch.round(delta)  # wrapped to [−½, ½]
    angles = (delta.unsqueeze(-1) * freqs).flatten(-2)  # (E, 3·F)
    gram = lattice @ lattice.transpose(-1, -2)
    gram = gram[:, _TRIU[0], _TRIU[1]]  # (B, 6)
    return torch.cat([torch.sin(angles), torch.cos(angles), gram[index[src]]], dim=-1)


class CSPLayer(nn.Module):
    """One message-passing layer: pre-LayerNorm, edge MLP, mean aggregation, node MLP, residual."""

    def __init__(self, hidden: int, edge_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.edge_mlp = nn.Sequential(
            nn.Linear(2 * hidden + edge_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
        )
        self.node_mlp = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU()
        )

    def forward(self, h, edge_attr, src, dst, in_degree):
        """h (M, hidden), edge_attr (E, edge_dim), src/dst (E,), in_degree (M,) → (M, hidden)."""
        hn = self.norm(h)
        messages = self.edge_mlp(torch.cat([hn[src], hn[dst], edge_attr], dim=-1))
        agg = torch.zeros_like(hn).index_add_(0, src, messages) / in_degree.unsqueeze(-1)
        return h + self.node_mlp(torch.cat([hn, agg], dim=-1))


# -- the network -----------------------------------------------------------------------------------
class CSPNet(nn.Module):
    """CSPNet over a crystal batch; returns ``{"frac", "lattice"[, "types"]}`` as the engine's
    parts expect (see the module docstring for inputs, outputs and symmetries).

    Args:
        engine: a ``BayesianFlowEngine`` with parts ``frac`` (indexed ``VonMisesBFN(3)``),
            ``lattice`` (dense ``GaussianBFN`` of 9 numbers) and optionally ``types`` (indexed
            ``DiscreteBFN``, ab initio), or an ``Engine`` with ``frac`` (indexed
            ``FlowComponent`` on ``FlatTorus(3)``) and ``lattice`` (dense ``FlowComponent`` on
            ``Euclidean``, 9 numbers). ``None``: CrysBFN's defaults, a ``VonMisesBFN(3,
            layout="indexed")`` on ``frac``, with type logits only if ``num_types`` is given.
        hidden: width of node and edge features.
        num_layers: number of message-passing layers.
        num_freqs: Fourier frequencies k = 1..num_freqs per axis (6·num_freqs edge features).
        time_dim: width of the sinusoidal time features.
        max_atomic_number: the CSP type embedding covers atomic numbers 0..max_atomic_number.
        entropy_conditioning: give the nodes the von Mises flow's normalised log-concentration.
            ``None`` follows the engine: on when the ``frac`` part is a ``VonMisesBFN`` whose own
            ``entropy_conditioning`` is on, off for flow matching (which has no concentration).
            ``True`` requires such a part (else ``ValueError``); ``False`` ignores c.
        num_types: the number of type classes K of the type logits without an engine (with an
            engine, K is the ``types`` part's ``num_classes`` and this must be None or equal).
        num_properties: P scalar properties to condition on (``context["cond"]["property"]``,
            (B, P) standardised, with a learned null for classifier-free guidance); 0: none.
    """

    def __init__(
        self,
        engine: GenerativeEngine | None = None,
        hidden: int = 128,
        num_layers: int = 4,
        num_freqs: int = 16,
        time_dim: int = 64,
        max_atomic_number: int = 100,
        entropy_conditioning: bool | None = None,
        num_types: int | None = None,
        num_properties: int = 0,
    ):
        super().__init__()
        for name, value, low in (
            ("hidden", hidden, 1),
            ("num_layers", num_layers, 1),
            ("num_freqs", num_freqs, 1),
            ("max_atomic_number", max_atomic_number, 1),
            ("num_properties", num_properties, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
        if engine is None:
            kind, frac_part = "bfn", VonMisesBFN(3, layout="indexed")
            types_part = None if num_types is None else DiscreteBFN(num_types, layout="indexed")
        else:
            kind, frac_part, types_part = _check_engine(engine)
            if num_types is not None and (
                types_part is None or num_types != types_part.num_classes
            ):
                raise ValueError(
                    f"num_types: the engine's 'types' part has "
                    f"{None if types_part is None else types_part.num_classes} classes, "
                    f"got num_types={num_types}"
                )
        available = kind == "bfn" and frac_part.entropy_conditioning
        if entropy_conditioning is None:
            entropy_conditioning = available
        elif entropy_conditioning and not available:
            why = (
                "flow matching has no concentration"
                if kind == "flow"
                else "the VonMisesBFN on 'frac' was built with entropy_conditioning=False"
            )
            raise ValueError(
                f"entropy_conditioning: True needs a von Mises log-concentration; {why}"
            )
        self.kind = kind
        self.frac_part = frac_part
        self.types_part = types_part
        self.entropy_conditioning = bool(entropy_conditioning)
        self.max_atomic_number = max_atomic_number
        self.num_types = None if types_part is None else types_part.num_classes
        self.num_properties = num_properties

        if types_part is None:
            self.type_embedding: nn.Module = nn.Embedding(max_atomic_number + 1, hidden)
        else:
            self.type_embedding = nn.Linear(types_part.num_classes, hidden)
        self.time_embedding = FourierTimeEmbedding(time_dim)
        self.node_in = nn.Linear(hidden + time_dim + 3 * self.entropy_conditioning, hidden)
        self.register_buffer(
            "freqs", 2 * math.pi * torch.arange(1, num_freqs + 1.0), persistent=False
        )
        edge_dim = 6 * num_freqs + 6
        self.layers = nn.ModuleList(CSPLayer(hidden, edge_dim) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(hidden)
        self.coord_head = nn.Linear(hidden, 3, bias=False)
        self.lattice_head = nn.Linear(hidden, 9)
        self.type_head = None if types_part is None else nn.Linear(hidden, types_part.num_classes)
        self.property_embedding = (
            PropertyEmbedding(num_properties, hidden) if num_properties else None
        )

    # -- inputs and outputs per engine kind --------------------------------------------------------
    def read_inputs(self, x: dict, context: dict) -> CrystalInputs:
        """The engine's state (and, for CSP, ``context["cond"]["types"]``) → CrystalInputs."""
        if self.kind == "bfn":
            width = x["frac"].shape[-1]
            if width != 6:
                raise ValueError(
                    f"x['frac']: expected von Mises parameters [m, c] of width 6, got {width}"
                )
            inputs = _bfn_inputs(x, self.frac_part, self.types_part, self.entropy_conditioning)
        else:
            inputs = _flow_inputs(x, self.frac_part)
        if self.types_part is None:
            inputs.atomic_numbers = _atomic_numbers(
                context, x["frac"].shape[0], self.max_atomic_number
            )
        return inputs

    def write_outputs(self, x: dict, disp, lattice_out, type_logits) -> dict:
        """Head outputs → the parts' expected outputs (same shapes as their inputs' elements)."""
        frac_out = disp
        if self.kind == "flow" and self.frac_part.prediction == "x1":
            frac_out = self.frac_part.manifold.projx(x["frac"].to(disp) + disp)
        out = {"frac": frac_out, "lattice": lattice_out.reshape(x["lattice"].shape)}
        if type_logits is not None:
            out["types"] = type_logits
        return out

    # -- forward -----------------------------------------------------------------------------------
    def edge_features(self, frac, lattice, src, dst, index) -> torch.Tensor:
        """:func:`periodic_edge_features` with this network's frequencies."""
        return periodic_edge_features(frac, lattice, src, dst, index, self.freqs)

    def forward(self, x: dict, t: torch.Tensor, context: dict) -> dict:
        dtype = self.node_in.weight.dtype
        inputs = self.read_inputs(x, context)
        frac, lattice = inputs.frac.to(dtype), inputs.lattice.to(dtype)
        index = context["index"]
        num_crystals = lattice.shape[0]
        if index.shape != frac.shape[:1]:
            raise ValueError(
                f"context['index']: expected one crystal id per atom, shape ({frac.shape[0]},), "
                f"got {tuple(index.shape)}"
            )
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= num_crystals):
            raise ValueError(
                f"context['index']: expected crystal ids in 0..{num_crystals - 1} (the lattice "
                f"holds {num_crystals} crystals), got {int(index.min())}..{int(index.max())}"
            )

        if inputs.type_features is None:
            type_h = self.type_embedding(inputs.atomic_numbers)
        else:
            type_h = self.type_embedding(inputs.type_features.to(dtype))
        node = [type_h, self.time_embedding(t.to(dtype))[index].to(dtype)]
        if self.entropy_conditioning:
            node.append(inputs.log_conc.to(dtype))
        h = self.node_in(torch.cat(node, dim=-1))
        if self.property_embedding is not None:
            h = h + self.property_embedding(context, num_crystals).to(dtype)[index]

        src, dst, in_degree = fully_connected_edges(index, num_crystals)
        edge_attr = self.edge_features(frac, lattice, src, dst, index)
        in_degree = in_degree.to(dtype)
        for layer in self.layers:
            h = layer(h, edge_attr, src, dst, in_degree)
        h = self.final_norm(h)

        disp = self.coord_head(h)
        mixing = self.lattice_head(segment_mean(h, index, num_crystals)).view(-1, 3, 3)
        lattice_out = mixing @ lattice  # A·L: rows are combinations of the lattice vectors
        type_logits = None if self.type_head is None else self.type_head(h)
        return self.write_outputs(x, disp, lattice_out, type_logits)

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind!r}, entropy_conditioning={self.entropy_conditioning}, "
            f"num_types={self.num_types}, num_properties={self.num_properties}"
        )
