"""Longitudinal image data: visits at irregular times, split by patient, batches of visit tuples.

A :class:`Series` is one image position of one patient (a 2-D slice location or a whole volume)
seen at strictly increasing times; a :class:`LongitudinalDataset` is a list of series, split by
*patient* (all series of a patient land in the same split, never by slice). Training items are
ordered tuples of visits of one series (pairs i < j by default, or triples i < j < k).

Conventions: intensities in [0, 1] (float32); time in **months** (real day counts are divided by
:data:`DAYS_PER_MONTH`); masks are uint8 labels with 0 = background, binarised (label > 0) in
batches; their meaning is ``LongitudinalDataset.mask_meaning`` (``"lesion"``: the lesion or
atrophy present at that visit, SynthProg; ``"change"``: lesion change since the previous visit,
stored on the later visit, open MS data).

Batches (:class:`LongitudinalDataModule`, :class:`VisitTupleDataset`), B items of n visits
(n = ``visits_per_item``, 2 or 3), C channels, resolution R::

    batch = {
        "x0", "x1"[, "x2"]: (B, C, R, R) float32 in [0, 1]   visit images, earliest first
        "t0", "t1"[, "t2"]: (B,) float32                     visit times, months (t0 < t1 < t2)
        "dt": (B,) float32                                   t_last − t0 > 0, months
        "mask0", "mask1"[, "mask2"]: (B, 1, R, R) float32    binary masks (zeros where unknown)
        "has_mask0", "has_mask1"[, ...]: (B,) bool           whether that visit's mask is known
        "patient": (B,) int64                                index into ``datamodule.patients``
    }

The model predicts ``x1`` (or ``x_last``) from ``x0`` over ``dt``; ``t0`` is the time since the
series' first visit, so ``t0 = 0`` for the baseline.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from sciflow_domains.medical.io import check_affine, same_affine
from torch.utils.data import DataLoader, Dataset

from sciflow.training.datamodule import batch_loader

#: Days per month (365.25 / 12): real intervals in days are converted to months.
DAYS_PER_MONTH = 365.25 / 12
SPLITS = ("train", "val", "test")
MASK_MEANINGS = ("lesion", "change")


@dataclass(frozen=True)
class Visit:
    """One acquisition.

    Attributes:
        image: (C, H, W) or (C, X, Y, Z) float32 intensities in [0, 1].
        time: months (any origin; only differences matter).
        mask: (H, W) or (X, Y, Z) uint8 labels (0 = background), or None when unknown.
        affine: (4, 4) voxel → world matrix when the visit comes from NIfTI, else None.
    """

    image: np.ndarray
    time: float
    mask: np.ndarray | None = None
    affine: np.ndarray | None = None

    def __post_init__(self) -> None:
        image = np.asarray(self.image, dtype=np.float32)
        if image.ndim not in (3, 4):
            raise ValueError(
                f"image: expected (C, H, W) or (C, X, Y, Z) with a channel axis, got {image.shape}"
            )
        if not np.all(np.isfinite(image)):
            raise ValueError("image: contains NaN or infinite values")
        if image.size and (image.min() < -1e-6 or image.max() > 1 + 1e-6):
            raise ValueError(
                f"image: expected intensities in [0, 1], got [{image.min():.4g}, "
                f"{image.max():.4g}]; normalise first (e.g. io.normalise_intensity)"
            )
        if not np.isfinite(self.time):
            raise ValueError(f"time: expected a finite number of months, got {self.time!r}")
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "time", float(self.time))
        if self.mask is not None:
            mask = np.asarray(self.mask)
            if mask.shape != image.shape[1:]:
                raise ValueError(
                    f"mask: expected the image's spatial shape {image.shape[1:]}, got {mask.shape}"
                )
            object.__setattr__(self, "mask", mask.astype(np.uint8))
        if self.affine is not None:
            object.__setattr__(self, "affine", check_affine(self.affine))


@dataclass(frozen=True)
class Series:
    """Visits of one image position of one patient, at strictly increasing times.

    Attributes:
        patient: patient id; splits are made by patient.
        visits: at least one visit; all share image shape and (if any has one) affine.
        name: a label for messages, e.g. ``"patient01/z=12"``.
    """

    patient: str
    visits: tuple[Visit, ...]
    name: str = ""

    def __post_init__(self) -> None:
        label = self.name or self.patient
        visits = tuple(self.visits)
        object.__setattr__(self, "visits", visits)
        if not visits:
            raise ValueError(f"series {label!r}: visits is empty; expected at least one visit")
        first = visits[0]
        for k, visit in enumerate(visits[1:], start=1):
            if visit.time <= visits[k - 1].time:
                raise ValueError(
                    f"series {label!r}: visit times must be strictly increasing, but visit {k} "
                    f"at t={visit.time:g} follows t={visits[k - 1].time:g}"
                )
            if visit.image.shape != first.image.shape:
                raise ValueError(
                    f"series {label!r}: visit {k} has image shape {visit.image.shape}, visit 0 "
                    f"has {first.image.shape}; visits of a series must share one grid"
                )
            if (visit.affine is None) != (first.affine is None) or (
                visit.affine is not None and not same_affine(visit.affine, first.affine)
            ):
                raise ValueError(
                    f"series {label!r}: visit {k} affine differs from visit 0 "
                    f"({_affine_text(visit.affine)} vs {_affine_text(first.affine)}); "
                    "register (resample) the visits onto one grid first"
                )

    @property
    def times(self) -> np.ndarray:
        """(K,) visit times, months."""
        return np.array([v.time for v in self.visits])


class LongitudinalDataset:
    """Series of patients, a mask meaning and an optional patient → split assignment.

    Args:
        series: the series; a patient may have several (e.g. one per slice).
        mask_meaning: ``"lesion"`` or ``"change"`` (see the module docstring).
        split: patient → ``"train"``/``"val"``/``"test"`` for every patient, or None.
        name: a label, e.g. ``"synthprog_ga"``.
    """

    def __init__(
        self,
        series: Sequence[Series],
        mask_meaning: str = "lesion",
        split: Mapping[str, str] | None = None,
        name: str = "",
    ):
        if mask_meaning not in MASK_MEANINGS:
            raise ValueError(f"mask_meaning: expected one of {MASK_MEANINGS}, got {mask_meaning!r}")
        self.series = list(series)
        if not all(isinstance(s, Series) for s in self.series):
            raise TypeError("series: expected a sequence of Series")
        self.mask_meaning = mask_meaning
        self.name = name
        self.patients = tuple(dict.fromkeys(s.patient for s in self.series))
        self.split = None if split is None else check_split(split, self.patients)

    def __len__(self) -> int:
        return len(self.series)

    def __repr__(self) -> str:
        visits = sum(len(s.visits) for s in self.series)
        return (
            f"LongitudinalDataset({self.name!r}: {len(self.patients)} patients, "
            f"{len(self.series)} series, {visits} visits, masks={self.mask_meaning!r})"
        )

    def subset(self, patients: Sequence[str]) -> LongitudinalDataset:
        """The series of ``patients`` (unknown ids raise ValueError)."""
        unknown = sorted(set(patients) - set(self.patients))
        if unknown:
            raise ValueError(f"patients: unknown id(s) {unknown[:5]} (known: {self.patients[:5]}…)")
        keep = set(patients)
        split = None if self.split is None else {p: self.split[p] for p in keep}
        series = [s for s in self.series if s.patient in keep]
        return LongitudinalDataset(series, self.mask_meaning, split, self.name)

    def split_by_patient(
        self, assignment: Mapping[str, str] | None = None
    ) -> dict[str, LongitudinalDataset]:
        """``{"train", "val", "test"}`` → the series of the patients assigned there.

        ``assignment`` defaults to the dataset's own ``split``; each patient is in exactly one.
        """
        assignment = self.split if assignment is None else check_split(assignment, self.patients)
        if assignment is None:
            raise ValueError("assignment: this dataset stores no split; pass patient -> split")
        return {s: self.subset([p for p in self.patients if assignment[p] == s]) for s in SPLITS}


def check_split(assignment: Mapping[str, str], patients: Sequence[str]) -> dict[str, str]:
    """Validate a patient → split mapping covering exactly ``patients``."""
    missing = [p for p in patients if p not in assignment]
    extra = [p for p in assignment if p not in set(patients)]
    bad = {p: s for p, s in assignment.items() if s not in SPLITS}
    if missing or extra or bad:
        raise ValueError(
            f"split: every patient needs one of {SPLITS}; missing {missing[:5]}, unknown "
            f"{extra[:5]}, invalid {dict(list(bad.items())[:5])}"
        )
    return dict(assignment)


def assign_splits(
    patients: Sequence[str], fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0
) -> dict[str, str]:
    """Patient → split by a seeded shuffle: ``round(f·n)`` train and val patients, rest test.

    With ≥ 3 patients and all fractions positive, every split gets at least one patient.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"fractions: expected 3 non-negative numbers summing to 1, got {fractions}"
        )
    n = len(patients)
    counts = [round(f * n) for f in fractions[:2]]
    for k in range(2):
        if fractions[k] > 0 and counts[k] == 0 and n >= 3:
            counts[k] = 1
    if fractions[2] > 0 and n >= 3 and counts[0] + counts[1] >= n:
        counts[0] = n - counts[1] - 1
    order = np.random.default_rng(seed).permutation(n)
    names = np.array(["test"] * n, dtype=object)
    names[order[: counts[0]]] = "train"
    names[order[counts[0] : counts[0] + counts[1]]] = "val"
    return {p: str(names[i]) for i, p in enumerate(patients)}


def visit_tuples(
    series: Sequence[Series], size: int = 2, max_gap: float | None = None
) -> np.ndarray:
    """All ordered visit tuples of each series: (N, 1 + size) int64 rows
    ``(series index, i, j[, k])`` with i < j < k; ``max_gap`` keeps t_last − t_first ≤ max_gap."""
    if size not in (2, 3):
        raise ValueError(f"size: expected 2 (pairs) or 3 (triples), got {size!r}")
    rows = []
    for index, s in enumerate(series):
        times = s.times
        for combo in itertools.combinations(range(len(s.visits)), size):
            if max_gap is None or times[combo[-1]] - times[combo[0]] <= max_gap:
                rows.append((index, *combo))
    return np.array(rows, dtype=np.int64).reshape(-1, 1 + size)


class VisitTupleDataset(Dataset):
    """Visit tuples of 2-D series as batches (module docstring); index with a list of rows.

    Visits are resized once to R × R (bilinear with antialiasing for images, nearest for masks)
    and stored as one tensor; items only index it.

    Args:
        dataset: series of (C, H, W) visits with one C throughout.
        size: visits per item (2 or 3).
        resolution: R.
        patient_index: patient id → the integer in ``batch["patient"]``.
        max_gap: keep tuples spanning at most this many months.
    """

    def __init__(
        self,
        dataset: LongitudinalDataset,
        size: int = 2,
        resolution: int = 64,
        patient_index: Mapping[str, int] | None = None,
        max_gap: float | None = None,
    ):
        if not isinstance(resolution, int) or resolution < 4:
            raise ValueError(f"resolution: expected an int >= 4, got {resolution!r}")
        patient_index = patient_index or {p: i for i, p in enumerate(dataset.patients)}
        visits = [v for s in dataset.series for v in s.visits]
        channels = {v.image.shape[0] for v in visits}
        dims = {v.image.ndim for v in visits}
        if dims - {3} or len(channels) > 1:
            raise ValueError(
                f"dataset: expected 2-D visits (C, H, W) with one channel count, got image ndims "
                f"{sorted(dims)} and channel counts {sorted(channels)}; slice volumes first"
            )
        self.size = size
        empty = torch.zeros(0, 1, resolution, resolution)
        images = [_resize(v.image, resolution, "image") for v in visits]
        masks = [_resize(_mask_or_zeros(v), resolution, "mask") for v in visits]
        self.images = torch.stack(images) if images else empty
        self.masks = torch.stack(masks) if masks else empty
        self.has_mask = torch.tensor([v.mask is not None for v in visits], dtype=torch.bool)
        self.times = torch.tensor([v.time for v in visits], dtype=torch.float32)
        offsets = np.cumsum([0] + [len(s.visits) for s in dataset.series])
        tuples = visit_tuples(dataset.series, size, max_gap)
        self.rows = torch.as_tensor(offsets[tuples[:, 0]][:, None] + tuples[:, 1:])
        self.patient = torch.tensor(
            [patient_index[dataset.series[i].patient] for i in tuples[:, 0]], dtype=torch.long
        )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int | Sequence[int]) -> dict[str, torch.Tensor]:
        rows = self.rows[index]
        batch: dict[str, torch.Tensor] = {}
        for k in range(self.size):
            visit = rows[..., k]
            batch[f"x{k}"] = self.images[visit]
            batch[f"t{k}"] = self.times[visit]
            batch[f"mask{k}"] = self.masks[visit]
            batch[f"has_mask{k}"] = self.has_mask[visit]
        batch["dt"] = batch[f"t{self.size - 1}"] - batch["t0"]
        batch["patient"] = self.patient[index]
        return batch


class LongitudinalDataModule(L.LightningDataModule):
    """Train/val/test batches of visit tuples (module docstring), split by patient.

    Args:
        dataset: a name for :func:`sciflow_domains.medical.datasets.load_dataset`:
            ``"synthprog_ga"`` (default), ``"synthprog_ms"``, ``"synthprog_tumour"``,
            ``"ms_flair_pairs"`` (real, needs ``$SCIFLOW_DATA_DIR``).
        config: SynthProg parameter YAML (default: the built-in defaults).
        n_subjects: SynthProg subjects (default: the config's).
        seed: SynthProg seed, and the seed of the patient split when one is drawn here.
        resolution: R, the image side in batches.
        visits_per_item: 2 (pairs) or 3 (triples).
        max_gap: keep tuples spanning at most this many months (None: all).
        batch_size: items per batch (training drops the last incomplete batch).
        split: train/val/test patient fractions, used when the dataset stores no split.
        test_patients, val_patients: explicit held-out patients (e.g. leave-one-patient-out);
            the others train. They override both the stored split and ``split``.
    """

    def __init__(
        self,
        dataset: str = "synthprog_ga",
        config: str | None = None,
        n_subjects: int | None = None,
        seed: int = 0,
        resolution: int = 64,
        visits_per_item: int = 2,
        max_gap: float | None = None,
        batch_size: int = 16,
        split: tuple[float, float, float] = (0.6, 0.2, 0.2),
        test_patients: list[str] | None = None,
        val_patients: list[str] | None = None,
    ):
        super().__init__()
        if visits_per_item not in (2, 3):
            raise ValueError(f"visits_per_item: expected 2 or 3, got {visits_per_item!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        self.save_hyperparameters()
        self.dataset_name = dataset
        self.data: LongitudinalDataset | None = None
        self.patients: tuple[str, ...] = ()
        self.splits: dict[str, VisitTupleDataset] = {}

    @classmethod
    def from_dataset(cls, data: LongitudinalDataset, **kwargs) -> LongitudinalDataModule:
        """A datamodule over an in-memory dataset (``dataset`` and ``config`` are unused)."""
        module = cls(dataset=data.name or "in-memory", **kwargs)
        module.data = data
        return module

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        hp = self.hparams
        if self.data is None:
            from sciflow_domains.medical.datasets import load_dataset  # datasets imports data

            self.data = load_dataset(
                self.dataset_name,
                config=hp.config,
                n_subjects=hp.n_subjects,
                seed=hp.seed,
                resolution=hp.resolution,
            )
        data = self.data
        if hp.test_patients or hp.val_patients:
            held = {p: "test" for p in hp.test_patients or []}
            held.update({p: "val" for p in hp.val_patients or []})
            unknown = sorted(set(held) - set(data.patients))
            if unknown:
                raise ValueError(f"test_patients/val_patients: unknown patient(s) {unknown}")
            assignment = {p: held.get(p, "train") for p in data.patients}
        else:
            assignment = data.split or assign_splits(data.patients, hp.split, hp.seed)
        self.patients = data.patients
        index = {p: i for i, p in enumerate(self.patients)}
        for name, part in data.split_by_patient(assignment).items():
            self.splits[name] = VisitTupleDataset(
                part, hp.visits_per_item, hp.resolution, index, hp.max_gap
            )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.splits:
            raise RuntimeError("call setup() before asking for dataloaders")
        return batch_loader(self.splits[split], self.hparams.batch_size, shuffle, self.hparams.seed)


def _resize(array: np.ndarray, resolution: int, kind: str) -> torch.Tensor:
    """(C, H, W) image or (H, W) mask → (C, R, R) / (1, R, R) float32 tensor."""
    tensor = torch.as_tensor(np.asarray(array, dtype=np.float32))
    if kind == "mask":
        tensor = tensor[None]
    if tensor.shape[-2:] == (resolution, resolution):
        return tensor.contiguous()
    size = (resolution, resolution)
    if kind == "mask":
        return F.interpolate(tensor[None], size=size, mode="nearest")[0]
    resized = F.interpolate(tensor[None], size=size, mode="bilinear", antialias=True)[0]
    return resized.clamp(0.0, 1.0)


def _mask_or_zeros(visit: Visit) -> np.ndarray:
    """The visit's binary mask (label > 0), or zeros when unknown."""
    if visit.mask is None:
        return np.zeros(visit.image.shape[1:], dtype=np.uint8)
    return (visit.mask > 0).astype(np.uint8)


def _affine_text(affine: np.ndarray | None) -> str:
    if affine is None:
        return "none"
    return (
        "diag "
        + ", ".join(f"{v:.4g}" for v in np.diag(affine)[:3])
        + " translation "
        + ", ".join(f"{v:.4g}" for v in affine[:3, 3])
    )
