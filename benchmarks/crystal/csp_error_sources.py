"""Where the CSP error of a CrysBFN checkpoint comes from: lattice or coordinates, and which step.

Three readings of one checkpoint on a seeded subset of test crystals:

1. *Recombined predictions.* Each prediction is scored as it is, with the predicted fractional
   coordinates put into the true lattice, and with the true coordinates put into the predicted
   lattice (``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)``). Whichever recombination
   keeps the error locates it. A last reading ignores the species (pymatgen's
   ``FrameworkComparator``): a prediction that matches only then has its atoms on the right
   sites but the wrong element on some of them.
2. *RMSE spread* of the matched predictions (quantiles, and the share below 0.1): a mean RMSE
   near the tolerance can be a few exact matches plus many loose ones.
3. *Denoising error per step, teacher-forced.* For each step i, θ_{i−1} is drawn from the flow
   around the true crystal (as in training) and the network predicts x̂; reported is the mean
   absolute wrapped error of x̂ after removing each crystal's circular-mean offset (a global
   translation is not identifiable), beside the same error of the flow's own means m. A network
   that denoises well at late steps yet samples poor crystals commits its errors early.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch
from pymatgen.analysis.structure_matcher import FrameworkComparator, StructureMatcher
from pymatgen.core import Structure

if str(Path(__file__).resolve().parent) not in sys.path:  # the helpers beside this script
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from csp import _formula, _targets  # noqa: E402
from sciflow_domains.crystal.data import (  # noqa: E402
    CrystalDataset,
    collate_for_engine,
    find_split,
    load_crystals,
)
from sciflow_domains.crystal.nets import segment_mean  # noqa: E402

from sciflow.api import load_sampler  # noqa: E402
from sciflow.engine import split_batch  # noqa: E402
from sciflow.evaluation.bench import Report  # noqa: E402

MATCHER = {"stol": 0.5, "angle_tol": 10, "ltol": 0.3}


def grouped_like_formula(target: Structure) -> Structure:
    """``target`` with its sites stably sorted into the element order of :func:`_formula`, the
    atom order of the sampler's prediction for that formula."""
    elements = list(target.composition.keys())
    order = np.argsort([elements.index(site.specie) for site in target], kind="stable")
    return Structure(target.lattice, [target[i].specie for i in order], target.frac_coords[order])


def _rms(matcher: StructureMatcher, a: Structure, b: Structure) -> float | None:
    found = matcher.get_rms_dist(a, b)
    return None if found is None else float(found[0])


def _summary(label: str, values: list[float | None]) -> dict:
    matched = [v for v in values if v is not None]
    return {
        "reading": label,
        "match_rate": len(matched) / len(values),
        "rmse": float(np.mean(matched)) if matched else None,
        "rmse_quantiles": np.quantile(matched, [0.1, 0.25, 0.5, 0.75, 0.9]).tolist()
        if matched
        else None,
        "share_below_0.1": float(np.mean(np.array(matched) < 0.1)) if matched else None,
    }


def recombined(sampler, targets: list[Structure], params: dict) -> list[dict]:
    """Match rate and RMSE of the predictions as sampled and recombined with the truth."""
    options = {"solver": params["solver"]} if params.get("solver") else {}
    predicted = []
    for i in range(0, len(targets), params["batch_size"]):
        chunk = targets[i : i + params["batch_size"]]
        res = sampler.sample(compositions=[_formula(t) for t in chunk], seed=i, **options)
        predicted += res.to_structures()
    matcher = StructureMatcher(**MATCHER)
    framework = StructureMatcher(**MATCHER, comparator=FrameworkComparator())
    readings = {"as sampled": [], "predicted coordinates, true lattice": [],
                "true coordinates, predicted lattice": [],
                "as sampled, species ignored": []}  # fmt: skip
    for pred, target in zip(predicted, targets, strict=True):
        truth = grouped_like_formula(target)
        readings["as sampled"].append(_rms(matcher, pred, target))
        readings["predicted coordinates, true lattice"].append(
            _rms(matcher, Structure(truth.lattice, pred.species, pred.frac_coords), target)
        )
        readings["true coordinates, predicted lattice"].append(
            _rms(matcher, Structure(pred.lattice, truth.species, truth.frac_coords), target)
        )
        readings["as sampled, species ignored"].append(_rms(framework, pred, target))
    return [_summary(label, values) for label, values in readings.items()]


def _centred_error(estimate: torch.Tensor, truth: torch.Tensor, index: torch.Tensor) -> float:
    """Mean |wrapped(estimate − truth)| (fractional units) after removing each crystal's
    circular-mean offset; estimate/truth (M, 3) in [0, 1), index (M,) crystal ids."""
    diff = estimate - truth
    diff = diff - torch.round(diff)
    angle = 2 * math.pi * diff
    crystals = int(index.max()) + 1
    sin = segment_mean(torch.sin(angle), index, crystals)
    cos = segment_mean(torch.cos(angle), index, crystals)
    offset = torch.atan2(sin, cos)[index] / (2 * math.pi)
    centred = diff - offset
    return float((centred - torch.round(centred)).abs().mean())


@torch.no_grad()
def per_step_errors(sampler, params: dict) -> list[dict]:
    """Teacher-forced denoising error of the coordinates at every step (module docstring, 3)."""
    table = load_crystals(find_split(params["dataset"], params["split"]))
    data = CrystalDataset(table, lattice_scale=sampler.task.lattice_scale)
    pick = np.random.default_rng(params["seed"]).permutation(len(data))[: params["teacher_forced"]]
    state, context = split_batch(collate_for_engine([data[int(i)] for i in pick], "csp"))
    engine, network = sampler.engine, sampler.network
    frac_part, lattice_part = engine.components["frac"], engine.components["lattice"]
    n, atoms, crystals = engine.num_steps, state["frac"].shape[0], state["lattice"].shape[0]
    generator = torch.Generator().manual_seed(params["seed"])
    rows = []
    for i in range(1, n + 1):
        t = torch.full((crystals,), (i - 1) / n)
        theta = {
            "frac": frac_part.flow_sample(
                state["frac"], None, torch.full((atoms,), i), n, generator
            ),
            "lattice": lattice_part.flow_sample(
                state["lattice"], t, torch.full((crystals,), i), n, generator
            ),
        }
        x_hat = frac_part.predict(network(theta, t, context)["frac"], theta["frac"])
        means = theta["frac"][:, :3] / frac_part.period
        rows.append({
            "step": i,
            "t": (i - 1) / n,
            "prediction_error": _centred_error(x_hat, state["frac"], context["index"]),
            "flow_mean_error": _centred_error(means, state["frac"], context["index"]),
        })  # fmt: skip
    return rows


def run(params: dict, out: Path) -> Report:
    torch.set_num_threads(int(params.get("threads", 1)))
    out.mkdir(parents=True, exist_ok=True)
    sampler = load_sampler(params["checkpoint"])
    targets = _targets(params)
    readings = recombined(sampler, targets, params)
    steps = per_step_errors(sampler, params)
    lines = [
        f"Checkpoint `{params['checkpoint']}` ({sampler.task.trained_steps} training steps, "
        f"n = {sampler.engine.num_steps}, solver {params.get('solver') or 'vanilla'}); "
        f"{len(targets)} compositions of {params['dataset']} {params['split']} (seed "
        f"{params['seed']}), `StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)`.",
        "",
        "| reading | match rate | RMSE | RMSE quantiles 10/25/50/75/90 % | RMSE < 0.1 |",
        "|---|---|---|---|---|",
    ]
    for r in readings:
        quantiles = " / ".join(f"{q:.3f}" for q in r["rmse_quantiles"] or [])
        rmse = "–" if r["rmse"] is None else f"{r['rmse']:.4f}"
        share = "–" if r["share_below_0.1"] is None else f"{r['share_below_0.1']:.1%}"
        lines.append(f"| {r['reading']} | {r['match_rate']:.3f} | {rmse} | {quantiles} | {share} |")
    lines += [
        "",
        f"Teacher-forced coordinate error per step ({params['teacher_forced']} crystals; mean "
        "absolute wrapped error in fractional units after removing each crystal's offset):",
        "",
        "| step i | t | network prediction x̂ | flow means m of θ_{i−1} |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['step']} | {r['t']:.2f} | {r['prediction_error']:.4f} | {r['flow_mean_error']:.4f} |"
        for r in steps
    ]
    return Report(results={"readings": readings, "steps": steps}, markdown="\n".join(lines))
