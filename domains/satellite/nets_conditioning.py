"""Condition fields with their own learned null embeddings, field dropout and guidance.

A condition is the dict ``context["cond"]`` of a batch (B samples); each *field* is optional::

    climate    (B, 3) float   normalised (T, P, R) (see ``data.ClimateNormalizer``)
    landcover  (B,)   int64   id into ``datasets.LANDCOVER_CLASSES``
    month      (B, 2) float   (sin, cos) of the calendar month
    location   (B, 3) float   unit vector of the tile centre
    lag        (B,)   int64   months between the previous frame and the target (1..max_lag)
    keep       dict field → (B,) bool, optional: False hides that field of that sample

Each field has its own encoder (an MLP, or an embedding table for the ids) and its own learned
*null embedding*, used wherever the field is absent: not in ``cond``, hidden by ``keep``, hidden
for the whole sample by the engine's ``context["cond_mask"]`` (B,) (its joint condition
dropout), or with non-finite values in that row (e.g. a month without climate, NaN). The field
embeddings are concatenated in a fixed order into one vector (B, num_fields · dim).

Classifier-free guidance (:func:`guided`) combines the conditional output with the output under
all-null fields: ``v = v_null + w · (v_cond − v_null)``; w = 1 is the plain conditional model,
w = 0 exactly the unconditional one, w > 1 extrapolates. Control inputs (the previous frame of
the time-series model, ``cond["previous"]``) are not condition fields: both terms see them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

#: Every condition field, in the order of their embeddings.
FIELDS = ("climate", "landcover", "month", "location", "lag")
#: Width of the float fields; the id fields (landcover, lag) are (B,) integers.
FIELD_WIDTH = {"climate": 3, "month": 2, "location": 3}
#: ``cond`` key of the per-field keep masks.
KEEP_KEY = "keep"


def check_fields(fields: Sequence[str], allowed: Sequence[str] = FIELDS) -> tuple[str, ...]:
    """The fields in canonical order; ValueError for unknown or repeated names."""
    fields = tuple(fields)
    unknown = sorted(set(fields) - set(allowed))
    if unknown or len(set(fields)) != len(fields):
        raise ValueError(f"fields: expected distinct names among {list(allowed)}, got {fields}")
    return tuple(f for f in FIELDS if f in fields)


def keep_mask(
    cond: Mapping | None,
    name: str,
    value: torch.Tensor | None,
    batch_size: int,
    cond_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B,) bool: which samples see field ``name`` with ``value`` (absent → all False).

    A sample keeps the field when ``value`` is given, its row is finite, ``cond["keep"][name]``
    (if any) and the joint ``cond_mask`` (if any) are True.
    """
    device = value.device if value is not None else None
    if value is None:
        return torch.zeros(batch_size, dtype=torch.bool, device=device)
    if value.shape[0] != batch_size:
        raise ValueError(
            f"cond[{name!r}]: expected {batch_size} rows (the batch), got {tuple(value.shape)}"
        )
    keep = torch.isfinite(value.reshape(batch_size, -1).float()).all(dim=1)
    masks = (cond or {}).get(KEEP_KEY, {})
    for mask in (masks.get(name), cond_mask):
        if mask is not None:
            if mask.shape != (batch_size,):
                raise ValueError(
                    f"keep mask of {name!r}: expected ({batch_size},) bool, got {tuple(mask.shape)}"
                )
            keep = keep & mask.to(device=keep.device, dtype=torch.bool)
    return keep


class ConditionEncoder(nn.Module):
    """Per-field embeddings with per-field learned nulls (module docstring).

    Args:
        fields: the condition fields this model reads (a subset of :data:`FIELDS`).
        dim: embedding width per field.
        num_landcover: size of the land-cover table. max_lag: largest lag in months.

    ``forward(cond, batch_size, cond_mask=None)`` → (B, len(fields) · dim).
    """

    def __init__(
        self, fields: Sequence[str], dim: int = 32, num_landcover: int = 17, max_lag: int = 6
    ):
        super().__init__()
        self.fields = check_fields(fields)
        if not self.fields:
            raise ValueError("fields: a condition encoder needs at least one field")
        for name, value in (("dim", dim), ("num_landcover", num_landcover), ("max_lag", max_lag)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.dim, self.num_landcover, self.max_lag = dim, num_landcover, max_lag
        self.out_dim = dim * len(self.fields)
        encoders = {}
        for name in self.fields:
            if name == "landcover":
                encoders[name] = nn.Embedding(num_landcover, dim)
            elif name == "lag":
                encoders[name] = nn.Embedding(max_lag, dim)
            else:
                width = FIELD_WIDTH[name]
                encoders[name] = nn.Sequential(
                    nn.Linear(width, dim), nn.SiLU(), nn.Linear(dim, dim)
                )
        self.encoders = nn.ModuleDict(encoders)
        self.nulls = nn.ParameterDict(
            {name: nn.Parameter(0.02 * torch.randn(dim)) for name in self.fields}
        )

    def _value(self, cond: Mapping, name: str, batch_size: int) -> torch.Tensor | None:
        """The field's tensor, shape-checked; ids range-checked."""
        value = cond.get(name)
        if value is None:
            return None
        if name in FIELD_WIDTH:
            expected = (batch_size, FIELD_WIDTH[name])
            if tuple(value.shape) != expected:
                raise ValueError(f"cond[{name!r}]: expected {expected}, got {tuple(value.shape)}")
            return value
        if tuple(value.shape) != (batch_size,) or value.is_floating_point():
            raise ValueError(
                f"cond[{name!r}]: expected ({batch_size},) integer ids, got "
                f"{tuple(value.shape)} {value.dtype}"
            )
        lo, hi = (0, self.num_landcover - 1) if name == "landcover" else (1, self.max_lag)
        if value.numel() and (int(value.min()) < lo or int(value.max()) > hi):
            raise ValueError(
                f"cond[{name!r}]: values must lie in [{lo}, {hi}], got "
                f"[{int(value.min())}, {int(value.max())}]"
            )
        return value

    def forward(
        self, cond: Mapping | None, batch_size: int, cond_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        cond = cond or {}
        null_ref = next(iter(self.nulls.values()))
        parts = []
        for name in self.fields:
            null = self.nulls[name].expand(batch_size, -1)
            value = self._value(cond, name, batch_size)
            keep = keep_mask(cond, name, value, batch_size, cond_mask)
            if not keep.any():
                parts.append(null)
                continue
            keep = keep.to(null_ref.device)
            if name in FIELD_WIDTH:  # rows that are hidden may hold NaN: zero them first
                value = value.to(null_ref).masked_fill(~keep[:, None], 0.0)
                embedded = self.encoders[name](value)
            else:
                index = value.to(null_ref.device) - (1 if name == "lag" else 0)
                embedded = self.encoders[name](torch.where(keep, index, 0))
            parts.append(torch.where(keep[:, None], embedded, null))
        return torch.cat(parts, dim=1)


def drop_fields(
    cond: Mapping, fields: Sequence[str], prob: float, generator: torch.Generator | None = None
) -> dict:
    """A copy of ``cond`` whose ``keep`` masks hide each of ``fields`` independently with
    probability ``prob`` per sample (combined with masks already there)."""
    if not 0 <= prob < 1:
        raise ValueError(f"field_drop_prob: expected a float in [0, 1), got {prob!r}")
    out = dict(cond)
    present = [cond[f] for f in fields if cond.get(f) is not None]
    if prob == 0 or not present:
        return out
    batch, device = present[0].shape[0], present[0].device
    masks = dict(cond.get(KEEP_KEY, {}))
    for name in fields:
        keep = torch.rand(batch, generator=generator, device=device) >= prob
        masks[name] = keep & masks[name] if name in masks else keep
    out[KEEP_KEY] = masks
    return out


Network = Callable[[dict, torch.Tensor, dict], dict]


def guided(network: Network, scale: float) -> Network:
    """The network under classifier-free guidance with scale ``w``:
    ``out = out_null + w · (out_cond − out_null)`` per output (module docstring).

    ``out_null`` is the output with every condition field null (``cond_mask`` all False);
    w = 1 calls the network once as is, w = 0 only with the null fields.
    """
    scale = float(scale)
    if scale == 1.0:
        return network

    def field(x: dict, t: torch.Tensor, context: dict) -> dict:
        hidden = torch.zeros(t.shape[0], dtype=torch.bool, device=t.device)
        null = network(x, t, {**context, "cond_mask": hidden})
        if scale == 0.0:
            return null
        conditional = network(x, t, context)
        return {k: null[k] + scale * (conditional[k] - null[k]) for k in conditional}

    return field
