"""Rectified-flow pairs: (noise, sample) couplings drawn with a trained flow, filtered, stored.

Rectification (Liu et al. 2022; ReQFlow for proteins) fine-tunes a flow on the couplings its own
sampler produces: each stored pair holds the prior draw x0 a sample started from and the sample
x1 it reached. Training on such pairs straightens the paths, so fewer steps suffice.
ReQFlow found that filtering the generated pairs by quality matters; a score function ranks
them and only the best ``keep_fraction`` are stored.

File format (``.npz``): ``x0/<part>`` and ``x1/<part>`` arrays (P, ..., d); for padded parts
also ``mask`` (P, N) bool (each pair padded to the longest); ``score`` (P,) when scored; and
``meta`` a JSON string (numbers generated and kept, the score's name, the threshold).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sciflow.atomic import atomic_write

log = logging.getLogger(__name__)

#: A quality score: the sampler's result for one batch → (B,) scores, higher is better.
Score = Callable[[object], torch.Tensor]


@dataclass
class ReflowPairs:
    """Stored couplings. x0, x1: part → (P, ..., d); mask: (P, N) bool for padded parts."""

    x0: dict[str, torch.Tensor]
    x1: dict[str, torch.Tensor]
    mask: torch.Tensor | None = None
    score: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return next(iter(self.x1.values())).shape[0]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the pairs to ``path`` (``.npz``) atomically."""
        arrays = {f"x0/{k}": v.numpy() for k, v in self.x0.items()}
        arrays.update({f"x1/{k}": v.numpy() for k, v in self.x1.items()})
        if self.mask is not None:
            arrays["mask"] = self.mask.numpy()
        if self.score is not None:
            arrays["score"] = self.score.numpy()
        arrays["meta"] = np.array(json.dumps(self.meta))
        with atomic_write(path, "wb") as handle:
            np.savez(handle, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReflowPairs:
        """Read pairs written by :meth:`save`; errors name the file and what is wrong."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"reflow pairs: no file at {path} (generate them with `sciflow reflow`)"
            )
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            x0 = {k[3:]: torch.from_numpy(data[k]) for k in keys if k.startswith("x0/")}
            x1 = {k[3:]: torch.from_numpy(data[k]) for k in keys if k.startswith("x1/")}
            if not x1 or set(x0) != set(x1):
                raise ValueError(
                    f"reflow pairs {path}: expected matching x0/<part> and x1/<part> arrays, "
                    f"got keys {sorted(keys)}"
                )
            for name in x1:
                if x0[name].shape != x1[name].shape:
                    raise ValueError(
                        f"reflow pairs {path}: x0/{name} has shape {tuple(x0[name].shape)} but "
                        f"x1/{name} has {tuple(x1[name].shape)}"
                    )
            mask = torch.from_numpy(data["mask"]) if "mask" in keys else None
            score = torch.from_numpy(data["score"]) if "score" in keys else None
            meta = json.loads(str(data["meta"])) if "meta" in keys else {}
        return cls(x0=x0, x1=x1, mask=mask, score=score, meta=meta)


def pad_rows(tensors: list[torch.Tensor], length: int) -> torch.Tensor:
    """Stack (b_i, n_i, ...) tensors into (Σb_i, length, ...) along dim 1.

    Padding repeats each row's first element, so padded entries stay valid points of the
    part's manifold (a zero quaternion would not be); masks pad with False.
    """
    out = tensors[0].new_zeros(sum(t.shape[0] for t in tensors), length, *tensors[0].shape[2:])
    row = 0
    for t in tensors:
        out[row : row + t.shape[0], : t.shape[1]] = t
        if t.dtype != torch.bool:
            out[row : row + t.shape[0], t.shape[1] :] = t[:, :1]
        row += t.shape[0]
    return out


def _concatenate(results: list, padded: bool) -> tuple[dict, dict, torch.Tensor | None]:
    """Join per-batch noise, samples and masks into (P, ...) tensors."""
    parts = list(results[0].samples)
    if not padded:
        x0 = {k: torch.cat([r.noise[k] for r in results]) for k in parts}
        x1 = {k: torch.cat([r.samples[k] for r in results]) for k in parts}
        return x0, x1, None
    length = max(r.context["mask"].shape[1] for r in results)
    x0 = {k: pad_rows([r.noise[k] for r in results], length) for k in parts}
    x1 = {k: pad_rows([r.samples[k] for r in results], length) for k in parts}
    mask = pad_rows([r.context["mask"] for r in results], length)
    return x0, x1, mask


def generate_pairs(
    sampler,
    requests: Iterable[Mapping],
    score: Score | None = None,
    keep_fraction: float = 1.0,
    progress: bool = True,
) -> ReflowPairs:
    """Draw samples with ``sampler`` for every request and keep the best-scored couplings.

    Args:
        sampler: a `sciflow.Sampler` of a flow-matching model (its results carry ``noise``).
        requests: keyword arguments of each ``sampler.sample`` call (see
            ``Sampler.reflow_requests``); each should fix its own ``seed``.
        score: the quality score of a batch's result, (B,), higher is better; ``None`` keeps
            every pair.
        keep_fraction: the fraction of pairs (the best-scored) to keep, in (0, 1].

    Returns:
        The kept pairs, with ``meta`` recording how many were generated and kept and the
        lowest kept score.
    """
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction: expected a float in (0, 1], got {keep_fraction!r}")
    if keep_fraction < 1 and score is None:
        raise ValueError("keep_fraction < 1 needs a score function to rank the pairs")
    results, scores = [], []
    for request in tqdm(list(requests), desc="reflow pairs", disable=not progress):
        result = sampler.sample(**request)
        if result.noise is None:
            raise ValueError("reflow pairs need a flow-matching sampler (its results keep noise)")
        results.append(result)
        if score is not None:
            scores.append(torch.as_tensor(score(result), dtype=torch.float64).reshape(-1))
    if not results:
        raise ValueError("requests: expected at least one sample request")
    if "index" in results[0].context:
        raise ValueError(
            "reflow pairs: indexed parts (rows mapped to samples by context['index']) are not "
            "stored yet; dense and padded parts are"
        )
    x0, x1, mask = _concatenate(results, padded="mask" in results[0].context)
    generated = next(iter(x1.values())).shape[0]
    meta = {"generated": generated, "score": getattr(score, "__name__", repr(score))}
    all_scores = torch.cat(scores) if scores else None
    keep = torch.arange(generated)
    if all_scores is not None:
        num_keep = max(1, round(keep_fraction * generated))
        keep = torch.argsort(all_scores, descending=True, stable=True)[:num_keep]
        keep = keep.sort().values
        meta["min_kept_score"] = float(all_scores[keep].min())
        meta["mean_score_generated"] = float(all_scores.mean())
        meta["mean_score_kept"] = float(all_scores[keep].mean())
    meta["kept"] = len(keep)
    log.info("reflow pairs: kept %d of %d generated", len(keep), generated)
    return ReflowPairs(
        x0={k: v[keep] for k, v in x0.items()},
        x1={k: v[keep] for k, v in x1.items()},
        mask=None if mask is None else mask[keep],
        score=None if all_scores is None else all_scores[keep].float(),
        meta=meta,
    )
