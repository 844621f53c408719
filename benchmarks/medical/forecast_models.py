"""Which checkpoint forecasts which patient, what the checkpoint says about itself, and the batched
forecasting loop with its NFE and wall time.

A model entry of the benchmark spec takes one of three forms:

- ``checkpoint: PATH``: one training run, evaluated on the evaluated patients in its test split
  (SynthProg: the stored test split; real MS pairs: its ``test_patients``);
- ``checkpoints: [PATH, ...]``: separate training runs (e.g. training seeds) of one model, each
  evaluated like a single checkpoint; results are pooled over runs × sampling seeds;
- ``folds: {PATIENT: PATH, ...}``: leave-one-patient-out, each patient forecast by the checkpoint
  that held it out (one run made of the folds).

Missing checkpoint files skip the model (or the fold) with a message instead of failing. A present
checkpoint is checked against the benchmark's data: the dataset, its seed and (SynthProg) the
effective generator configuration must equal those the checkpoint's datamodule was built with;
its test split is rebuilt with the datamodule itself, so no patient it trained on is evaluated.
Checkpoints without datamodule hyper-parameters are used on all evaluated patients, with a note
that they could not be checked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from forecast_cases import ForecastCases, effective_data
from sciflow_domains.medical.data import LongitudinalDataModule, LongitudinalDataset
from tqdm import tqdm

from sciflow.training.task import CHECKPOINT_KEY

#: Data arguments of the benchmark that must agree with a checkpoint's datamodule.
DATA_KEYS = ("dataset", "config", "n_subjects", "seed", "resolution")


@dataclass
class ModelRun:
    """One training run of a model: the checkpoint that forecasts each patient (``folds``: a
    leave-one-patient-out run, one checkpoint per patient)."""

    label: str
    checkpoints: dict[str, str]
    folds: bool = False


@dataclass
class ModelPlan:
    """A model's runs, the patients nobody can forecast, and notes for the report."""

    name: str
    runs: list[ModelRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    num_steps: int | None = None


@dataclass(frozen=True)
class CheckpointInfo:
    """What a ``sciflow fit`` checkpoint records besides weights."""

    train_seconds: float | None
    datamodule: dict | None


def checkpoint_info(path: str | Path) -> CheckpointInfo:
    """Training wall time (``sciflow.train_seconds``) and datamodule hyper-parameters."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    meta = state.get(CHECKPOINT_KEY) or {}
    seconds = meta.get("train_seconds")
    hparams = state.get("datamodule_hyper_parameters")
    return CheckpointInfo(
        train_seconds=None if not seconds else float(seconds),
        datamodule=None if hparams is None else dict(hparams),
    )


def held_out_patients(hparams: dict, dataset: LongitudinalDataset) -> set[str]:
    """Patients (with visit pairs) in the test split that a datamodule with ``hparams`` draws
    from ``dataset``: the split is rebuilt by the datamodule itself."""
    keys = ("seed", "resolution", "split", "test_patients", "val_patients", "max_gap")
    kwargs = {k: hparams[k] for k in keys if hparams.get(k) is not None}
    if "split" in kwargs:
        kwargs["split"] = tuple(kwargs["split"])
    module = LongitudinalDataModule.from_dataset(dataset, **kwargs)
    module.setup()
    return {module.patients[i] for i in module.splits["test"].patient.unique().tolist()}


def check_data(path: str, info: CheckpointInfo, data_args: dict) -> str | None:
    """Raise ValueError when ``path`` was trained on other data than ``data_args``; return a
    note when it saved no datamodule hyper-parameters to check."""
    if info.datamodule is None:
        return f"{path}: no datamodule hyper-parameters saved; data and split not checked"
    mine, theirs = effective_data(data_args), effective_data(info.datamodule)
    if mine != theirs:
        differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise ValueError(
            f"{path}: trained on other data than the benchmark's `data` ({differ} differ: "
            f"checkpoint {[theirs.get(k) for k in differ]}); set `data` to the training config's "
            "data.init_args"
        )
    return None


def plan_model(name: str, spec: dict, patients: list[str]) -> ModelPlan:
    """Runs of one model entry (module docstring) over the evaluated ``patients``, before the
    checkpoints are read (:func:`assign_checkpoints` restricts them to held-out patients)."""
    forms = [k for k in ("checkpoint", "checkpoints", "folds") if spec.get(k)]
    if len(forms) != 1:
        raise ValueError(
            f"models.{name}: expected exactly one of checkpoint, checkpoints or folds, got {forms}"
        )
    plan = ModelPlan(name, num_steps=spec.get("num_steps"))
    if forms[0] == "folds":
        folds = {str(p): str(c) for p, c in spec["folds"].items()}
        unknown = sorted(set(folds) - set(patients))
        if unknown:
            plan.notes.append(f"folds for patients not evaluated here ignored: {unknown}")
        present = {p: c for p, c in folds.items() if p in patients and Path(c).is_file()}
        missing = sorted(p for p in patients if p not in present)
        if missing:
            plan.notes.append(f"no checkpoint for patient(s) {missing}: not evaluated")
        if present:
            plan.runs.append(ModelRun("folds", present, folds=True))
        return plan
    paths = [spec["checkpoint"]] if forms[0] == "checkpoint" else list(spec["checkpoints"])
    for path in map(str, paths):
        if Path(path).is_file():
            plan.runs.append(ModelRun(Path(path).parent.parent.name, dict.fromkeys(patients, path)))
        else:
            plan.notes.append(f"checkpoint {path} not found: run skipped")
    return plan


def assign_checkpoints(
    plan: ModelPlan, infos: dict[str, CheckpointInfo], data_args: dict, dataset
) -> None:
    """Check every checkpoint of ``plan`` against the data (:func:`check_data`) and keep only
    the patients it held out: a single checkpoint serves its test patients among the evaluated
    ones; a fold whose checkpoint did not hold its patient out raises ValueError. Runs left
    without patients are dropped; notes go to ``plan.notes``."""
    held: dict[str, set[str] | None] = {}
    for path in dict.fromkeys(c for run in plan.runs for c in run.checkpoints.values()):
        note = check_data(path, infos[path], data_args)
        if note:
            plan.notes.append(note)
        hparams = infos[path].datamodule
        held[path] = None if hparams is None else held_out_patients(hparams, dataset)
    runs = []
    for run in plan.runs:
        keep = {p: c for p, c in run.checkpoints.items() if held[c] is None or p in held[c]}
        dropped = sorted(set(run.checkpoints) - set(keep))
        if dropped and run.folds:
            path = run.checkpoints[dropped[0]]
            raise ValueError(
                f"{path}: the fold of patient {dropped[0]}, but this checkpoint did not hold it "
                f"out (its test patients: {sorted(held[path])[:5]})"
            )
        if dropped:
            plan.notes.append(
                f"{run.label}: evaluated on its held-out patients only, not on {dropped[:5]}"
                + (f" and {len(dropped) - 5} more" if len(dropped) > 5 else "")
            )
        if keep:
            runs.append(ModelRun(run.label, keep, run.folds))
    plan.runs = runs


@dataclass
class Prediction:
    """Forecasts of N cases: images (N, S, C, R, R), NFE per batch call, wall seconds."""

    images: torch.Tensor
    nfe: list[int]
    seconds: float


def predict(
    model,
    cases: ForecastCases,
    seed: int,
    num_samples: int = 1,
    num_steps: int | None = None,
    batch_size: int = 64,
    label: str = "",
) -> Prediction:
    """Forecast every case with ``model.forecast`` in batches (seed ``seed·1_000_003 + start``
    per batch); baselines with ``uses_history`` also get the previous visit and its gap."""
    outputs, nfe, seconds = [], [], 0.0
    starts = range(0, len(cases), batch_size)
    for start in tqdm(starts, desc=label or "forecast", leave=False, disable=len(starts) < 4):
        stop = min(start + batch_size, len(cases))
        options = {"num_steps": num_steps, "num_samples": num_samples}
        if getattr(model, "uses_history", False):
            options.update(previous=cases.previous[start:stop], gap=cases.gap[start:stop])
        began = time.perf_counter()
        with torch.no_grad():
            out = model.forecast(
                cases.inputs[start:stop],
                cases.dt[start:stop],
                seed=seed * 1_000_003 + start,
                **options,
            )
        seconds += time.perf_counter() - began
        images = torch.as_tensor(out.images).detach().cpu().float()
        expected = (stop - start, *cases.inputs.shape[1:])
        if (
            images.ndim != 5
            or (images.shape[0], *images.shape[2:]) != expected
            or images.shape[1] not in (1, num_samples)
        ):
            raise ValueError(
                f"{label}: forecast images expected (B, S, C, R, R) with B, C, R, R = {expected} "
                f"and S = {num_samples}, got {tuple(images.shape)}"
            )
        outputs.append(images.expand(-1, num_samples, -1, -1, -1))
        nfe.append(int(out.nfe))
    return Prediction(torch.cat(outputs), nfe, seconds)
