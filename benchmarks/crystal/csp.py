"""Crystal structure prediction: CrysBFN vs the flow-matching baseline on the same network.

For a seeded subset of test compositions, each trained checkpoint predicts one structure per
composition (and, optionally, best of k); predictions are matched to the test structures with
``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)`` (the CDVAE protocol). A no-learning
floor puts the composition's atoms at uniform random fractional positions in a cubic cell of the
test structure's volume per atom. Reported: match rate, RMSE, CPU seconds per structure.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from pymatgen.core import Lattice, Structure  # noqa: E402
from sciflow_domains.crystal.data import find_split, load_crystals  # noqa: E402
from sciflow_domains.crystal.metrics import match_rate_and_rmse  # noqa: E402

from sciflow.api import load_sampler  # noqa: E402
from sciflow.evaluation.bench import Report  # noqa: E402


def _targets(params: dict) -> list[Structure]:
    table = load_crystals(find_split(params["dataset"], params["split"]))
    pick = np.random.default_rng(params["seed"]).permutation(len(table))
    return [table.structure(int(i)) for i in sorted(pick[: params["num_compositions"]])]


def _formula(structure: Structure) -> str:
    return " ".join(f"{el}{int(n)}" for el, n in structure.composition.items())


def _random_floor(targets: list[Structure], seed: int) -> list[Structure]:
    rng = np.random.default_rng(seed)
    out = []
    for target in targets:
        side = target.volume ** (1 / 3)
        species = [site.specie for site in target]
        out.append(Structure(Lattice.cubic(side), species, rng.random((len(species), 3))))
    return out


def _predict(checkpoint: str, compositions: list[str], params: dict) -> tuple[list, float]:
    sampler = load_sampler(checkpoint)
    options = {k: params[k] for k in ("num_steps", "solver") if params.get(k) is not None}
    structures, start = [], time.process_time()
    size = params["batch_size"]
    for i in range(0, len(compositions), size):
        res = sampler.sample(compositions=compositions[i : i + size], seed=i, **options)
        structures += res.to_structures()
    return structures, (time.process_time() - start) / len(compositions)


def run(params: dict, out: Path) -> Report:
    torch.set_num_threads(int(params.get("threads", 1)))
    out.mkdir(parents=True, exist_ok=True)
    targets = _targets(params)
    compositions = [_formula(s) for s in targets]
    rows = []
    for name, spec in params["models"].items():
        predicted, cpu = _predict(spec["checkpoint"], compositions, {**params, **spec})
        metrics = match_rate_and_rmse(predicted, targets)
        rows.append({"model": name, "cpu_seconds_per_structure": cpu, **metrics})
        print(f"{name}: match {metrics['match_rate']:.3f}, rmse {metrics['rmse']}", flush=True)
    floor = match_rate_and_rmse(_random_floor(targets, params["seed"]), targets)
    rows.append({"model": "random positions (floor)", "cpu_seconds_per_structure": 0.0, **floor})
    plot = out / "crystal_csp.png"
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([r["model"] for r in rows], [r["match_rate"] for r in rows], color="tab:blue")
    ax.set_ylabel("match rate")
    ax.set_title(f"CSP on {params['dataset']} {params['split']} ({len(targets)} compositions)")
    ax.tick_params(axis="x", labelrotation=15)
    fig.tight_layout()
    fig.savefig(plot, dpi=110)
    plt.close(fig)
    header = "| model | match rate ↑ | RMSE ↓ | invalid | CPU s / structure |"
    lines = [header, "|---|---|---|---|---|"]
    for r in rows:
        rmse = "–" if r["rmse"] is None else f"{r['rmse']:.4f}"
        lines.append(
            f"| {r['model']} | {r['match_rate']:.3f} | {rmse} | {r['n_invalid']} | "
            f"{r['cpu_seconds_per_structure']:.4f} |"
        )
    markdown = (
        f"{len(targets)} compositions drawn (seed {params['seed']}) from {params['dataset']} "
        f"{params['split']}; one prediction per composition; `StructureMatcher(stol=0.5, "
        "angle_tol=10, ltol=0.3)`; SMACT-invalid predictions count as misses.\n\n"
        + "\n".join(lines)
        + f"\n\n![match rate]({plot.name})"
    )
    return Report(results={"rows": rows}, markdown=markdown, plots=[str(plot)])
