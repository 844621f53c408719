"""The forecast cases of the medical benchmark: every ordered visit pair of the evaluated patients.

A case forecasts visit k of a series from visit j < k over ``dt = t_k − t_j`` (the ImageFlowNet
protocol: all ordered pairs). Its history for linear extrapolation is visit j − 1 of the same
series, when there is one. Images and masks come from the datamodule's own
:class:`VisitTupleDataset`, so they are resized exactly as in training. For SynthProg the case also
knows its subject and visit indices, so the generator's true law can be asked for its future.
:func:`load_data` loads the dataset exactly as the training datamodule does (and, for SynthProg,
keeps the generated cohort with its hidden states).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from sciflow_domains.medical.data import LongitudinalDataset, VisitTupleDataset
from sciflow_domains.medical.datasets import load_dataset
from sciflow_domains.medical.metrics import change_region
from sciflow_domains.medical.metrics_lesion import dice
from sciflow_domains.medical.synthprog import SynthProgConfig, SynthProgData, generate

#: Input and target lesion masks agreeing at Dice > this are "minor growth" (ImageFlowNet's split).
MINOR_GROWTH_DICE = 0.9


@dataclass
class ForecastCases:
    """N cases (module docstring), R the resolution, C the channels.

    Attributes:
        inputs, targets, previous: (N, C, R, R) float32 visits j, k and j − 1 (zeros if none).
        dt: (N,) months t_k − t_j; gap: (N,) months t_j − t_{j−1}, NaN when j is a first visit.
        mask_in, mask_target: (N, R, R) bool masks of visits j and k (zeros where unknown).
        has_mask_in, has_mask_target: (N,) bool whether those masks are known.
        change: (N, R, R) bool ground-truth change region; has_change: (N,) whether it is known.
        growth: (N,) "minor"/"major" (lesion masks: Dice(mask_j, mask_k) > 0.9 or not), "n/a".
        patient: (N,) patient ids; series, visit_in, visit_target: (N,) int indices into the
            dataset's series and their visits.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    previous: torch.Tensor
    dt: torch.Tensor
    gap: torch.Tensor
    mask_in: np.ndarray
    mask_target: np.ndarray
    has_mask_in: np.ndarray
    has_mask_target: np.ndarray
    change: np.ndarray
    has_change: np.ndarray
    growth: np.ndarray
    patient: np.ndarray
    series: np.ndarray
    visit_in: np.ndarray
    visit_target: np.ndarray

    def __len__(self) -> int:
        return len(self.dt)

    def subset(self, index) -> ForecastCases:
        """The cases at ``index`` (an int array or a boolean mask)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        picked = torch.as_tensor(index, dtype=torch.long)
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = value[picked] if isinstance(value, torch.Tensor) else value[index]
        return ForecastCases(**values)


def build_cases(
    dataset: LongitudinalDataset, patients: list[str], resolution: int
) -> ForecastCases:
    """All ordered visit pairs of the series of ``patients`` at ``resolution`` (module
    docstring)."""
    part = dataset.subset(patients)
    if not part.series:
        raise ValueError(f"patients: no series for {patients[:5]}")
    tuples = VisitTupleDataset(part, size=2, resolution=resolution)
    if len(tuples) == 0:
        raise ValueError("patients: their series have no visit pairs (one visit each)")
    lengths = np.array([len(s.visits) for s in part.series])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    rows = tuples.rows.numpy()
    j, k = rows[:, 0], rows[:, 1]
    series_local = np.searchsorted(offsets, j, side="right") - 1
    visit_in = j - offsets[series_local]
    has_previous = visit_in > 0
    previous = tuples.images[np.where(has_previous, j - 1, j)].clone()
    previous[~torch.as_tensor(has_previous)] = 0.0
    times = tuples.times.numpy().astype(np.float64)
    gap = np.where(has_previous, times[j] - times[np.maximum(j - 1, 0)], np.nan)
    masks = tuples.masks[:, 0].numpy() > 0.5
    has_mask = tuples.has_mask.numpy()
    mask_in, mask_target = masks[j], masks[k]
    if part.mask_meaning == "lesion":
        has_change = has_mask[j] & has_mask[k]
    else:  # change since the previous visit, stored on the later one: consecutive pairs only
        has_change = has_mask[k] & (k == j + 1)
    change = change_region(mask_in, mask_target, part.mask_meaning) & has_change[:, None, None]
    growth = np.full(len(rows), "n/a", dtype=object)
    if part.mask_meaning == "lesion":
        overlap = dice(mask_in, mask_target)
        growth[has_change] = np.where(overlap[has_change] > MINOR_GROWTH_DICE, "minor", "major")
    global_index = {id(s): n for n, s in enumerate(dataset.series)}
    series = np.array([global_index[id(part.series[s])] for s in series_local])
    return ForecastCases(
        inputs=tuples.images[j],
        targets=tuples.images[k],
        previous=previous,
        dt=torch.as_tensor(times[k] - times[j], dtype=torch.float32),
        gap=torch.as_tensor(gap, dtype=torch.float32),
        mask_in=mask_in,
        mask_target=mask_target,
        has_mask_in=has_mask[j],
        has_mask_target=has_mask[k],
        change=change,
        has_change=has_change,
        growth=growth,
        patient=np.array([part.series[s].patient for s in series_local], dtype=object),
        series=series,
        visit_in=visit_in,
        visit_target=k - offsets[series_local],
    )


def effective_data(args: dict) -> dict:
    """The data a datamodule with ``args`` builds: dataset, seed, resolution and (SynthProg) the
    full generator configuration (defaults filled in, as ``datasets.load_dataset`` does)."""
    name = args.get("dataset", "synthprog_ga")
    out = {"dataset": name, "resolution": int(args.get("resolution", 64))}
    if name.startswith("synthprog_"):
        overrides = {"kind": name.removeprefix("synthprog_"), "resolution": out["resolution"]}
        if args.get("n_subjects") is not None:
            overrides["n_subjects"] = int(args["n_subjects"])
        config = args.get("config")
        built = (
            SynthProgConfig(**overrides)
            if config is None
            else SynthProgConfig.from_yaml(config, **overrides)
        )
        out["seed"] = int(args.get("seed", 0))
        out["synthprog"] = built.to_dict()
    return out


def load_data(args: dict) -> tuple[LongitudinalDataset, SynthProgData | None]:
    """The dataset a datamodule with ``args`` (its ``data.init_args``) loads, and for SynthProg
    the generated cohort behind it (hidden states for the true predictive law)."""
    data = effective_data(args)
    if "synthprog" not in data:
        root = args.get("root")
        return load_dataset(data["dataset"], resolution=data["resolution"], root=root), None
    cohort = generate(SynthProgConfig.from_dict(data["synthprog"]), seed=data["seed"])
    return cohort.to_longitudinal(), cohort
