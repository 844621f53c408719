"""Calibration of every model against SynthProg's true predictive distribution.

On a seeded subset of K cases, each model draws M forecasts of the target visit and the generator
draws N futures of the same visit from its own law (``synthprog.sample_future``: the hidden
state up to the input visit kept, unobserved randomness and acquisition nuisances redrawn). The
scores (:mod:`sciflow_domains.medical.metrics_calibration`), averaged over the K cases:

- ``coverage``: per-pixel central-interval coverage of the true draws by the model's samples
  (randomised PIT), at each level; ``coverage_changing`` the same on the pixels whose lesion label
  differs from the input visit in at least one true draw;
- ``crps``: per-pixel CRPS; ``energy``: energy distance between whole images (RMS norm);
- ``area_coverage`` and ``area_crps``: the same for the lesion area in pixels, read from the model's
  samples and from the true draws by the same lesion rule (so the oracle is calibrated here too).

With M samples the randomised PIT resolves central intervals up to the level 1 − 2/(M + 1); higher
levels are refused. At such levels a deterministic model's point "interval" covers nothing.

The "true law (oracle)" row scores a second, independent set of M draws from the law itself: the
values a calibrated model would reach at these sample sizes. Deterministic models give M equal
samples, so their intervals are points (coverage near 0).
"""

from __future__ import annotations

import numpy as np
import torch
from forecast_cases import ForecastCases
from sciflow_domains.medical.metrics_calibration import (
    crps,
    energy_distance,
    interval_coverage,
    randomised_pit,
)
from sciflow_domains.medical.metrics_lesion import LesionRule, predicted_lesion_mask
from sciflow_domains.medical.synthprog import SynthProgData, sample_future

ORACLE = "true law (oracle)"


def pick_cases(cases: ForecastCases, count: int, seed: int) -> np.ndarray:
    """Sorted indices of ``count`` cases (all when fewer) drawn without replacement."""
    rng = np.random.default_rng(seed)
    count = min(count, len(cases))
    return np.sort(rng.choice(len(cases), size=count, replace=False))


def true_draws(
    cohort: SynthProgData, cases: ForecastCases, draws: int, seed: int, nuisance: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(K, N, 1, H, W) images and (K, N, H, W) bool lesion masks of the cases' true futures."""
    images, masks = [], []
    for n in range(len(cases)):
        subject, visit = int(cases.series[n]), int(cases.visit_in[n])
        times = cohort.times[subject]
        dt = float(times[cases.visit_target[n]] - times[visit])
        future = sample_future(cohort, subject, visit, dt, draws, seed=seed + n, nuisance=nuisance)
        images.append(future.images[:, None])
        masks.append(future.masks > 0)
    return np.stack(images), np.stack(masks)


def _areas(draws: np.ndarray, cases: ForecastCases, k: int, rule: LesionRule) -> np.ndarray:
    """(n,) lesion areas (pixels) the rule reads from ``draws`` (n, C, H, W) of case ``k``."""
    inputs = cases.inputs[k : k + 1].expand(len(draws), -1, -1, -1)
    known = np.repeat(cases.mask_in[k][None], len(draws), axis=0)
    masks = predicted_lesion_mask(torch.as_tensor(draws), inputs, known, rule)
    return masks.reshape(len(draws), -1).sum(axis=1).astype(np.float64)


def score_draws(
    samples: np.ndarray,
    truth: np.ndarray,
    truth_masks: np.ndarray,
    cases: ForecastCases,
    rule: LesionRule,
    levels: list[float],
    seed: int,
) -> dict:
    """Calibration scores of model ``samples`` (K, M, C, H, W) against ``truth`` (K, N, C, H, W)
    with the true lesion masks (K, N, H, W); averaged over the K cases (module docstring)."""
    rng = np.random.default_rng(seed)
    per_case: dict[str, list] = {"coverage": [], "coverage_changing": [], "area_coverage": []}
    crps_values, energy_values, area_crps = [], [], []
    for k in range(len(cases)):
        x, y = samples[k], truth[k]
        pit = randomised_pit(x, y, rng).reshape(y.shape)
        per_case["coverage"].append(interval_coverage(pit, levels))
        changing = (truth_masks[k] != cases.mask_in[k][None]).any(axis=0)
        if changing.any():
            per_case["coverage_changing"].append(interval_coverage(pit[:, :, changing], levels))
        crps_values.append(crps(x, y))
        energy_values.append(energy_distance(x, y))
        model_area = _areas(x, cases, k, rule)
        true_area = _areas(y, cases, k, rule)
        area_pit = randomised_pit(model_area[:, None], true_area[:, None], rng)
        per_case["area_coverage"].append(interval_coverage(area_pit, levels))
        area_crps.append(crps(model_area[:, None], true_area[:, None]))
    out = {
        key: {str(level): float(np.mean([c[level] for c in values])) for level in levels}
        if values
        else {}
        for key, values in per_case.items()
    }
    out.update(
        crps=float(np.mean(crps_values)),
        energy=float(np.mean(energy_values)),
        area_crps=float(np.mean(area_crps)),
        cases=len(cases),
        model_samples=int(samples.shape[1]),
        true_samples=int(truth.shape[1]),
    )
    return out


def calibrate(
    forecasters: dict,
    cohort: SynthProgData,
    cases: ForecastCases,
    rule: LesionRule,
    params: dict,
) -> dict[str, dict]:
    """Calibration scores of each forecaster and of the oracle.

    ``forecasters``: name → ``f(cases, num_samples, seed)`` returning (K, M, C, R, R) forecasts.
    ``params``: ``cases`` K, ``model_samples`` M, ``true_samples`` N, ``levels``, ``seed``,
    ``nuisance`` (redraw acquisition nuisances in the true futures; default true).
    """
    if cohort.config.resolution != cases.inputs.shape[-1]:
        raise ValueError(
            f"calibration: the cohort's resolution {cohort.config.resolution} differs from the "
            f"cases' {cases.inputs.shape[-1]}; generate the cohort at the evaluation resolution"
        )
    seed = int(params.get("seed", 0))
    chosen = cases.subset(pick_cases(cases, int(params.get("cases", 24)), seed))
    m, n = int(params.get("model_samples", 20)), int(params.get("true_samples", 40))
    levels = [float(v) for v in params.get("levels", (0.5, 0.8, 0.9))]
    if max(levels) > 1 - 2 / (m + 1) + 1e-9:
        needed = int(np.ceil(2 / (1 - max(levels)) - 1 - 1e-9))
        raise ValueError(
            f"calibration.levels: {max(levels)} needs model_samples >= "
            f"{needed} (the PIT of {m} samples resolves central "
            f"intervals up to {1 - 2 / (m + 1):.3f})"
        )
    nuisance = bool(params.get("nuisance", True))
    truth, truth_masks = true_draws(cohort, chosen, n, seed, nuisance)
    oracle, _ = true_draws(cohort, chosen, m, seed + 7_919, nuisance)
    out = {ORACLE: score_draws(oracle, truth, truth_masks, chosen, rule, levels, seed)}
    for name, forecast in forecasters.items():
        samples = np.asarray(forecast(chosen, m, seed), dtype=np.float64)
        out[name] = score_draws(samples, truth, truth_masks, chosen, rule, levels, seed)
    return out
