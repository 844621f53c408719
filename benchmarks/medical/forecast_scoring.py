"""Per-case metrics of a set of forecasts and their summaries over runs × sampling seeds.

Every metric is computed per case, averaged over the cases where it is defined (the change
region may be empty; HD95 is undefined when exactly one mask is empty), and then pooled over
training runs × sampling seeds as mean ± standard deviation. Strata (gap bins, minor/major
growth, patients) average the cases inside each stratum the same way.
"""

from __future__ import annotations

import numpy as np
from forecast_cases import ForecastCases
from sciflow_domains.medical.metrics import gap_bin_labels, gap_bins, mae, mse, psnr, ssim
from sciflow_domains.medical.metrics_lesion import (
    LesionRule,
    area_error,
    dice,
    hd95,
    predicted_change_mask,
    predicted_lesion_mask,
)

#: Metric → whether higher is better.
METRICS = {
    "psnr": True,
    "ssim": True,
    "mae": False,
    "mse": False,
    "change_mae": False,
    "change_psnr": True,
    "dice": True,
    "dice_present": True,
    "hd95": False,
    "area_error": False,
}
#: Metrics shown per gap bin, growth class and patient.
STRATIFIED = ("change_mae", "mae", "psnr", "dice")


def predicted_masks(pred, cases: ForecastCases, meaning: str, rule: LesionRule):
    """(N, R, R) predicted masks, the masks they are scored against, and where both are known."""
    if meaning == "lesion":
        masks = predicted_lesion_mask(pred, cases.inputs, cases.mask_in, rule)
        return masks, cases.mask_target, cases.has_mask_in & cases.has_mask_target
    masks = predicted_change_mask(pred, cases.inputs, rule)
    return masks, cases.change, cases.has_change


def score(pred, cases: ForecastCases, meaning: str, rule: LesionRule) -> dict[str, np.ndarray]:
    """Per-case metrics (N,) of forecasts ``pred`` (N, C, R, R) against the cases' targets;
    NaN where a metric is undefined for a case. ``dice_present`` is Dice on the cases whose
    true mask is not empty (with change masks about half the slices show no change, where an
    empty forecast mask scores Dice 1)."""
    region = cases.change & cases.has_change[:, None, None]
    out = {
        "psnr": psnr(pred, cases.targets),
        "ssim": ssim(pred, cases.targets),
        "mae": mae(pred, cases.targets),
        "mse": mse(pred, cases.targets),
        "change_mae": mae(pred, cases.targets, region),
        "change_psnr": psnr(pred, cases.targets, region=region),
    }
    masks, truth, known = predicted_masks(pred, cases, meaning, rule)
    for name, metric in (("dice", dice), ("hd95", hd95), ("area_error", area_error)):
        out[name] = np.where(known, metric(masks, truth), np.nan)
    present = known & truth.reshape(len(truth), -1).any(axis=1)
    out["dice_present"] = np.where(present, out["dice"], np.nan)
    return out


def pooled(values: list[float]) -> dict[str, float]:
    """Mean and standard deviation (ddof 1; 0 for one value) of the non-NaN ``values``."""
    array = np.asarray(values, dtype=np.float64)
    array = array[~np.isnan(array)]
    if not len(array):
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "n": int(len(array))}


def _case_mean(values: np.ndarray, chosen: np.ndarray) -> float:
    picked = values[chosen]
    picked = picked[~np.isnan(picked)]
    return float(picked.mean()) if len(picked) else float("nan")


def summarise(runs: list[dict[str, np.ndarray]], cases: ForecastCases, edges) -> dict:
    """Pool per-case metrics of several runs (each ``score``'s output on the same cases).

    Returns ``overall`` (metric → mean/std/n over runs), ``by_gap`` and ``by_growth`` and
    ``by_patient`` (metric → stratum → mean/std over runs and the case count), and ``defined``
    (metric → cases where it is defined).
    """
    everything = np.ones(len(cases), dtype=bool)
    strata = {
        "by_gap": {
            label: gap_bins(cases.dt.numpy(), edges) == k
            for k, label in enumerate(gap_bin_labels(edges))
        },
        "by_growth": {g: cases.growth == g for g in ("minor", "major") if g in cases.growth},
        "by_patient": {p: cases.patient == p for p in dict.fromkeys(cases.patient.tolist())},
    }
    out = {
        "overall": {m: pooled([_case_mean(r[m], everything) for r in runs]) for m in METRICS},
        "defined": {m: int((~np.isnan(runs[0][m])).sum()) for m in METRICS},
    }
    for key, groups in strata.items():
        out[key] = {
            m: {
                label: {
                    **pooled([_case_mean(r[m], chosen) for r in runs]),
                    "cases": int((chosen & ~np.isnan(runs[0][m])).sum()),
                }
                for label, chosen in groups.items()
            }
            for m in STRATIFIED
        }
    return out
