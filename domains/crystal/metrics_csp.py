"""Crystal structure prediction (CSP) metrics of the CDVAE/DiffCSP protocol: match rate and RMSE.

A prediction matches its target when pymatgen's ``StructureMatcher(stol=0.5, angle_tol=10,
ltol=0.3)`` (other settings default: primitive-cell reduction, volume scaling, no supercell search)
finds a mapping; its RMSE is ``get_rms_dist(pred, target)[0]``, the root-mean-square site
displacement divided by ``(V / N) ** (1/3)`` (V, N of the averaged lattice). Match rate =
matched targets / all targets; RMSE = mean over matched targets only. A prediction that is not
valid (:mod:`.metrics_validity`: structure and SMACT composition) counts as a non-match, as in the
reference; so does a matcher exception (counted in ``n_errors``). Best-of-k: a target with k
candidates is matched when any valid candidate matches, with the smallest RMSE among them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from pymatgen.core import Structure
from sciflow_domains.crystal.metrics_validity import validity
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

CSP_TOLERANCES = {"stol": 0.5, "angle_tol": 10.0, "ltol": 0.3}


def make_matcher(**overrides):
    """``StructureMatcher`` at the protocol tolerances (``overrides`` for other settings)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(**{**CSP_TOLERANCES, **overrides})


def rms_distance(predicted: Structure, target: Structure, matcher=None) -> float | None:
    """Normalised RMS displacement of ``predicted`` onto ``target``; None when they do not match."""
    matcher = make_matcher() if matcher is None else matcher
    result = matcher.get_rms_dist(predicted, target)
    return None if result is None else float(result[0])


def _candidates(pred, i: int) -> list[Structure]:
    cands = [pred] if isinstance(pred, Structure) else list(pred)
    if not cands:
        raise ValueError(f"predicted[{i}]: empty list of candidates")
    for j, c in enumerate(cands):
        if not isinstance(c, Structure):
            raise TypeError(f"predicted[{i}][{j}] must be a pymatgen Structure, got {type(c)}")
    return cands


def _match_one(args) -> tuple[float | None, int, int]:
    """(best rms or None, invalid candidates, matcher errors) of one target."""
    cands, target, require_valid, oxidation_set = args
    matcher = make_matcher()
    best, n_invalid, n_errors = None, 0, 0
    for cand in cands:
        if require_valid and not validity(cand, oxidation_set=oxidation_set)["valid"]:
            n_invalid += 1
            continue
        try:
            rms = rms_distance(cand, target, matcher)
        except Exception as err:  # the reference counts matcher failures as non-matches
            log.debug("StructureMatcher failed on %s: %s", target.composition.reduced_formula, err)
            n_errors += 1
            continue
        if rms is not None and (best is None or rms < best):
            best = rms
    return best, n_invalid, n_errors


def match_rate_and_rmse(
    predicted: Sequence[Structure | Sequence[Structure]],
    ground_truth: Sequence[Structure],
    *,
    require_valid: bool = True,
    oxidation_set: str = "smact14",
    n_jobs: int = 1,
    progress: bool | None = None,
) -> dict[str, float | int | None]:
    """Match rate and mean RMSE of predictions against their targets (one per target).

    ``predicted[i]`` is one ``Structure`` (one sample per composition) or a list of k candidate
    structures (best-of-k) for ``ground_truth[i]``. ``require_valid=False`` skips the validity
    gate. ``n_jobs > 1`` matches in that many processes. Returns ``match_rate``, ``rmse`` (None when
    nothing matched), ``n_targets``, ``n_matched``, ``n_candidates``, ``n_invalid`` (invalid
    candidates) and ``n_errors`` (matcher exceptions).
    """
    if len(predicted) == 0 or len(ground_truth) == 0:
        raise ValueError(
            f"match_rate_and_rmse: empty input ({len(predicted)} predicted, "
            f"{len(ground_truth)} ground-truth structures)"
        )
    if len(predicted) != len(ground_truth):
        raise ValueError(
            f"match_rate_and_rmse: {len(predicted)} predictions for {len(ground_truth)} "
            "ground-truth structures; give one prediction (or one list of candidates) per target"
        )
    for i, gt in enumerate(ground_truth):
        if not isinstance(gt, Structure):
            raise TypeError(f"ground_truth[{i}] must be a pymatgen Structure, got {type(gt)}")
    jobs = [
        (_candidates(p, i), gt, require_valid, oxidation_set)
        for i, (p, gt) in enumerate(zip(predicted, ground_truth, strict=True))
    ]
    bar = dict(
        total=len(jobs), desc="StructureMatcher", disable=None if progress is None else not progress
    )
    if n_jobs > 1:
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            chunk = max(1, len(jobs) // (8 * n_jobs))
            results = list(tqdm(pool.map(_match_one, jobs, chunksize=chunk), **bar))
    else:
        results = [_match_one(j) for j in tqdm(jobs, **bar)]
    rms = [r[0] for r in results if r[0] is not None]
    return {
        "match_rate": len(rms) / len(jobs),
        "rmse": float(sum(rms) / len(rms)) if rms else None,
        "n_targets": len(jobs),
        "n_matched": len(rms),
        "n_candidates": sum(len(j[0]) for j in jobs),
        "n_invalid": sum(r[1] for r in results),
        "n_errors": sum(r[2] for r in results),
    }


def evaluate_csp(
    predicted: Sequence[Structure | Sequence[Structure]],
    ground_truth: Sequence[Structure],
    **kwargs,
) -> dict[str, float | int | None]:
    """The CSP table: :func:`match_rate_and_rmse` plus ``k`` (candidates per target, max).

    Keyword arguments go to :func:`match_rate_and_rmse`.
    """
    out = match_rate_and_rmse(predicted, ground_truth, **kwargs)
    out["k"] = max(1 if isinstance(p, Structure) else len(p) for p in predicted)
    return out
