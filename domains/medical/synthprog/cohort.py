"""A generated SynthProg cohort: arrays, hidden truth, saving and conversion to a dataset.

Arrays (S subjects, K = most visits, H = resolution)::

    images    (S, K, H, W) float32 in [0, 1]   visits after nuisances (saved as uint8)
    masks     (S, K, H, W) uint8               labels (law.labels), moved with the image
    times     (S, K) float64                   months, t = 0 at the first visit, NaN padding
    n_visits  (S,) int64
    split     (S,) str                         "train" / "val" / "test", by subject
    params    name → (S,) float64              per-subject parameters (growth, rate, D, ρ, …)
    fields    name → (S, H, W) float32         per-subject maps (background, φ, GM, WM, …)
    events    column → (L,) float64            MS lesions of all subjects, plus "subject" (L,)
    nuisance  name → (S, K) float64            per-visit rotation, shifts, gain, gamma
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sciflow_domains.medical.data import LongitudinalDataset, Series, Visit
from sciflow_domains.medical.io import to_uint8
from sciflow_domains.medical.synthprog.config import SynthProgConfig
from sciflow_domains.medical.synthprog.law import SubjectState

_GROUPS = ("params", "fields", "events", "nuisance")


@dataclass
class SynthProgData:
    """A cohort (module docstring) with the ``config``, ``seed`` and ``background`` origin
    (``"real"``/``"builtin"``) that made it."""

    config: SynthProgConfig
    seed: int
    background: str
    images: np.ndarray
    masks: np.ndarray
    times: np.ndarray
    n_visits: np.ndarray
    split: np.ndarray
    params: dict[str, np.ndarray]
    fields: dict[str, np.ndarray]
    events: dict[str, np.ndarray]
    nuisance: dict[str, np.ndarray]

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def subject_ids(self) -> list[str]:
        """``"<kind>-0000"``, … in subject order."""
        return [f"{self.kind}-{s:04d}" for s in range(len(self.n_visits))]

    @classmethod
    def stack(
        cls,
        config: SynthProgConfig,
        seed: int,
        background: str,
        subjects: list[tuple[np.ndarray, SubjectState, list]],
        nuisance_keys: tuple[str, ...],
        split: np.ndarray,
    ) -> SynthProgData:
        """Pack per-subject results ``(times (K,), state, [(image, labels, nuisance record)])``."""
        n, h = len(subjects), config.resolution
        k_max = max(len(times) for times, _, _ in subjects)
        images = np.zeros((n, k_max, h, h), np.float32)
        masks = np.zeros((n, k_max, h, h), np.uint8)
        times = np.full((n, k_max), np.nan)
        nuisance = {key: np.full((n, k_max), np.nan) for key in nuisance_keys}
        events: dict[str, list] = {"subject": []}
        for s, (t, state, visits) in enumerate(subjects):
            times[s, : len(t)] = t
            for k, (image, labels, record) in enumerate(visits):
                images[s, k], masks[s, k] = image, labels
                for key in nuisance_keys:
                    nuisance[key][s, k] = record[key]
            rows = len(next(iter(state.events.values()), []))
            events["subject"].append(np.full(rows, s, np.int64))
            for key, column in state.events.items():
                events.setdefault(key, []).append(column)
        first = subjects[0][1]
        return cls(
            config=config,
            seed=seed,
            background=background,
            images=images,
            masks=masks,
            times=times,
            n_visits=np.array([len(t) for t, _, _ in subjects], np.int64),
            split=split,
            params={k: np.array([st.params[k] for _, st, _ in subjects]) for k in first.params},
            fields={k: np.stack([st.fields[k] for _, st, _ in subjects]) for k in first.fields},
            events={k: np.concatenate(v) for k, v in events.items()} if first.events else {},
            nuisance=nuisance,
        )

    def subject_state(self, s: int) -> SubjectState:
        """The hidden state of subject ``s`` (as the law drew it)."""
        if not 0 <= s < len(self.n_visits):
            raise ValueError(f"subject: expected 0 <= subject < {len(self.n_visits)}, got {s}")
        rows = self.events["subject"] == s if self.events else None
        return SubjectState(
            fields={k: v[s] for k, v in self.fields.items()},
            params={k: float(v[s]) for k, v in self.params.items()},
            events={k: v[rows] for k, v in self.events.items() if k != "subject"}
            if self.events
            else {},
        )

    def to_longitudinal(self) -> LongitudinalDataset:
        """One single-channel series per subject (the subject is the patient), masks as
        ``"lesion"`` labels, and the cohort's split."""
        series = []
        for s, patient in enumerate(self.subject_ids):
            visits = tuple(
                Visit(self.images[s, k][None], self.times[s, k], self.masks[s, k])
                for k in range(self.n_visits[s])
            )
            series.append(Series(patient, visits, name=patient))
        split = dict(zip(self.subject_ids, (str(x) for x in self.split), strict=True))
        return LongitudinalDataset(series, "lesion", split, name=f"synthprog_{self.kind}")

    def save(self, path: str | Path) -> Path:
        """Write a compressed ``.npz`` (images as uint8, the rest exact)."""
        arrays = {
            "images": to_uint8(self.images),
            "masks": self.masks,
            "times": self.times,
            "n_visits": self.n_visits,
            "split": self.split.astype("<U5"),
        }
        for group in _GROUPS:
            for key, value in getattr(self, group).items():
                arrays[f"{group}/{key}"] = value
        meta = {"config": self.config.to_dict(), "seed": self.seed, "background": self.background}
        arrays["meta"] = np.array(json.dumps(meta))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SynthProgData:
        """Read a file written by :meth:`save` (images back to float32 in [0, 1])."""
        with np.load(path, allow_pickle=False) as npz:
            files = {k: npz[k] for k in npz.files}
        meta = json.loads(str(files.pop("meta")))
        groups = {
            g: {k.split("/", 1)[1]: v for k, v in files.items() if k.startswith(g + "/")}
            for g in _GROUPS
        }
        return cls(
            config=SynthProgConfig.from_dict(meta["config"]),
            seed=int(meta["seed"]),
            background=meta["background"],
            images=files["images"].astype(np.float32) / 255.0,
            masks=files["masks"],
            times=files["times"],
            n_visits=files["n_visits"],
            split=files["split"],
            **groups,
        )
