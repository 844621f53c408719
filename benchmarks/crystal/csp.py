"""Crystal structure prediction: CrysBFN vs its ablation vs the flow-matching baseline, beside
no-learning baselines.

For a seeded subset of test compositions, each trained checkpoint (one per training seed)
predicts one structure per composition at each listed number of sampling steps; predictions are
matched to the test structures with ``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)`` (the
CDVAE protocol). Baselines on the same compositions:

- ``prototype``: the ideal cubic ABX₃ perovskite (:func:`~sciflow_domains.crystal.baselines.
  ideal_perovskite`; Perov-5 only);
- ``random``: the composition's atoms at uniform random fractional positions in a cubic cell of
  the test structure's volume.

Reported per model and step count: match rate and RMSE (mean and spread over training seeds),
invalid predictions, CPU seconds per structure, and the training wall time and steps read from
the checkpoints. A model entry's optional ``line`` names the curve of the match-rate plot it
belongs to (default: its own name), so models trained for different n form one curve; its
optional ``candidates`` k > 1 draws k structures per composition and counts the best match
(best-of-k; the first candidate is the one-sample prediction).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from pymatgen.core import Structure  # noqa: E402
from sciflow_domains.crystal.baselines import ideal_perovskite, random_positions  # noqa: E402
from sciflow_domains.crystal.data import find_split, load_crystals  # noqa: E402
from sciflow_domains.crystal.metrics import match_rate_and_rmse  # noqa: E402

from sciflow.api import load_sampler  # noqa: E402
from sciflow.evaluation.bench import Report  # noqa: E402


def _pick(params: dict, size: int) -> list[int]:
    """The sorted row indices of the seeded subset of ``num_compositions`` (all when unset)."""
    count = params.get("num_compositions") or size
    return sorted(int(i) for i in np.random.default_rng(params["seed"]).permutation(size)[:count])


def _targets(params: dict) -> list[Structure]:
    table = load_crystals(find_split(params["dataset"], params["split"]))
    return [table.structure(i) for i in _pick(params, len(table))]


def _formula(structure: Structure) -> str:
    return " ".join(f"{el}{int(n)}" for el, n in structure.composition.items())


def _baseline(name: str, targets: list[Structure], seed: int) -> list[Structure]:
    if name == "prototype":
        return [ideal_perovskite(t.composition) for t in targets]
    if name == "random":
        return random_positions([t.composition for t in targets], [t.volume for t in targets], seed)
    raise ValueError(f"baselines: unknown baseline {name!r}; expected 'prototype' or 'random'")


def _predict(sampler, compositions: list[str], options: dict, batch_size: int, k: int) -> tuple:
    """Per composition one structure (k = 1) or a list of k candidates (candidate j uses seeds
    offset by j·len(compositions)); CPU seconds per sampled structure."""
    candidates, start = [[] for _ in compositions], time.process_time()
    for j in range(k):
        for i in range(0, len(compositions), batch_size):
            batch = compositions[i : i + batch_size]
            res = sampler.sample(compositions=batch, seed=i + j * len(compositions), **options)
            for offset, structure in enumerate(res.to_structures()):
                candidates[i + offset].append(structure)
    cpu = (time.process_time() - start) / (k * len(compositions))
    return ([c[0] for c in candidates] if k == 1 else candidates), cpu


def _model_rows(name: str, spec: dict, compositions, targets, params: dict) -> list[dict]:
    """One row per step count: the metrics of every training seed's checkpoint."""
    checkpoints = spec["checkpoints"]
    steps_list = spec.get("num_steps") or [None]
    steps_list = steps_list if isinstance(steps_list, list) else [steps_list]
    samplers = [load_sampler(path) for path in checkpoints]
    training = [
        {
            "checkpoint": path,
            "train_minutes": s.task.train_seconds / 60 or None,
            "train_steps": s.task.trained_steps,
        }
        for path, s in zip(checkpoints, samplers, strict=True)
    ]
    rows = []
    for steps in steps_list:
        options = {"num_steps": steps} if steps is not None else {}
        if spec.get("solver"):
            options["solver"] = spec["solver"]
        runs = []
        for sampler in samplers:
            k = spec.get("candidates", 1)
            predicted, cpu = _predict(sampler, compositions, options, params["batch_size"], k)
            metrics = match_rate_and_rmse(predicted, targets)
            runs.append({**metrics, "cpu_seconds_per_structure": cpu})
        trained_n = getattr(samplers[0].task.engine, "num_steps", None)
        rows.append(_summarise(name, steps or trained_n, runs, training))
        rows[-1]["line"] = spec.get("line", name)
        print(f"{name} n={rows[-1]['num_steps']}: match {rows[-1]['match_rate']:.3f}", flush=True)
    return rows


def _summarise(name: str, steps: int | None, runs: list[dict], training: list[dict]) -> dict:
    rates = [r["match_rate"] for r in runs]
    rmses = [r["rmse"] for r in runs if r["rmse"] is not None]
    return {
        "model": name,
        "num_steps": steps,
        "match_rate": statistics.mean(rates),
        "match_rate_spread": (max(rates) - min(rates)) / 2 if len(rates) > 1 else None,
        "rmse": statistics.mean(rmses) if rmses else None,
        "n_invalid": statistics.mean(r["n_invalid"] for r in runs),
        "cpu_seconds_per_structure": statistics.mean(r["cpu_seconds_per_structure"] for r in runs),
        "seeds": runs,
        "training": training,
    }


def _plot(rows: list[dict], baselines: list[dict], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name in dict.fromkeys(r["line"] for r in rows):
        mine = [r for r in rows if r["line"] == name]
        ax.errorbar(
            [r["num_steps"] for r in mine],
            [r["match_rate"] for r in mine],
            yerr=[r["match_rate_spread"] or 0.0 for r in mine],
            marker="o",
            capsize=3,
            label=name,
        )
    for base, style in zip(baselines, ("--", ":", "-."), strict=False):
        ax.axhline(base["match_rate"], color="grey", linestyle=style, label=base["model"])
    ax.set_xscale("log")
    ax.set_xlabel("sampling steps n")
    ax.set_ylabel("match rate")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(rows: list[dict], baselines: list[dict]) -> str:
    lines = [
        "| model | n | match rate ↑ | RMSE ↓ | invalid | CPU s / structure | training |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        spread = "" if r["match_rate_spread"] is None else f" ± {r['match_rate_spread']:.3f}"
        rmse = "–" if r["rmse"] is None else f"{r['rmse']:.4f}"
        train = ", ".join(
            f"{t['train_steps']} steps / "
            + ("time not recorded" if not t["train_minutes"] else f"{t['train_minutes']:.0f} min")
            for t in r["training"]
        )
        lines.append(
            f"| {r['model']} ({len(r['seeds'])} seed{'s' * (len(r['seeds']) > 1)}) | "
            f"{r['num_steps']} | {r['match_rate']:.3f}{spread} | {rmse} | {r['n_invalid']:g} | "
            f"{r['cpu_seconds_per_structure']:.4f} | {train} |"
        )
    for b in baselines:
        rmse = "–" if b["rmse"] is None else f"{b['rmse']:.4f}"
        lines.append(
            f"| {b['model']} | – | {b['match_rate']:.3f} | {rmse} | {b['n_invalid']} | – | none |"
        )
    return "\n".join(lines)


def run(params: dict, out: Path) -> Report:
    torch.set_num_threads(int(params.get("threads", 1)))
    out.mkdir(parents=True, exist_ok=True)
    targets = _targets(params)
    compositions = [_formula(s) for s in targets]
    rows = []
    for name, spec in params.get("models", {}).items():
        missing = [p for p in spec["checkpoints"] if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(
                f"models.{name}: checkpoint(s) {missing} not found; train them first (see "
                "the header of this benchmark's yaml)"
            )
        rows += _model_rows(name, spec, compositions, targets, params)
    baselines = []
    for name in params.get("baselines", []):
        label = {"prototype": "ideal cubic ABX3 prototype", "random": "random positions"}[name]
        metrics = match_rate_and_rmse(_baseline(name, targets, params["seed"]), targets)
        baselines.append({"model": f"{label} (no learning)", **metrics})
    plot = out / params.get("plot", f"crystal_csp_{params['dataset']}.png")
    title = f"CSP on {params['dataset']} {params['split']} ({len(targets)} compositions)"
    _plot(rows, baselines, plot, title)
    markdown = (
        f"{len(targets)} compositions drawn (seed {params['seed']}) from {params['dataset']} "
        f"{params['split']}; one prediction per composition; `StructureMatcher(stol=0.5, "
        "angle_tol=10, ltol=0.3)`; SMACT-invalid predictions count as misses. Match rate: mean "
        "over training seeds ± half the range; RMSE: mean over seeds of the mean over matched "
        "pairs. Training time is wall time on the shared 2-core machine, read from the "
        "checkpoint.\n\n" + _table(rows, baselines) + f"\n\n![match rate vs steps]({plot.name})"
    )
    results = {"rows": rows, "baselines": baselines}
    return Report(results=results, markdown=markdown, plots=[str(plot)])
