"""Does the model follow its conditions? Land cover, vegetation vs climate, climate what-ifs.

* :func:`landcover_accuracy`: the land-cover classifier trained on real tiles
  (:mod:`.classifier`) applied to generated tiles, scored against the requested land cover,
  beside three references: the same predictions scored against a seeded permutation of the
  requested labels (what the prediction mix scores by luck), real held-out tiles (what a perfect
  generator could reach with this classifier), and chance 1/K.
* :func:`index_correlations`: over held-out conditions, Pearson r between the vegetation index
  of the generated and of the real tile, and r(index, precipitation), r(index, temperature)
  for real and generated tiles side by side.
* :func:`response_directions`: within each land cover of the real (training) tiles, r of
  brightness and of the index with each climate field: the directions the real data show.
* :func:`what_if_summary` / :func:`direction_check`: one climate field swept with everything
  else (noise included) fixed; the change of index and brightness from the lowest to the
  highest value, per land cover, and whether it points the way the real data do.

Climate values are raw: (N, 3) temperature (degC), precipitation (mm/day), radiation
(MJ/m2/day), in the order of :data:`~.climate.FIELDS`.
"""

from __future__ import annotations

import numpy as np
from sciflow_domains.satellite.climate import FIELDS
from sciflow_domains.satellite.metrics_indices import brightness, pearson, vegetation_index

QUANTITIES = ("index", "brightness")


def _climate(climate, n: int) -> np.ndarray:
    climate = np.asarray(climate, dtype=np.float64)
    if climate.shape != (n, len(FIELDS)):
        raise ValueError(f"climate: expected ({n}, 3) raw T, P, R values, got {climate.shape}")
    return climate


def _ids(landcover, n: int, name: str = "landcover") -> np.ndarray:
    ids = np.asarray(landcover)
    if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"{name}: expected ({n},) integer land-cover ids, got {ids.shape} {ids.dtype}"
        )
    return ids.astype(np.int64)


def landcover_accuracy(
    classifier, generated, requested, real=None, real_labels=None, seed: int = 0
) -> dict:
    """Accuracy of ``classifier`` on generated tiles (B, 3, H, W) against the ``requested``
    land-cover ids (B,), with the references of the module docstring (``real_heldout`` only when
    ``real`` and ``real_labels`` are given)."""
    predicted = classifier.predict(generated)
    requested = _ids(requested, len(predicted), "requested")
    shuffled = np.random.default_rng(seed).permutation(requested)
    out = {
        "generated": float((predicted == requested).mean()),
        "shuffled_labels": float((predicted == shuffled).mean()),
        "chance": 1.0 / len(classifier.classes),
        "num_tiles": len(predicted),
    }
    if real is not None:
        out["real_heldout"] = classifier.accuracy(real, real_labels)
    return out


def index_correlations(generated, real, climate, index: str = "gli") -> dict:
    """Correlations of the tile index ``index`` over paired conditions (generated[i] and real[i]
    share climate[i], (N, 3) raw): ``r_real_generated``, and per field ``r_<field>`` =
    ``{"real", "generated"}``; also the mean index of both."""
    gen, ref = vegetation_index(generated, index), vegetation_index(real, index)
    if gen.shape != ref.shape:
        raise ValueError(
            f"generated/real: expected the same number of tiles, got {len(gen)} and {len(ref)}"
        )
    climate = _climate(climate, len(gen))
    out = {
        "index": index,
        "r_real_generated": pearson(ref, gen),
        "mean": {"real": float(ref.mean()), "generated": float(gen.mean())},
    }
    for k, field in enumerate(FIELDS):
        out[f"r_{field}"] = {
            "real": pearson(ref, climate[:, k]),
            "generated": pearson(gen, climate[:, k]),
        }
    return out


def _quantity(images, quantity: str, index: str) -> np.ndarray:
    if quantity not in QUANTITIES:
        raise ValueError(f"quantity: expected one of {QUANTITIES}, got {quantity!r}")
    return vegetation_index(images, index) if quantity == "index" else brightness(images)


def response_directions(images, climate, landcover, index: str = "gli") -> dict:
    """Per land cover of real tiles (B, 3, H, W) with raw ``climate`` (B, 3) and ids (B,):
    ``{id: {"n", "index": {field: r}, "brightness": {field: r}}}`` (r NaN below 3 tiles)."""
    values = {q: _quantity(images, q, index) for q in QUANTITIES}
    ids = _ids(landcover, len(values["index"]))
    climate = _climate(climate, len(ids))
    out = {}
    for c in sorted(set(ids.tolist())):
        rows = ids == c
        out[c] = {"n": int(rows.sum())}
        for q in QUANTITIES:
            out[c][q] = {
                f: pearson(values[q][rows], climate[rows, k]) for k, f in enumerate(FIELDS)
            }
    return out


def what_if_summary(images, values, landcover, index: str = "gli") -> dict:
    """Summary of a sweep: ``images`` (V, B, 3, H, W) for the V swept ``values`` of one field
    (same noise, same other conditions), ``landcover`` (B,) ids.

    Returns ``{"values", "per_class": {id: {"n", "index": [V], "brightness": [V],
    "delta_index", "delta_brightness"}}, "overall": {"delta_index", "delta_brightness"}}``;
    curves are class means per value, deltas = (highest value) − (lowest value), averaged.
    """
    stack = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images)
    values = np.asarray(values, dtype=np.float64).ravel()
    if stack.ndim != 5 or stack.shape[0] != len(values) or len(values) < 2:
        raise ValueError(
            f"images/values: expected (V >= 2, B, 3, H, W) images for V values, got "
            f"{stack.shape} and {len(values)} values"
        )
    ids = _ids(landcover, stack.shape[1])
    order = np.argsort(values)
    curves = {
        q: np.stack([_quantity(stack[v], q, index) for v in order]) for q in QUANTITIES
    }  # (V, B) each, by increasing value
    delta = {q: curves[q][-1] - curves[q][0] for q in QUANTITIES}
    per_class = {}
    for c in sorted(set(ids.tolist())):
        rows = ids == c
        per_class[c] = {"n": int(rows.sum())}
        for q in QUANTITIES:
            per_class[c][q] = curves[q][:, rows].mean(axis=1).tolist()
            per_class[c][f"delta_{q}"] = float(delta[q][rows].mean())
    return {
        "index": index,
        "values": values[order].tolist(),
        "per_class": per_class,
        "overall": {f"delta_{q}": float(delta[q].mean()) for q in QUANTITIES},
    }


def direction_check(
    directions: dict,
    summary: dict,
    field: str,
    quantity: str,
    sign: int,
    min_abs_r: float = 0.3,
    min_delta: float = 0.0,
) -> dict:
    """Does the what-if move ``quantity`` with ``field`` the way the real data do?

    The classes tested are those of ``summary`` whose real within-class r(quantity, field)
    (from :func:`response_directions`) has sign ``sign`` (+1/-1) and magnitude ≥ ``min_abs_r``
    (e.g. snowy classes: brightness falls as temperature rises, r ≤ -0.3). ``passed`` is whether
    their mean generated delta has that sign and a magnitude above ``min_delta`` (so that an
    untrained model's small random responses do not pass; None when no class qualifies);
    ``agree`` is the fraction of those classes whose own delta has the sign.
    """
    if min_delta < 0:
        raise ValueError(f"min_delta: expected >= 0, got {min_delta!r}")
    if field not in FIELDS or quantity not in QUANTITIES or sign not in (1, -1):
        raise ValueError(
            f"field/quantity/sign: expected one of {FIELDS}, {QUANTITIES}, ±1; got "
            f"{field!r}, {quantity!r}, {sign!r}"
        )
    real_r = {
        c: d[quantity][field]
        for c, d in directions.items()
        if c in summary["per_class"]
        and np.isfinite(d[quantity][field])
        and sign * d[quantity][field] >= min_abs_r
    }
    deltas = {c: summary["per_class"][c][f"delta_{quantity}"] for c in real_r}
    mean_delta = float(np.mean(list(deltas.values()))) if deltas else float("nan")
    return {
        "field": field,
        "quantity": quantity,
        "expected_sign": sign,
        "classes": sorted(real_r),
        "real_r": real_r,
        "generated_delta": deltas,
        "mean_generated_delta": mean_delta,
        "agree": float(np.mean([sign * d > 0 for d in deltas.values()])) if deltas else None,
        "min_delta": min_delta,
        "passed": bool(sign * mean_delta > min_delta) if deltas else None,
    }
