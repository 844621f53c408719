"""Forecasting longitudinal images: learned models against copy-forward and linear extrapolation.

Cases are all ordered visit pairs (j → k) of the evaluated patients (SynthProg: its stored test
split; the real MS pairs: the patients listed, leave-one-patient-out through per-patient
checkpoints). Every model forecasts visit k from visit j over Δt; linear extrapolation also sees
visit j − 1. Scored per case (``forecast_scoring``): PSNR/SSIM (data range 1), MAE/MSE, MAE and
PSNR inside the ground-truth change region, lesion Dice/HD95/area error of the forecast's mask
(a fixed rule, the same for every method) against the ground-truth mask; stratified by the
horizon Δt, by minor/major growth and by patient; pooled over training runs × sampling seeds.
On SynthProg every model is also scored against the generator's true predictive distribution
(``forecast_calibration``). Timing: network evaluations and wall time per forecast, and the CPU
training time each checkpoint recorded.

Spec params (see ``synthprog.yaml``, ``ms_pairs.yaml``): ``data`` (the training config's
``data.init_args``: dataset, config, n_subjects, seed, resolution), ``test_patients``,
``seeds``, ``num_steps``, ``batch_size``, ``gap_bins``, ``lesion_rule`` (overrides of the
default rule's ``threshold``/``relative``/``smooth_px``), ``baselines``,
``calibration``, ``panels``, ``threads``, ``models`` (``forecast_models`` describes the entries).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

if str(Path(__file__).resolve().parent) not in sys.path:  # the helpers beside this script
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from forecast_calibration import ORACLE, calibrate  # noqa: E402
from forecast_cases import ForecastCases, build_cases, load_data  # noqa: E402
from forecast_figures import horizon_plot, panel, panel_cases  # noqa: E402
from forecast_models import assign_checkpoints, checkpoint_info, plan_model, predict  # noqa: E402
from forecast_report import (  # noqa: E402
    calibration_table,
    ceiling_table,
    main_table,
    strata_table,
    timing_table,
)
from forecast_scoring import pooled, score, summarise  # noqa: E402
from sciflow_domains.medical.baselines import BASELINES  # noqa: E402
from sciflow_domains.medical.data import LongitudinalDataset  # noqa: E402
from sciflow_domains.medical.metrics_lesion import (  # noqa: E402
    CHANGE_RULE,
    LesionRule,
    lesion_rule,
)

from sciflow.api import load_sampler  # noqa: E402
from sciflow.evaluation.bench import Report  # noqa: E402


def _rule(dataset: LongitudinalDataset, overrides: dict) -> tuple[str, LesionRule]:
    if dataset.mask_meaning == "change":
        return "change", dataclasses.replace(CHANGE_RULE, **overrides)
    return "lesion", lesion_rule(dataset.name.removeprefix("synthprog_"), **overrides)


def _patients(dataset: LongitudinalDataset, listed) -> list[str]:
    if listed:
        unknown = sorted(set(listed) - set(dataset.patients))
        if unknown:
            raise ValueError(f"test_patients: unknown patient(s) {unknown}")
        return list(listed)
    if dataset.split is not None:
        return [p for p in dataset.patients if dataset.split[p] == "test"]
    return list(dataset.patients)


def _forecast(run: dict, cases: ForecastCases, seed: int, num_samples: int, options: dict):
    """Forecast the cases of the patients in ``run`` (patient → forecaster), each with its own
    forecaster; (N, S, C, R, R) images (NaN for other patients), NFE per call, wall seconds."""
    images = torch.full((len(cases), num_samples, *cases.inputs.shape[1:]), float("nan"))
    groups: dict[int, tuple] = {}
    for patient, model in run.items():
        groups.setdefault(id(model), (model, set()))[1].add(patient)
    nfe, seconds = [], 0.0
    for model, patients in groups.values():
        index = np.flatnonzero([p in patients for p in cases.patient])
        if len(index):
            out = predict(model, cases.subset(index), seed, num_samples, **options)
            images[torch.as_tensor(index)] = out.images
            nfe, seconds = nfe + out.nfe, seconds + out.seconds
    return images, nfe, seconds


def _evaluate(entry: dict, cases: ForecastCases, context: dict) -> dict:
    """Score every run × seed of a model on the cases its runs cover."""
    covered = np.array([p in entry["runs"][0] for p in cases.patient])
    for run in entry["runs"][1:]:
        if set(run) != set(entry["runs"][0]):
            raise ValueError(f"{entry['name']}: its runs cover different patients")
    part = cases.subset(covered)
    options = {
        "num_steps": entry.get("num_steps"),
        "batch_size": context["batch_size"],
        "label": entry["name"],
    }
    scores, relative, nfe, seconds, first = [], [], [], 0.0, None
    reference = np.nanmean(context["copy_forward_scores"]["change_mae"][covered])
    for run in entry["runs"]:
        for seed in entry["seeds"]:
            images, calls, secs = _forecast(run, cases, seed, 1, options)
            result = score(images[covered][:, 0], part, context["meaning"], context["rule"])
            scores.append(result)
            nfe, seconds = nfe + calls, seconds + secs
            first = images[:, 0].numpy() if first is None else first
            relative.append(np.nanmean(result["change_mae"]) / reference - 1.0)
    forecasts = len(scores) * int(covered.sum())
    return {
        "summary": summarise(scores, part, context["gap_bins"]),
        "change_mae_vs_copy_forward": pooled(relative),
        "cases": int(covered.sum()),
        "patients": sorted(set(part.patient)),
        "complete": bool(covered.all()),
        "timing": {
            "nfe_per_call": float(np.mean(nfe)) if nfe else 0.0,
            "seconds_per_forecast": seconds / max(forecasts, 1),
            "batch_size": context["batch_size"],
            "train_minutes": entry["train_minutes"],
            "checkpoints": entry["checkpoints"],
        },
        "first_forecast": first,
    }


def _learned_entry(name: str, spec: dict, patients, data_args, dataset) -> tuple[dict | None, list]:
    """Load a learned model's checkpoints (checked against the data, restricted to the patients
    they held out) into runs of forecasters; None when no checkpoint exists. Also returns the
    notes for the report."""
    plan = plan_model(name, spec, patients)
    paths = list(dict.fromkeys(c for run in plan.runs for c in run.checkpoints.values()))
    infos = {path: checkpoint_info(path) for path in paths}
    assign_checkpoints(plan, infos, data_args, dataset)
    if not plan.runs:
        return None, plan.notes or ["no checkpoint"]
    paths = list(dict.fromkeys(c for run in plan.runs for c in run.checkpoints.values()))
    samplers = {path: load_sampler(path) for path in paths}
    kinds = sorted({str(getattr(s, "model_kind", "unknown")) for s in samplers.values()})
    entry = {
        "name": name,
        "kind": "/".join(kinds),
        "runs": [{p: samplers[c] for p, c in run.checkpoints.items()} for run in plan.runs],
        "seeds": list(spec["seeds"]),
        "num_steps": plan.num_steps,
        "train_minutes": [
            None if infos[p].train_seconds is None else infos[p].train_seconds / 60 for p in paths
        ],
        "checkpoints": paths,
    }
    return entry, plan.notes


def _write_figures(evaluated: dict, cases: ForecastCases, params: dict, out: Path) -> list[str]:
    name = params["name"]
    horizon = horizon_plot(
        {m: e["summary"]["by_gap"] for m, e in evaluated.items()},
        out / f"{name}_horizon.png",
        f"{params.get('title', name)}: error against forecast horizon",
    )
    plots = [horizon.name]
    predictions = {m: e["first_forecast"] for m, e in evaluated.items()}
    for index in panel_cases(cases, int(params.get("panels", 4))):
        path = panel(cases, index, predictions, out / f"{name}_case{index:04d}.png")
        plots.append(path.name)
    return plots


def run(params: dict, out_dir: Path) -> Report:
    torch.set_num_threads(int(params.get("threads", 1)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data_args = dict(params["data"])
    dataset, cohort = load_data(data_args)
    patients = _patients(dataset, params.get("test_patients"))
    cases = build_cases(dataset, patients, int(data_args.get("resolution", 64)))
    meaning, rule = _rule(dataset, dict(params.get("lesion_rule") or {}))
    seeds = [int(s) for s in params.get("seeds", [0, 1, 2])]
    context = {
        "meaning": meaning,
        "rule": rule,
        "gap_bins": [float(e) for e in params.get("gap_bins", [0, 6, 12, 24])],
        "batch_size": int(params.get("batch_size", 64)),
    }
    copy_forward = dict.fromkeys(patients, BASELINES["copy_forward"]())
    reference = _forecast(copy_forward, cases, 0, 1, {"batch_size": context["batch_size"]})[0]
    context["copy_forward_scores"] = score(reference[:, 0], cases, meaning, rule)
    entries, notes, skipped = {}, [], {}
    for name in params.get("baselines", list(BASELINES)):
        if name not in BASELINES:
            raise ValueError(f"baselines: unknown {name!r}; choose from {sorted(BASELINES)}")
        entries[name] = {
            "name": name,
            "kind": name,
            "runs": [dict.fromkeys(patients, BASELINES[name]())],
            "seeds": seeds[:1],
            "train_minutes": [],
            "checkpoints": [],
        }
    for name, spec in (params.get("models") or {}).items():
        spec = {
            **spec,
            "seeds": spec.get("seeds", seeds),
            "num_steps": spec.get("num_steps", params.get("num_steps")),
        }
        entry, model_notes = _learned_entry(name, spec, patients, data_args, dataset)
        if entry is None:
            skipped[name] = "; ".join(model_notes)
            print(f"{name}: skipped ({skipped[name]})", flush=True)
            continue
        entries[name] = entry
        notes += [f"{name}: {n}" for n in model_notes]
    evaluated = {}
    for name, entry in entries.items():
        evaluated[name] = {
            "kind": entry["kind"],
            "runs": len(entry["runs"]),
            "seeds": len(entry["seeds"]),
            **_evaluate(entry, cases, context),
        }
        change = evaluated[name]["summary"]["overall"]["change_mae"]
        print(f"{name}: change-region MAE {change['mean']:.4f} ± {change['std']:.4f}", flush=True)
    ceiling = summarise([score(cases.targets, cases, meaning, rule)], cases, context["gap_bins"])
    calibration = None
    if cohort is not None and params.get("calibration", {}).get("enabled", True):
        forecasters = {
            name: _calibration_forecaster(entry, context)
            for name, entry in entries.items()
            if evaluated[name]["complete"]
        }
        calibration = calibrate(forecasters, cohort, cases, rule, params.get("calibration", {}))
    plots = _write_figures(evaluated, cases, params, out)
    results = {
        "dataset": {
            "name": dataset.name,
            "mask_meaning": meaning,
            "background": None if cohort is None else cohort.background,
            "data": data_args,
            "patients": patients,
            "cases": len(cases),
        },
        "lesion_rule": dataclasses.asdict(rule),
        "seeds": seeds,
        "gap_bins": context["gap_bins"],
        "models": {
            m: {k: v for k, v in e.items() if k != "first_forecast"} for m, e in evaluated.items()
        },
        "rule_ceiling": ceiling["overall"],
        "calibration": calibration,
        "skipped": skipped,
        "notes": notes,
        "seconds": time.perf_counter() - started,
    }
    markdown = _markdown(params, results, evaluated, plots)
    return Report(results=results, markdown=markdown, plots=plots)


def _calibration_forecaster(entry: dict, context: dict):
    options = {"num_steps": entry.get("num_steps"), "batch_size": 8, "label": entry["name"]}

    def forecast(chosen: ForecastCases, num_samples: int, seed: int) -> np.ndarray:
        return _forecast(entry["runs"][0], chosen, seed, num_samples, options)[0].numpy()

    return forecast


def _markdown(params: dict, results: dict, evaluated: dict, plots: list[str]) -> str:
    data, rule = results["dataset"], results["lesion_rule"]
    source = f"{data['background']} backgrounds" if data["background"] else "real images"
    change = (
        "pixels whose ground-truth lesion mask differs between the input and the target visit "
        "(XOR of the generator's masks)"
        if data["mask_meaning"] == "lesion"
        else "the annotated lesion-change mask of the later visit (consecutive visits only)"
    )
    change_map = "forecast − input" + (" relative to the input" if rule["relative"] else "")
    if rule["smooth_px"]:
        change_map += f", Gaussian-smoothed (σ = {rule['smooth_px']:g} px)"
    if data["mask_meaning"] == "lesion":
        mask_rule = (
            f"the input's lesion mask, plus pixels whose change ({change_map}) is "
            f"{rule['polarity']} by more than {rule['threshold']:g}"
        )
        if rule["regression"]:
            mask_rule += ", minus input-lesion pixels changed the other way by as much"
    else:
        mask_rule = f"|change| > {rule['threshold']:g} ({change_map})"
    lines = [
        f"# Medical forecasting: {params.get('title', params['name'])}",
        "",
        str(params.get("description", "")).strip(),
        "",
        f"Dataset `{data['name']}` ({source}), "
        f"{len(data['patients'])} evaluated patients, {data['cases']} cases (all ordered visit "
        f"pairs j → k; linear extrapolation uses visit j − 1 and falls back to copy-forward for "
        f"j = 0). PSNR/SSIM with data range 1 (SSIM: Gaussian window σ = 1.5, 11 × 11). Change "
        f"region: {change}. Predicted lesion mask: {mask_rule}; scored against the ground-truth "
        "mask (Dice 1 and HD95 0 when both masks are empty; HD95 undefined and left out when "
        "exactly one is). Values: mean over cases, then mean ± SD over training runs × sampling "
        f"seeds {results['seeds']} (deterministic baselines: one run). Several checkpoints of one "
        "model are separate training runs; leave-one-patient-out folds form one run.",
        "",
        main_table(evaluated),
        "",
        ceiling_table(results["rule_ceiling"]),
        "",
        "## Error against forecast horizon (months; cases per bin in brackets)",
        "",
        strata_table(evaluated, "by_gap", "change_mae", "change MAE"),
        "",
        strata_table(evaluated, "by_gap", "psnr", "PSNR"),
        "",
        f"![error against horizon]({plots[0]})",
        "",
    ]
    growth = strata_table(evaluated, "by_growth", "change_mae", "change MAE")
    if growth:
        lines += ["## Minor (input/target lesion Dice > 0.9) and major growth", "", growth, ""]
    lines += [
        "## Per patient",
        "",
        strata_table(evaluated, "by_patient", "change_mae", "change MAE")
        if len(data["patients"]) <= 12
        else "(more than 12 patients: see the JSON)",
        "",
        "## Cost",
        "",
        timing_table(evaluated),
    ]
    if results["calibration"]:
        levels = params.get("calibration", {}).get("levels", [0.5, 0.8, 0.9])
        first = results["calibration"][ORACLE]
        lines += [
            "",
            "## Calibration against the true predictive distribution",
            "",
            f"{first['cases']} cases; {first['model_samples']} forecasts per model and case "
            f"against {first['true_samples']} futures drawn from the generator's law "
            "(`sample_future`). Coverage of central intervals should equal the level; "
            "deterministic forecasts have point intervals. The oracle row is a second draw "
            "from the law itself.",
            "",
            calibration_table(results["calibration"], levels),
        ]
    if results["skipped"] or results["notes"]:
        lines += ["", "## Skipped and notes", ""]
        lines += [f"- {m}: skipped ({why})" for m, why in results["skipped"].items()]
        lines += [f"- {n}" for n in results["notes"]]
    lines += [
        "",
        "## Cases",
        "",
        "Per patient the case with the largest change region. Top: input, truth (red outline: "
        "change region), each model's forecast (seed 0 of its first run); bottom: truth − input "
        "and forecast − truth (red brighter, blue darker, saturating at ±0.5).",
        "",
    ]
    lines += [f"![{p}]({p})" for p in plots[1:]]
    return "\n".join(lines)
